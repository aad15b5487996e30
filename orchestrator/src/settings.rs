//! The orchestrator's settings: flags with environment fallbacks, an optional JSON settings file,
//! and built-in defaults, resolved in that order (flag > env > file > default) into one
//! [`Settings`] the rest of the crate reads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sheettobigquery::store::claims::{AttemptPolicy, ConfigsSource};
use sheettobigquery::store::Secret;

/// A settings problem, naming the setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("settings file {path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Parses `90`, `90s`, `500ms`, `15m`, `2h`, `1d`, `2w` (a bare number is seconds). The one
/// duration parser of both binaries (`jobctl runs --since` reads a bare number as hours).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 500ms, 15m, 2h, 7d)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1000.0,
        "m" | "min" | "mins" => n * 60.0,
        "h" | "hour" | "hours" => n * 3600.0,
        "d" | "day" | "days" => n * 86400.0,
        "w" => n * 7.0 * 86400.0,
        _ => return Err(format!("{s:?} has an unknown unit (use ms, s, m, h, d or w)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a positive duration"))
}

/// `1h 5m`-style rendering for messages.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let units = [(s / 86400, "d"), ((s % 86400) / 3600, "h"), ((s % 3600) / 60, "m"), (s % 60, "s")];
    // The most significant unit and the next one (when not zero): `3h`, `1h 2m`, `2d 5h`.
    let first = units.iter().position(|(v, _)| *v > 0).unwrap_or(3);
    let mut out = format!("{}{}", units[first].0, units[first].1);
    if let Some((v, u)) = units.get(first + 1).filter(|(v, _)| *v > 0) {
        out.push_str(&format!(" {v}{u}"));
    }
    out
}

/// Where jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    /// Spawn the `job` binary on this machine.
    Local,
    /// Start executions of a Cloud Run job through the Cloud Run Admin API v2.
    CloudRun,
}

impl ExecutorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::CloudRun => "cloud-run",
        }
    }
}

/// The settings the due decision depends on: shared by `run`/`serve` and by the commands that only
/// preview it (`orchestrator preview`, `jobctl due`, `jobctl status`), so they cannot disagree.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DueArgs {
    /// Table or view the configs are read from, e.g. `active_job_configs` (configs marked
    /// job_ready). [default: sheet_to_bigquery_configs]
    #[arg(long, env = "ORCHESTRATOR_CONFIGS_VIEW", value_name = "NAME")]
    pub configs_view: Option<String>,
    /// Attempts per config and due period, the first included. [default: 3]
    #[arg(long, env = "ORCHESTRATOR_MAX_ATTEMPTS", value_name = "N")]
    pub max_attempts: Option<i32>,
    /// Backoff before the second attempt; doubles per attempt, with jitter. [default: 30s]
    #[arg(long, env = "ORCHESTRATOR_RETRY_BASE_DELAY", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_base_delay: Option<Duration>,
    /// Backoff ceiling. [default: 15m]
    #[arg(long, env = "ORCHESTRATOR_RETRY_MAX_DELAY", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_max_delay: Option<Duration>,
}

