//! Integration tests: orchestrator.
