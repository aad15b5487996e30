//! The orchestrator (claims due configs and fans out job executions) and `jobctl`, the helper
//! CLI people use by hand. Both binaries are thin; their logic lives here.

pub mod jobctl;
pub mod preview;
