//! The Postgres store: connection settings, the pool, migrations, and every SQL statement of the
//! control plane (configs and the run ledger), one function per statement.

pub mod claims;
pub mod configs;
pub mod history;
pub mod import_results;
pub mod migrate;
pub mod runs;

use std::fmt;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Where the control-plane database is: `DATABASE_URL`, or the existing deployment's
/// `POSTGRES_*` variables. Flattened into every command that needs the database.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DbArgs {
    /// Postgres connection URL (postgres://user:password@host:port/db). Takes precedence over the
    /// --postgres-* settings.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<Secret>,
    /// Postgres host (or a Unix socket directory such as /cloudsql/PROJECT:REGION:INSTANCE).
    #[arg(long, env = "POSTGRES_HOST", global = true)]
    pub postgres_host: Option<String>,
    /// Postgres port.
    #[arg(long, env = "POSTGRES_PORT", global = true)]
    pub postgres_port: Option<u16>,
    /// Postgres database name.
    #[arg(long, env = "POSTGRES_DB", global = true)]
    pub postgres_db: Option<String>,
    /// Postgres user.
    #[arg(long, env = "POSTGRES_USER", global = true)]
    pub postgres_user: Option<String>,
    /// Postgres password (prefer the env var or a secret; never logged).
    #[arg(long, env = "POSTGRES_PASSWORD", hide_env_values = true, global = true)]
    pub postgres_password: Option<Secret>,
}

impl DbArgs {
    pub fn from_url(url: &str) -> DbArgs {
        DbArgs { database_url: Some(Secret::new(url)), ..DbArgs::default() }
    }

    /// The driver config. Errors name the setting, never its secret value.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, String> {
        let mut cfg = if let Some(url) = &self.database_url {
            url.expose()
                .parse::<tokio_postgres::Config>()
                .map_err(|e| format!("DATABASE_URL is not a valid Postgres URL: {e}"))?
        } else if self.postgres_host.is_some() || self.postgres_db.is_some() {
            let mut c = tokio_postgres::Config::new();
            c.host(self.postgres_host.as_deref().unwrap_or("127.0.0.1"));
            c.port(self.postgres_port.unwrap_or(5432));
            c.dbname(self.postgres_db.as_deref().unwrap_or("postgres"));
            c.user(self.postgres_user.as_deref().unwrap_or("postgres"));
            if let Some(p) = &self.postgres_password {
                c.password(p.expose());
            }
            c
        } else {
            return Err("no database configured: set DATABASE_URL (or --database-url), or POSTGRES_HOST/POSTGRES_DB/POSTGRES_USER/POSTGRES_PASSWORD".into());
        };
        if cfg.get_application_name().is_none() {
            cfg.application_name("sheettobigquery");
        }
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(10));
        }
        Ok(cfg)
    }

    /// `host:port/db` for messages.
    pub fn describe(&self) -> String {
        match self.pg_config() {
            Ok(c) => describe_pg_config(&c),
            Err(_) => "(unconfigured)".into(),
        }
    }
}

/// `host:port/db` of a connection config: what messages say instead of the URL (which may hold a
/// password).
pub fn describe_pg_config(c: &tokio_postgres::Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", c.get_dbname().unwrap_or("postgres"))
}

/// A pool of connections to the control-plane database.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    describe: String,
}

/// A failed store operation, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct StoreError {
    pub what: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    pub fn new(what: impl Into<String>, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError { what: what.into(), source: Box::new(e) }
    }
    pub fn msg(what: impl Into<String>, msg: impl Into<String>) -> StoreError {
        let m: String = msg.into();
        StoreError { what: what.into(), source: m.into() }
    }
    /// The database's own message (tokio-postgres hides it in `source()`).
    pub fn db_message(&self) -> String {
        let mut s = self.to_string();
        if let Some(db) = self.source.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.as_db_error()) {
            s = format!("{}: {}", self.what, db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
        }
        s
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

impl Store {
    /// Builds the pool and checks that the database answers.
    pub async fn connect(args: &DbArgs, max_size: usize) -> StoreResult<Store> {
        let cfg = args.pg_config().map_err(|e| StoreError::msg("configuring the database", e))?;
        let describe = args.describe();
        let mgr = Manager::from_config(cfg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(mgr)
            .max_size(max_size)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(15)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::new("building the connection pool", e))?;
        let store = Store { pool, describe };
        let client = store.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| StoreError::new(format!("querying {}", store.describe), e))?;
        Ok(store)
    }

    pub fn describe(&self) -> &str {
        &self.describe
    }

    pub async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| StoreError::new(format!("connecting to Postgres at {}", self.describe), e))
    }
}

pub(crate) fn q(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::new(what, e)
}
