//! Isolated Postgres databases for tests: the migrations are applied once to a template database
//! (named after a hash of the migration files), and each test gets `CREATE DATABASE … TEMPLATE`,
//! dropped `WITH (FORCE)` when the handle is dropped.

use sheettobigquery::store::migrate::MIGRATIONS;
use sheettobigquery::store::{DbArgs, Store};
use tokio_postgres::NoTls;

/// The server tests use: `TEST_DATABASE_URL`, default the local trust-auth superuser.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn url_for(db: &str) -> String {
    let admin = admin_url();
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => panic!("TEST_DATABASE_URL must end with /<database>"),
    }
}

async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&admin_url(), NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test Postgres at {} ({e}); is it running?", admin_url()));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn template_name() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for m in MIGRATIONS {
        for b in m.sql.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("stb_template_{:012x}", h & 0xffff_ffff_ffff)
}

async fn ensure_template() -> String {
    let name = template_name();
    let client = admin().await;
    // Serialise template creation across test processes.
    client.execute("SELECT pg_advisory_lock(7301)", &[]).await.unwrap();
    let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await.unwrap().is_some();
    if !exists {
        let building = format!("{name}_building");
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)")).await.unwrap();
        client.batch_execute(&format!("CREATE DATABASE {building}")).await.unwrap();
        let store = Store::connect(&DbArgs::from_url(&url_for(&building)), 1).await.unwrap();
        sheettobigquery::store::migrate::run(&store).await.unwrap();
        drop(store);
        client.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}")).await.unwrap_or_else(|e| {
            panic!("renaming the template database: {e:?}");
        });
        // Templates of earlier migration sets are no longer used.
        let stale = client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'stb\\_template\\_%' AND datname NOT LIKE '%\\_building' AND datname <> $1",
                &[&name],
            )
            .await
            .unwrap();
        for row in stale {
            let old: String = row.get(0);
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {old} WITH (FORCE)")).await;
        }
    }
    client.execute("SELECT pg_advisory_unlock(7301)", &[]).await.unwrap();
    name
}

/// A database of the test's own, dropped on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A fresh, migrated database.
    pub async fn migrated() -> TestDb {
        let template = ensure_template().await;
        TestDb::create(Some(&template)).await
    }

    /// An empty database (for adoption and migration tests).
    pub async fn empty() -> TestDb {
        TestDb::create(None).await
    }

    async fn create(template: Option<&str>) -> TestDb {
        let name = format!("stb_t_{:016x}", fastrand_u64());
        let client = admin().await;
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        // A template in use by another session's CREATE DATABASE makes this fail briefly; retry
        // that, and only that.
        let mut tries = 0;
        loop {
            match client.batch_execute(&sql).await {
                Ok(()) => break,
                Err(e)
                    if tries < 50
                        && e.as_db_error()
                            .is_some_and(|d| d.message().contains("is being accessed by other users")) =>
                {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("creating test database: {e:?}"),
            }
        }
        let url = url_for(&name);
        TestDb { name, url }
    }

    pub fn db_args(&self) -> DbArgs {
        DbArgs::from_url(&self.url)
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.db_args(), 4).await.expect("connect to test database")
    }

    /// A plain client for assertions.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.expect("connect to test database");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let client = admin().await;
                let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            });
        })
        .join();
    }
}

pub(crate) fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}
