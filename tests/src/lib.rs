//! Test support shared by the integration tests and the demo: isolated Postgres databases,
//! the BigQuery emulator, the local Sheets API v4 server, and running the binaries.

pub mod bq;
pub mod bq_fake;
pub mod cloudrun_fake;
pub mod oidc_fake;
pub mod pg;
pub mod proc;
pub mod sheets_server;
