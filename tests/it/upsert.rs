//! Integration tests: upsert.
