//! The orchestrator (claims due configs and fans out job executions) and `jobctl`, the helper
//! CLI people use by hand. Both binaries are thin; their logic lives here.
//!
//! # Layout (orchestrator)
//! - [`cli`]: the `orchestrator` command line and what each command does.
//! - [`settings`]: flags, env fallbacks, the JSON settings file, defaults.
//! - [`tick`]: one tick — sweep, due scan, claim, dispatch under the cap, record, retry.
//! - [`executor`]: the `Executor` trait; [`executor::local`] (spawn the job binary) and
//!   [`executor::cloud_run`] (Cloud Run Admin API v2 executions).
//! - [`server`]: `orchestrator serve` (axum) for Cloud Scheduler; [`oidc`] authenticates it.
//! - [`metrics`]: Prometheus text for `GET /metrics`.
//! - [`preview`]: what is due and why (`run --dry-run`, `preview`, `jobctl due`).
//! - [`output`]: how both binaries print for people: tables, colour, times, durations.
//!
//! All SQL lives in `sheettobigquery::store` (the orchestrator's in `store::claims`).

pub mod cli;
pub mod executor;
pub mod jobctl;
pub mod metrics;
pub mod oidc;
pub mod output;
pub mod preview;
pub mod server;
pub mod settings;
pub mod tick;