/// How a tick runs (shared by `run` and `serve`). Unset values come from the settings file,
/// then the defaults shown.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TickArgs {
    /// Where jobs run: `local` spawns the job binary, `cloud-run` starts Cloud Run Job
    /// executions. [default: local]
    #[arg(long, env = "ORCHESTRATOR_EXECUTOR", value_enum)]
    pub executor: Option<ExecutorKind>,
    /// What decides which configs are due and when failed ones are retried.
    #[command(flatten)]
    pub due: DueArgs,
    /// Executions in flight at once, at most (per orchestrator process). [default: 4]
    #[arg(long, env = "ORCHESTRATOR_MAX_PARALLEL_JOBS", value_name = "N")]
    pub max_parallel_jobs: Option<usize>,
    /// Per-run timeout of the local executor: SIGTERM at the timeout, SIGKILL --kill-grace
    /// later, status `timed_out`. [default: 1h]
    #[arg(long, env = "ORCHESTRATOR_JOB_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    pub job_timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL for a run that timed out. [default: 10s]
    #[arg(long, env = "ORCHESTRATOR_KILL_GRACE", value_parser = parse_duration, value_name = "DURATION")]
    pub kill_grace: Option<Duration>,
    /// A tick waits in-process for retries whose backoff is at most this long; longer ones are
    /// left to a later tick. [default: 5m]
    #[arg(long, env = "ORCHESTRATOR_RETRY_WAIT_MAX", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_wait_max: Option<Duration>,
    /// Lease of a claimed run; renewed by the orchestrator while it waits and by the job's
    /// heartbeat (passed to it as JOB_LEASE_SECONDS). A run whose lease expires is `abandoned`
    /// and dispatched again by the next tick. [default: 2m]
    #[arg(long, env = "ORCHESTRATOR_LEASE", value_parser = parse_duration, value_name = "DURATION")]
    pub lease: Option<Duration>,
    /// The job binary the local executor spawns. [default: `job` next to this executable]
    #[arg(long, env = "ORCHESTRATOR_JOB_BINARY", value_name = "PATH")]
    pub job_binary: Option<PathBuf>,
    /// After SIGTERM: stop claiming, let in-flight local jobs finish for this long, then stop
    /// them (SIGTERM, SIGKILL 2s later) and record them `cancelled`. Cloud Run allows 10s in
    /// all. [default: 7s]
    #[arg(long, env = "ORCHESTRATOR_SHUTDOWN_GRACE", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Option<Duration>,
    /// Cloud Run: the project of the job. [env: ORCHESTRATOR_CLOUD_RUN_PROJECT, else GOOGLE_CLOUD_PROJECT]
    #[arg(long, env = "ORCHESTRATOR_CLOUD_RUN_PROJECT", value_name = "PROJECT")]
    pub cloud_run_project: Option<String>,
    /// Cloud Run: the region of the job, e.g. europe-west1.
    #[arg(long, env = "ORCHESTRATOR_CLOUD_RUN_REGION", value_name = "REGION")]
    pub cloud_run_region: Option<String>,
    /// Cloud Run: the name of the Cloud Run job that runs the `job` image.
    #[arg(long, env = "ORCHESTRATOR_CLOUD_RUN_JOB", value_name = "JOB")]
    pub cloud_run_job: Option<String>,
    /// Cloud Run: the container the env overrides go to (only needed with several containers).
    #[arg(long, env = "ORCHESTRATOR_CLOUD_RUN_CONTAINER", value_name = "NAME")]
    pub cloud_run_container: Option<String>,
    /// Cloud Run Admin API base URL; setting it (a local fake) switches authentication off.
    /// [default: https://run.googleapis.com]
    #[arg(long, env = "CLOUD_RUN_API_URL", value_name = "URL")]
    pub cloud_run_api_url: Option<String>,
    /// Cloud Run: how often a running execution is polled. [default: 10s]
    #[arg(long, env = "ORCHESTRATOR_CLOUD_RUN_POLL_INTERVAL", value_parser = parse_duration, value_name = "DURATION")]
    pub cloud_run_poll_interval: Option<Duration>,
    /// Cloud Run: timeout of one Admin API request; a `jobs:run` that times out is reconciled by
    /// looking for the execution carrying the run id before starting another. [default: 30s]
    #[arg(long, env = "ORCHESTRATOR_CLOUD_RUN_REQUEST_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    pub cloud_run_request_timeout: Option<Duration>,
}

