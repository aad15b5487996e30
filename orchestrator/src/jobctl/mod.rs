//! `jobctl`: run one config now, status and history, manage configs, migrate.
