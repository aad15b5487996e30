//! sheettobigquery: load Google Sheets (and small Postgres ETL units) into BigQuery, one
//! configuration per job run, driven by configuration rows in Postgres.
//!
//! # Layout
//! - [`config`]: the configuration model and its validation (the existing JSON format).
//! - [`a1`], [`schema`]: A1 ranges and cell references; headers, type inference, cell conversion.
//! - [`google`]: Sheets and BigQuery clients, credentials, retries.
//! - [`kinds`]: the units of work (`sheet_to_bigquery`, …) behind one trait.
//! - [`store`]: Postgres: connection settings, migrations, configs and the run ledger.
//! - [`runner`]: one job execution end to end (config → ledger → unit → outcome).
//! - [`telemetry`]: Cloud Logging JSON lines or human-readable text.
//! - [`error`]: typed errors and the job's exit codes.

pub mod a1;
pub mod config;
pub mod error;
mod fields;
pub mod google;
pub mod kinds;
pub mod runner;
pub mod schema;
pub mod store;
pub mod telemetry;