/// `serve`-only settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. [default: 0.0.0.0:$PORT, PORT defaulting to 8080]
    #[arg(long, env = "ORCHESTRATOR_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// OIDC: the audience Cloud Scheduler puts in its ID tokens (usually the service URL).
    /// Enables OIDC authentication.
    #[arg(long, env = "ORCHESTRATOR_OIDC_AUDIENCE", value_name = "AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// OIDC: service-account emails allowed to trigger ticks (comma-separated or repeated).
    #[arg(long, env = "ORCHESTRATOR_OIDC_ALLOWED_EMAILS", value_delimiter = ',', value_name = "EMAIL")]
    pub oidc_allowed_email: Vec<String>,
    /// OIDC: where the signing keys are. [default: https://www.googleapis.com/oauth2/v3/certs]
    #[arg(long, env = "ORCHESTRATOR_OIDC_JWKS_URL", value_name = "URL")]
    pub oidc_jwks_url: Option<String>,
    /// OIDC: the accepted issuer. [default: https://accounts.google.com, also without https://]
    #[arg(long, env = "ORCHESTRATOR_OIDC_ISSUER", value_name = "ISSUER")]
    pub oidc_issuer: Option<String>,
    /// A static bearer token accepted instead of OIDC (outside GCP). Prefer the env var or
    /// --auth-token-file; never logged.
    #[arg(long, env = "ORCHESTRATOR_AUTH_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub auth_token: Option<Secret>,
    /// A file holding the static bearer token (e.g. a mounted secret).
    #[arg(long, env = "ORCHESTRATOR_AUTH_TOKEN_FILE", value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// Accept unauthenticated POST /run (local demos only).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Answer POST /run after at most this long: 200 with the result when the tick finished,
    /// else 202 while it goes on. Keep it below the Cloud Scheduler attempt deadline (default
    /// 3m for HTTP targets). [default: 150s]
    #[arg(long, env = "ORCHESTRATOR_RESPOND_WITHIN", value_parser = parse_duration, value_name = "DURATION")]
    pub respond_within: Option<Duration>,
}

/// The settings file: a JSON object whose keys are the long flag names (`max-parallel-jobs` or
/// `max_parallel_jobs`); durations as strings (`"30s"`) or seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    executor: Option<ExecutorKind>,
    max_parallel_jobs: Option<usize>,
    #[serde(default, deserialize_with = "de_duration")]
    job_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    kill_grace: Option<Duration>,
    max_attempts: Option<i32>,
    #[serde(default, deserialize_with = "de_duration")]
    retry_base_delay: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    retry_max_delay: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    retry_wait_max: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    lease: Option<Duration>,
    configs_view: Option<String>,
    job_binary: Option<PathBuf>,
    cloud_run_project: Option<String>,
    cloud_run_region: Option<String>,
    cloud_run_job: Option<String>,
    cloud_run_container: Option<String>,
    cloud_run_api_url: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    cloud_run_poll_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    cloud_run_request_timeout: Option<Duration>,
    listen: Option<SocketAddr>,
    oidc_audience: Option<String>,
    oidc_allowed_emails: Option<Vec<String>>,
    oidc_jwks_url: Option<String>,
    oidc_issuer: Option<String>,
    auth_token_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "de_duration")]
    respond_within: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    shutdown_grace: Option<Duration>,
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| *s >= 0.0)
            .map(|s| Some(Duration::from_secs_f64(s)))
            .ok_or_else(|| serde::de::Error::custom("a duration must be a positive number of seconds")),
        Some(Value::String(s)) => parse_duration(&s).map(Some).map_err(serde::de::Error::custom),
        Some(other) => Err(serde::de::Error::custom(format!("{other} is not a duration"))),
    }
}

