//! Integration tests: jobctl.
