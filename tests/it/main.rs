//! Integration tests: one test binary (faster to build and link), one module per capability.
//! Real Postgres, the real BigQuery emulator over HTTP, the local Sheets API server, and the
//! workspace's binaries as subprocesses.

mod support;

mod deploy;
mod job_sheet;
mod jobctl;
mod orchestrator;
mod store;
mod upsert;