fn read_file(path: &Path) -> Result<FileSettings, SettingsError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read { path: p.clone(), source })?;
    let raw: Value = serde_json::from_str(&text)
        .map_err(|e| SettingsError::File { path: p.clone(), message: format!("not JSON: {e}") })?;
    let Value::Object(map) = raw else {
        return Err(SettingsError::File { path: p, message: "must be a JSON object".into() });
    };
    // Keys may be written like the flags (kebab-case) or snake_case; secrets stay out of files.
    let mut norm = serde_json::Map::new();
    for (k, v) in map {
        let key = k.replace('-', "_");
        let key = if key == "oidc_allowed_email" { "oidc_allowed_emails".to_string() } else { key };
        if matches!(key.as_str(), "auth_token" | "database_url" | "postgres_password") {
            return Err(SettingsError::File {
                path: p,
                message: format!(
                    "{k:?} is a secret: pass it in the environment (or --auth-token-file), not in a settings file"
                ),
            });
        }
        norm.insert(key, v);
    }
    serde_json::from_value(Value::Object(norm)).map_err(|e| SettingsError::File { path: p, message: e.to_string() })
}

/// Cloud Run executor settings.
#[derive(Debug, Clone)]
pub struct CloudRunSettings {
    pub project: Option<String>,
    pub region: Option<String>,
    pub job: Option<String>,
    pub container: Option<String>,
    pub api_url: Option<String>,
    pub poll_interval: Duration,
    pub request_timeout: Duration,
}

/// Everything a tick needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub executor: ExecutorKind,
    pub max_parallel_jobs: usize,
    pub job_timeout: Duration,
    pub kill_grace: Duration,
    pub retry: AttemptPolicy,
    pub retry_wait_max: Duration,
    pub lease: Duration,
    pub shutdown_grace: Duration,
    pub configs: ConfigsSource,
    pub job_binary: PathBuf,
    pub cloud_run: CloudRunSettings,
}

/// How `serve` authenticates and answers.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub oidc: Option<OidcSettings>,
    pub auth_token: Option<Secret>,
    pub insecure_no_auth: bool,
    pub respond_within: Duration,
}

#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub audience: String,
    pub allowed_emails: Vec<String>,
    pub jwks_url: String,
    pub issuers: Vec<String>,
}

pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

fn default_job_binary() -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("job"))).unwrap_or_else(|| PathBuf::from("job"))
}

