//! Typed errors of the library and the job's exit-code contract. Every failure of a job run is
//! one `JobError` whose kind decides the exit code and the `error_kind` recorded in `job_runs`.

use std::fmt;
use std::process::ExitCode;

/// A config that failed validation; carries every problem found, each as `field: problem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    pub fn new(problems: Vec<String>) -> ConfigError {
        ConfigError { problems }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.problems.join("; "))
    }
}

impl std::error::Error for ConfigError {}

/// What went wrong, coarse enough to act on at 3 a.m.; each kind has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is malformed or names things that cannot exist.
    Config,
    /// The source (Google Sheets, a CSV, a source database) failed or refused.
    Source,
    /// The destination (BigQuery, a target database) failed or refused.
    Destination,
    /// The data did not pass validation (bad cells, a guard refused, a row-count mismatch).
    Validation,
    /// The job was stopped by SIGTERM/SIGINT before finishing; the write in progress was
    /// cancelled or rolled back (batches a batched import already committed stay).
    Interrupted,
    /// The control plane (Postgres holding configs and the run ledger) failed, or the run was
    /// fenced out by a newer attempt.
    Ledger,
    /// A bug or an unexpected condition.
    Internal,
}

impl ErrorKind {
    /// The documented exit codes of the `job` binary.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::Config => 2,
            ErrorKind::Source => 3,
            ErrorKind::Destination => 4,
            ErrorKind::Validation => 5,
            ErrorKind::Ledger => 6,
            ErrorKind::Interrupted => 130,
        }
    }

    pub fn from_exit_code(code: i32) -> Option<ErrorKind> {
        Some(match code {
            1 => ErrorKind::Internal,
            2 => ErrorKind::Config,
            3 => ErrorKind::Source,
            4 => ErrorKind::Destination,
            5 => ErrorKind::Validation,
            6 => ErrorKind::Ledger,
            130 => ErrorKind::Interrupted,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Source => "source",
            ErrorKind::Destination => "destination",
            ErrorKind::Validation => "validation",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Ledger => "ledger",
            ErrorKind::Internal => "internal",
        }
    }

    pub fn to_exit_code(self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed job run: a kind and a message that names what is wrong and where.
#[derive(Debug)]
pub struct JobError {
    pub kind: ErrorKind,
    pub message: String,
    /// Per-cell problems (e.g. `Sheet1!C17: "abc" is not INT64`), capped by `max_cell_errors`.
    pub details: Vec<String>,
}

impl JobError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> JobError {
        JobError { kind, message: message.into(), details: Vec::new() }
    }
    pub fn config(message: impl Into<String>) -> JobError {
        JobError::new(ErrorKind::Config, message)
    }
    pub fn source(message: impl Into<String>) -> JobError {
        JobError::new(ErrorKind::Source, message)
    }
    pub fn destination(message: impl Into<String>) -> JobError {
        JobError::new(ErrorKind::Destination, message)
    }
    pub fn validation(message: impl Into<String>) -> JobError {
        JobError::new(ErrorKind::Validation, message)
    }
    pub fn ledger(message: impl Into<String>) -> JobError {
        JobError::new(ErrorKind::Ledger, message)
    }
    pub fn internal(message: impl Into<String>) -> JobError {
        JobError::new(ErrorKind::Internal, message)
    }
    pub fn interrupted() -> JobError {
        JobError::new(
            ErrorKind::Interrupted,
            "interrupted by a termination signal before finishing; the write in progress was cancelled or rolled back",
        )
    }
    pub fn with_details(mut self, details: Vec<String>) -> JobError {
        self.details = details;
        self
    }
    /// Prefixes the message with where it happened.
    pub fn context(mut self, ctx: impl fmt::Display) -> JobError {
        self.message = format!("{ctx}: {}", self.message);
        self
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for d in &self.details {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for JobError {}

impl From<ConfigError> for JobError {
    fn from(e: ConfigError) -> JobError {
        JobError::config(e.to_string())
    }
}

pub type JobResult<T> = Result<T, JobError>;
