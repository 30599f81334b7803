use crate::support::TestDb;

#[tokio::test]
async fn every_migration_reverts_and_reapplies() {
    use diesel_async::AsyncConnection;
    let db = TestDb::create();
    let mut conn = diesel_async::AsyncPgConnection::establish(&db.url).await.unwrap();
    let before = authgraph::db::table_names(&mut conn).await.unwrap();
    assert!(
        before.contains(&"users".to_owned()) && before.contains(&"sessions".to_owned()),
        "{before:?}"
    );
    drop(conn);
    authgraph::db::redo_all_migrations(&db.url).await.unwrap();
    let mut conn = diesel_async::AsyncPgConnection::establish(&db.url).await.unwrap();
    assert_eq!(authgraph::db::table_names(&mut conn).await.unwrap(), before);
}

#[tokio::test]
async fn a_missing_database_is_created_once() {
    let db = TestDb::create();
    let url = format!("{}_new", db.url);
    assert!(authgraph::db::create_database_if_missing(&url).await.unwrap());
    assert!(!authgraph::db::create_database_if_missing(&url).await.unwrap());
    authgraph::db::run_migrations(&url).await.unwrap();
    // Tidy up the extra database this test made.
    let _extra = crate::support::TestDb {
        name: format!("{}_new", db.name),
        url,
    };
}