/// Resolves the tick settings: flag/env, then the file, then defaults; checks the combination.
pub fn resolve(args: &TickArgs, file: Option<&Path>) -> Result<Settings, SettingsError> {
    let f = match file {
        Some(p) => read_file(p)?,
        None => FileSettings::default(),
    };
    let max_parallel_jobs = args.max_parallel_jobs.or(f.max_parallel_jobs).unwrap_or(4);
    if max_parallel_jobs == 0 {
        return Err(SettingsError::Invalid("--max-parallel-jobs must be at least 1".into()));
    }
    let max_attempts = args.due.max_attempts.or(f.max_attempts).unwrap_or(3);
    if max_attempts < 1 {
        return Err(SettingsError::Invalid("--max-attempts must be at least 1".into()));
    }
    let configs_name =
        args.due.configs_view.clone().or(f.configs_view).unwrap_or_else(|| ConfigsSource::TABLE.to_string());
    let configs = ConfigsSource::parse(&configs_name)
        .map_err(|e| SettingsError::Invalid(format!("--configs-view: {}", e.source)))?;
    let lease = args.lease.or(f.lease).unwrap_or(Duration::from_secs(120));
    if lease < Duration::from_secs(1) {
        return Err(SettingsError::Invalid("--lease must be at least 1s".into()));
    }
    let executor = args.executor.or(f.executor).unwrap_or(ExecutorKind::Local);
    let cloud_run = CloudRunSettings {
        project: args
            .cloud_run_project
            .clone()
            .or(f.cloud_run_project)
            .or_else(|| std::env::var("GOOGLE_CLOUD_PROJECT").ok().filter(|s| !s.is_empty())),
        region: args.cloud_run_region.clone().or(f.cloud_run_region),
        job: args.cloud_run_job.clone().or(f.cloud_run_job),
        container: args.cloud_run_container.clone().or(f.cloud_run_container),
        api_url: args.cloud_run_api_url.clone().or(f.cloud_run_api_url),
        poll_interval: args.cloud_run_poll_interval.or(f.cloud_run_poll_interval).unwrap_or(Duration::from_secs(10)),
        request_timeout: args
            .cloud_run_request_timeout
            .or(f.cloud_run_request_timeout)
            .unwrap_or(Duration::from_secs(30)),
    };
    if executor == ExecutorKind::CloudRun {
        let mut missing = Vec::new();
        if cloud_run.project.is_none() {
            missing.push("--cloud-run-project (ORCHESTRATOR_CLOUD_RUN_PROJECT or GOOGLE_CLOUD_PROJECT)");
        }
        if cloud_run.region.is_none() {
            missing.push("--cloud-run-region (ORCHESTRATOR_CLOUD_RUN_REGION)");
        }
        if cloud_run.job.is_none() {
            missing.push("--cloud-run-job (ORCHESTRATOR_CLOUD_RUN_JOB)");
        }
        if !missing.is_empty() {
            return Err(SettingsError::Invalid(format!("the cloud-run executor needs {}", missing.join(", "))));
        }
    }
    Ok(Settings {
        executor,
        max_parallel_jobs,
        job_timeout: args.job_timeout.or(f.job_timeout).unwrap_or(Duration::from_secs(3600)),
        kill_grace: args.kill_grace.or(f.kill_grace).unwrap_or(Duration::from_secs(10)),
        retry: AttemptPolicy {
            max_attempts,
            base_delay_secs: args
                .due
                .retry_base_delay
                .or(f.retry_base_delay)
                .unwrap_or(Duration::from_secs(30))
                .as_secs_f64(),
            max_delay_secs: args
                .due
                .retry_max_delay
                .or(f.retry_max_delay)
                .unwrap_or(Duration::from_secs(900))
                .as_secs_f64(),
        },
        retry_wait_max: args.retry_wait_max.or(f.retry_wait_max).unwrap_or(Duration::from_secs(300)),
        lease,
        shutdown_grace: args.shutdown_grace.or(f.shutdown_grace).unwrap_or(Duration::from_secs(7)),
        configs,
        job_binary: args.job_binary.clone().or(f.job_binary).unwrap_or_else(default_job_binary),
        cloud_run,
    })
}

/// Resolves the `serve` settings (same precedence).
pub fn resolve_serve(args: &ServeArgs, file: Option<&Path>) -> Result<ServeSettings, SettingsError> {
    let f = match file {
        Some(p) => read_file(p)?,
        None => FileSettings::default(),
    };
    let listen = args.listen.or(f.listen).unwrap_or_else(|| {
        let port = std::env::var("PORT").ok().and_then(|p| p.parse::<u16>().ok()).unwrap_or(8080);
        SocketAddr::from(([0, 0, 0, 0], port))
    });
    let mut emails: Vec<String> =
        args.oidc_allowed_email.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
    if emails.is_empty() {
        emails = f.oidc_allowed_emails.unwrap_or_default();
    }
    let oidc = match args.oidc_audience.clone().or(f.oidc_audience) {
        Some(audience) => {
            if emails.is_empty() {
                return Err(SettingsError::Invalid(
                    "OIDC needs --oidc-allowed-email (the Cloud Scheduler job's service account)".into(),
                ));
            }
            let issuer = args.oidc_issuer.clone().or(f.oidc_issuer);
            let issuers = match issuer {
                Some(i) => vec![i],
                None => vec![GOOGLE_ISSUER.to_string(), "accounts.google.com".to_string()],
            };
            Some(OidcSettings {
                audience,
                allowed_emails: emails,
                jwks_url: args.oidc_jwks_url.clone().or(f.oidc_jwks_url).unwrap_or_else(|| GOOGLE_JWKS_URL.to_string()),
                issuers,
            })
        }
        None => None,
    };
    let token_file = args.auth_token_file.clone().or(f.auth_token_file);
    let auth_token = match (&args.auth_token, token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| SettingsError::Read { path: path.display().to_string(), source })?;
            let t = text.trim().to_string();
            if t.is_empty() {
                return Err(SettingsError::Invalid(format!("auth token file {} is empty", path.display())));
            }
            Some(Secret::new(t))
        }
        (None, None) => None,
    };
    if auth_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
        return Err(SettingsError::Invalid("the static auth token must be at least 16 characters".into()));
    }
    if oidc.is_none() && auth_token.is_none() && !args.insecure_no_auth {
        return Err(SettingsError::Invalid(
            "serve needs authentication: --oidc-audience with --oidc-allowed-email (Cloud Scheduler), or --auth-token / --auth-token-file (or --insecure-no-auth for a local demo)".into(),
        ));
    }
    Ok(ServeSettings {
        listen,
        oidc,
        auth_token,
        insecure_no_auth: args.insecure_no_auth,
        respond_within: args.respond_within.or(f.respond_within).unwrap_or(Duration::from_secs(150)),
    })
}

