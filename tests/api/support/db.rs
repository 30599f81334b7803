//! `TestDb`: a database of each test's own, cloned from a migrated template, and the
//! one-value SQL probes tests read it with.

use std::sync::{
    LazyLock,
    atomic::{AtomicUsize, Ordering},
};

use authgraph::db;
use diesel::{QueryableByName, sql_types};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::app::TestApp;

/// Server holding the test databases; `TEST_DATABASE_URL` overrides it.
fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn db_url(name: &str) -> String {
    format!("{}/{name}", server_url().trim_end_matches('/'))
}

/// Runs async set-up or tear-down on a runtime of its own, so it works from any test
/// runtime and from `Drop`.
fn block_on_own_runtime<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fut)
    })
    .join()
    .expect("set-up thread panicked")
}

async fn admin_conn() -> AsyncPgConnection {
    AsyncPgConnection::establish(&db_url("postgres"))
        .await
        .expect("connect to PostgreSQL (is it running?)")
}

/// Databases of this process are named `authgraph_t<pid>_...`; those of dead processes
/// (a killed run) are dropped before the template is made.
static TEMPLATE: LazyLock<String> = LazyLock::new(|| {
    block_on_own_runtime(async {
        let pid = std::process::id();
        let mut conn = admin_conn().await;
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            datname: String,
        }
        let stale: Vec<Name> =
            diesel::sql_query("select datname from pg_database where datname like 'authgraph\\_t%'")
                .load(&mut conn)
                .await
                .unwrap();
        for Name { datname } in stale {
            let owner = datname
                .trim_start_matches("authgraph_t")
                .split('_')
                .next()
                .unwrap_or("");
            if owner
                .parse::<u32>()
                .is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            {
                let _ = diesel::sql_query(format!("drop database if exists \"{datname}\" with (force)"))
                    .execute(&mut conn)
                    .await;
            }
        }
        let name = format!("authgraph_t{pid}_template");
        diesel::sql_query(format!("drop database if exists \"{name}\" with (force)"))
            .execute(&mut conn)
            .await
            .unwrap();
        diesel::sql_query(format!("create database \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        db::run_migrations(&db_url(&name))
            .await
            .expect("migrating the template");
        name
    })
});

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A database of its own for one test, dropped with it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn create() -> Self {
        let template = TEMPLATE.clone();
        let name = format!(
            "authgraph_t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let create = format!("create database \"{name}\" template \"{template}\"");
        block_on_own_runtime(async move {
            let mut conn = admin_conn().await;
            diesel::sql_query(create)
                .execute(&mut conn)
                .await
                .expect("cloning the template");
        });
        let url = db_url(&name);
        Self { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let drop = format!("drop database if exists \"{}\" with (force)", self.name);
        block_on_own_runtime(async move {
            let mut conn = admin_conn().await;
            let _ = diesel::sql_query(drop).execute(&mut conn).await;
        });
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = sql_types::BigInt)]
    n: i64,
}

/// Runs a `select count(*) as n ...` (or any query answering one bigint `n`).
pub async fn count(app: &TestApp, query: &str) -> i64 {
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(query)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .n
}

#[derive(QueryableByName)]
struct Text {
    #[diesel(sql_type = sql_types::Text)]
    t: String,
}

/// Runs a query answering one text column `t`.
pub async fn text(app: &TestApp, query: &str) -> String {
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(query)
        .get_result::<Text>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .t
}

/// Accounts in the database.
pub async fn users(app: &TestApp) -> i64 {
    count(app, "select count(*) as n from users").await
}

/// Sessions in the database (one per successful register or login).
pub async fn sessions(app: &TestApp) -> i64 {
    count(app, "select count(*) as n from sessions").await
}
