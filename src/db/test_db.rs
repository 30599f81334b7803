//! A migrated database of a unit test's own, on a real PostgreSQL server
//! (`TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432`).

use std::sync::atomic::{AtomicUsize, Ordering};

use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db;

/// A migrated database of the test's own. Named as the API tests name theirs
/// (`authgraph_t<pid>_...`), so a killed run's databases are dropped by the next one.
pub(crate) struct TestDb {
    name: String,
    url: String,
}

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

impl TestDb {
    pub(crate) async fn new(label: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "authgraph_t{}_{label}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let url = format!("{}/{name}", server_url().trim_end_matches('/'));
        assert!(db::create_database_if_missing(&url).await.unwrap());
        db::run_migrations(&url).await.unwrap();
        Self { name, url }
    }

    pub(crate) async fn conn(&self) -> AsyncPgConnection {
        db::connect(&self.url, "test").await.unwrap()
    }

    pub(crate) async fn drop(self) {
        let admin = format!("{}/postgres", server_url().trim_end_matches('/'));
        let mut conn = db::connect(&admin, "test").await.unwrap();
        diesel::sql_query(format!("drop database \"{}\" with (force)", self.name))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}