/// The settings as a flat map for the startup log line (no secrets).
pub fn describe(s: &Settings) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert("executor", s.executor.as_str().to_string());
    m.insert("max_parallel_jobs", s.max_parallel_jobs.to_string());
    m.insert("max_attempts", s.retry.max_attempts.to_string());
    m.insert("job_timeout", fmt_duration(s.job_timeout));
    m.insert("lease", fmt_duration(s.lease));
    m.insert("configs", s.configs.name().to_string());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2w").unwrap(), Duration::from_secs(14 * 86400));
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 weeks").is_err());
        assert_eq!(fmt_duration(Duration::from_secs(3725)), "1h 2m");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(3 * 3600 + 5)), "3h");
        assert_eq!(fmt_duration(Duration::from_secs(2 * 86400 + 5 * 3600 + 7)), "2d 5h");
    }

    #[test]
    fn file_settings_fill_what_flags_leave_unset() {
        let dir = tempfile_dir();
        let path = dir.join("orchestrator.json");
        std::fs::write(&path, r#"{"max-parallel-jobs": 9, "job_timeout": "20m", "max_attempts": 5, "configs-view": "active_job_configs"}"#).unwrap();
        let args = TickArgs { due: DueArgs { max_attempts: Some(2), ..DueArgs::default() }, ..TickArgs::default() };
        let s = resolve(&args, Some(&path)).unwrap();
        assert_eq!(s.max_parallel_jobs, 9);
        assert_eq!(s.job_timeout, Duration::from_secs(1200));
        assert_eq!(s.retry.max_attempts, 2, "the flag wins over the file");
        assert_eq!(s.configs.name(), "active_job_configs");

        std::fs::write(&path, r#"{"max_paralel_jobs": 9}"#).unwrap();
        assert!(resolve(&TickArgs::default(), Some(&path)).unwrap_err().to_string().contains("unknown field"));
        std::fs::write(&path, r#"{"auth_token": "x"}"#).unwrap();
        assert!(resolve(&TickArgs::default(), Some(&path)).unwrap_err().to_string().contains("secret"));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("orch-settings-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn serve_requires_some_authentication() {
        let err = resolve_serve(&ServeArgs::default(), None).unwrap_err().to_string();
        assert!(err.contains("needs authentication"), "{err}");
        let ok = resolve_serve(
            &ServeArgs { auth_token: Some(Secret::new("0123456789abcdef")), ..ServeArgs::default() },
            None,
        )
        .unwrap();
        assert!(ok.oidc.is_none());
        let err = resolve_serve(&ServeArgs { oidc_audience: Some("https://x".into()), ..ServeArgs::default() }, None)
            .unwrap_err();
        assert!(err.to_string().contains("--oidc-allowed-email"));
    }
}
