//! A real PostgreSQL server for the tests: [`spark_cloud::services::Postgres`] (an `initdb` in a temporary folder,
//! run as `nobody` when the tests run as root, stopped on drop), failing the test when it cannot start, and a fresh
//! database per test.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spark_cloud::services::{self, Program};

/// Where `program` is, as [`services::find`] looks for it.
pub fn find(program: &str) -> Option<PathBuf> {
    services::find(program)
}

/// A running PostgreSQL server.
pub struct Postgres {
    server: services::Postgres,
    pub port: u16,
    databases: AtomicUsize,
}

impl Postgres {
    /// Starts a server without `fsync` (tests); panics (failing the test) when the programs are missing or it does
    /// not come up.
    pub fn start() -> Postgres {
        Postgres::start_with_fsync(false)
    }

    /// Whether `postgres` and `initdb` are installed.
    pub fn installed() -> bool {
        services::check_installed(&[Program::Postgres, Program::Initdb]).is_ok()
    }

    /// Starts a server, durable (`fsync` on: what a benchmark compares) or not.
    pub fn start_with_fsync(fsync: bool) -> Postgres {
        let server = services::Postgres::start(fsync).unwrap_or_else(|e| panic!("{e}"));
        Postgres {
            port: server.port(),
            server,
            databases: AtomicUsize::new(0),
        }
    }

    /// The URL of the server's `postgres` database.
    pub fn admin_url(&self) -> String {
        self.server.url("postgres")
    }

    /// Creates a fresh database and returns its URL.
    pub async fn database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("spark_test_{}_{n}", std::process::id());
        let deadline = Instant::now() + Duration::from_secs(60);
        let (client, connection) = loop {
            match tokio_postgres::connect(&self.admin_url(), tokio_postgres::NoTls).await {
                Ok(c) => break c,
                // The server said it is ready; retry briefly all the same while it settles.
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot connect to the test server: {e}"),
            }
        };
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
        self.server.url(&name)
    }

    /// A fresh database opened as a shared store (migrated, with its server keys of `key_bits`) and holding
    /// `users`, each with the password `pw`: the URL and the store.
    pub async fn registry(
        &self,
        users: &[&str],
    ) -> (String, std::sync::Arc<dyn spark_cloud::store::Store>) {
        use spark_cloud::store;
        let url = self.database().await;
        let shared = store::open(&store::StoreConfig::Postgres(url.clone()), 1024)
            .await
            .unwrap();
        for user in users {
            store::create_user(&*shared, user, "pw").await.unwrap();
        }
        (url, shared)
    }
}
