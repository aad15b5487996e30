//! What is due and why (`orchestrator run --dry-run`, `orchestrator preview`, `jobctl due`).
