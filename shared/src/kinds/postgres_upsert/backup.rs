//! Where the job runs and the backup it owes production. The environment comes from
//! `ENVIRONMENT` (`local` | `staging` | `production`; `dev`/`development`/`test` mean local,
//! `stage` staging, `prod` production); when it is unset, a Cloud Run job or service
//! (`CLOUD_RUN_JOB` / `K_SERVICE` set) counts as production, anything else as local.
//! In production the target table is dumped with `pg_dump` (custom format) before any write;
//! the run fails if the dump cannot be taken. Restore with
//! `pg_restore --dbname "$TARGET_DATABASE_URL" --clean --if-exists --single-transaction FILE`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::error::{JobError, JobResult};

/// The deployment environment of this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Local,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Local => "local",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }

    /// From `ENVIRONMENT`, else Cloud Run detection; returns the environment and how it was found.
    pub fn detect() -> JobResult<(Environment, &'static str)> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Environment::from_vars(
            var("ENVIRONMENT").as_deref(),
            var("CLOUD_RUN_JOB").is_some() || var("K_SERVICE").is_some(),
        )
    }

    pub fn from_vars(env: Option<&str>, on_cloud_run: bool) -> JobResult<(Environment, &'static str)> {
        match env.map(|s| s.trim().to_ascii_lowercase()) {
            Some(v) => match v.as_str() {
                "local" | "dev" | "development" | "test" => Ok((Environment::Local, "ENVIRONMENT")),
                "staging" | "stage" => Ok((Environment::Staging, "ENVIRONMENT")),
                "production" | "prod" => Ok((Environment::Production, "ENVIRONMENT")),
                other => Err(JobError::config(format!(
                    "ENVIRONMENT={other:?} is not an environment (local, staging or production)"
                ))),
            },
            None if on_cloud_run => Ok((Environment::Production, "Cloud Run (ENVIRONMENT unset)")),
            None => Ok((Environment::Local, "default (ENVIRONMENT unset)")),
        }
    }
}

/// A backup that can be taken: the `pg_dump` to run and a writable directory.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    pub pg_dump: PathBuf,
    pub dir: PathBuf,
    pub version: String,
}

/// `pg_dump` from `PG_DUMP` (a path), else the one on PATH.
fn pg_dump_path() -> PathBuf {
    std::env::var_os("PG_DUMP").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("pg_dump"))
}

/// Checks that a backup could be taken now — `pg_dump` runs and `dir` is writable — without
/// writing anything but a probe file that is removed at once.
pub async fn plan(dir: Option<&Path>) -> JobResult<BackupPlan> {
    let dir = dir.ok_or_else(|| {
        JobError::config("no backup location: set spec.backup_dir or IMPORT_BACKUP_DIR (a backup is required before writing in production)")
    })?;
    let pg_dump = pg_dump_path();
    let out = tokio::process::Command::new(&pg_dump)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| JobError::destination(format!("cannot run {} for the backup: {e}", pg_dump.display())))?;
    if !out.status.success() {
        return Err(JobError::destination(format!(
            "{} --version failed: {}",
            pg_dump.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::create_dir_all(dir)
        .map_err(|e| JobError::destination(format!("backup directory {} cannot be created: {e}", dir.display())))?;
    let probe = dir.join(format!(".stb-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe")
        .map_err(|e| JobError::destination(format!("backup directory {} is not writable: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(BackupPlan { pg_dump, dir: dir.to_path_buf(), version })
}

/// The restore command for a backup file, with the connection left in the env var.
pub fn restore_command(connection_env: &str, file: &Path) -> String {
    format!("pg_restore --dbname \"${connection_env}\" --clean --if-exists --single-transaction '{}'", file.display())
}

/// Dumps `schema.table` (definition and data, custom format) into the plan's directory and
/// returns the file. The password reaches `pg_dump` through its environment, never its arguments.
pub async fn dump(
    plan: &BackupPlan,
    config: &tokio_postgres::Config,
    schema: &str,
    table: &str,
    tag: &str,
) -> JobResult<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let file = plan.dir.join(format!("{schema}.{table}-{stamp}-{tag}.dump"));
    let partial = file.with_extension("dump.partial");
    let mut cmd = tokio::process::Command::new(&plan.pg_dump);
    cmd.arg("--format=custom")
        .arg("--no-owner")
        .arg("--lock-wait-timeout=30000")
        .arg(format!("--table=\"{schema}\".\"{table}\""))
        .arg(format!("--file={}", partial.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for v in
        ["PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSERVICE", "PGSSLMODE", "PGOPTIONS"]
    {
        cmd.env_remove(v);
    }
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    if !hosts.is_empty() {
        cmd.env("PGHOST", hosts.join(","));
    }
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    if !ports.is_empty() {
        cmd.env("PGPORT", ports.join(","));
    }
    if let Some(u) = config.get_user() {
        cmd.env("PGUSER", u);
    }
    if let Some(p) = config.get_password() {
        cmd.env("PGPASSWORD", String::from_utf8_lossy(p).into_owned());
    }
    if let Some(d) = config.get_dbname() {
        cmd.env("PGDATABASE", d);
    }
    let sslmode = match config.get_ssl_mode() {
        tokio_postgres::config::SslMode::Disable => "disable",
        tokio_postgres::config::SslMode::Require => "require",
        _ => "prefer",
    };
    cmd.env("PGSSLMODE", sslmode).env("PGAPPNAME", "sheettobigquery backup");
    let out =
        cmd.output().await.map_err(|e| JobError::destination(format!("cannot run {}: {e}", plan.pg_dump.display())))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(JobError::destination(format!(
            "the backup of {schema}.{table} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::rename(&partial, &file)
        .map_err(|e| JobError::destination(format!("finishing the backup file {}: {e}", file.display())))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_detection() {
        assert_eq!(Environment::from_vars(Some("Production"), false).unwrap().0, Environment::Production);
        assert_eq!(Environment::from_vars(Some("prod"), false).unwrap().0, Environment::Production);
        assert_eq!(Environment::from_vars(Some("stage"), true).unwrap().0, Environment::Staging);
        assert_eq!(Environment::from_vars(None, true).unwrap().0, Environment::Production);
        assert_eq!(Environment::from_vars(None, false).unwrap().0, Environment::Local);
        assert!(Environment::from_vars(Some("qa"), false).is_err());
    }
}
