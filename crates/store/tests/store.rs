//! What the store promises beyond the port contract: migrations, start-up races, failing fast

// Helpers outside #[test] functions panic to fail the test, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! when the database is gone, and concurrency on both backends.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use mandate_contract::fixtures;
use mandate_domain::events::EventType;
use mandate_domain::ids::OrganizationId;
use mandate_domain::model::KeyOwner;
use mandate_domain::payments::Direction;
use mandate_domain::policy::RequestScope;
use mandate_domain::ports::{RequestFilter, Store, StoreError};
use mandate_store::{Backend, DbStore, StoreOptions, migrate};
use mandate_test_support::{address_of, with_address};
use support::{FreshDatabase, Proxy};

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

fn migration_count() -> usize {
    MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS)
        .unwrap()
        .len()
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Tables, columns, indexes, constraints, triggers and functions, one line each (a function
/// may span several), migration bookkeeping excluded.
const POSTGRES_SCHEMA: &str = "
    SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
        || ' ' || coalesce(column_default, '') AS line
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'
    UNION ALL
    SELECT indexdef FROM pg_indexes
    WHERE schemaname = 'public' AND tablename <> '__diesel_schema_migrations'
    UNION ALL
    SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint
    WHERE connamespace = 'public'::regnamespace
        AND conrelid::regclass::text <> '__diesel_schema_migrations'
    UNION ALL
    SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL
    SELECT pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
    ORDER BY 1";

const SQLITE_SCHEMA: &str = "
    SELECT type || ' ' || name || ' ' || coalesce(sql, '') AS line
    FROM sqlite_master
    WHERE name NOT LIKE '__diesel%' AND name NOT LIKE 'sqlite_%'
    ORDER BY 1";

/// Applies each migration, reverts it and applies it again, checking that the revert restores
/// the schema exactly; then reverts everything and migrates from scratch.
fn check_every_migration_reverts<C, DB>(
    conn: &mut C,
    migrations: fn() -> EmbeddedMigrations,
    schema: &str,
) where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB> + diesel::Connection<Backend = DB> + diesel::connection::LoadConnection,
    EmbeddedMigrations: MigrationSource<DB>,
    diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'static, C, Line>,
{
    let snapshot = |conn: &mut C| -> Vec<String> {
        diesel::RunQueryDsl::load::<Line>(diesel::sql_query(schema), conn)
            .unwrap()
            .into_iter()
            .map(|row| row.line)
            .collect()
    };
    let names: Vec<String> = migrations()
        .migrations()
        .unwrap()
        .iter()
        .map(|migration| migration.name().to_string())
        .collect();
    assert!(!names.is_empty());
    let empty = snapshot(conn);
    assert!(empty.is_empty(), "{empty:?}");
    let mut before = empty.clone();
    for name in &names {
        conn.run_next_migration(migrations()).unwrap();
        let after = snapshot(conn);
        assert_ne!(after, before, "{name} changes nothing");
        conn.revert_last_migration(migrations()).unwrap();
        assert_eq!(
            snapshot(conn),
            before,
            "reverting {name} does not restore the schema"
        );
        conn.run_next_migration(migrations()).unwrap();
        assert_eq!(snapshot(conn), after, "{name} applied again differs");
        before = after;
    }
    conn.revert_all_migrations(migrations()).unwrap();
    assert_eq!(
        snapshot(conn),
        empty,
        "reverting everything leaves objects behind"
    );
    assert_eq!(
        conn.run_pending_migrations(migrations()).unwrap().len(),
        names.len()
    );
    assert_eq!(snapshot(conn), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_postgres_migration_applies_and_reverts_cleanly() {
    let database = FreshDatabase::create().await;
    let url = database.url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                .unwrap();
        check_every_migration_reverts(&mut conn, || POSTGRES_MIGRATIONS, POSTGRES_SCHEMA);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sqlite_migration_applies_and_reverts_cleanly() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("mandate.db");
    tokio::task::spawn_blocking(move || {
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();
        check_every_migration_reverts(&mut conn, || SQLITE_MIGRATIONS, SQLITE_SCHEMA);
    })
    .await
    .unwrap();
}

#[test]
fn both_backends_have_the_same_migrations() {
    let names = |backend: &str| {
        let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations")
            .join(backend);
        let mut names: Vec<String> = std::fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("postgres"), names("sqlite"));
    assert_eq!(names("postgres").len(), migration_count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_exactly_once() {
    let database = FreshDatabase::create().await;
    let options = StoreOptions::default();
    let opened =
        futures_util::future::join_all((0..4).map(|_| DbStore::open(&database.url, &options)))
            .await;
    let stores: Vec<DbStore> = opened.into_iter().map(Result::unwrap).collect();
    assert!(
        stores
            .iter()
            .all(|store| store.backend() == Backend::Postgres)
    );

    let mut conn = <AsyncPgConnection as diesel_async::AsyncConnection>::establish(&database.url)
        .await
        .unwrap();
    let applied: Count = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT count(*) AS count FROM __diesel_schema_migrations"),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(applied.count, migration_count() as i64);
    assert_eq!(migrate(&database.url).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_and_directories_are_created_and_migrated_once() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("nested/data/mandate.db");
    let url = format!("sqlite:{}", path.display());
    assert_eq!(migrate(&url).await.unwrap(), migration_count());
    assert!(path.exists());
    assert_eq!(migrate(&url).await.unwrap(), 0);
    let store = DbStore::open(&url, &StoreOptions::default()).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store_of(store).ping().await.unwrap();

    let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    let mode: JournalMode = diesel::sql_query("PRAGMA journal_mode")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(mode.journal_mode, "wal");
}

#[derive(QueryableByName)]
struct JournalMode {
    #[diesel(sql_type = Text)]
    journal_mode: String,
}

/// A destination needs its organization, and a destination key its destination in the same
/// organization.
async fn references_are_enforced(store: Arc<dyn Store>) {
    let orphan = fixtures::destination(&OrganizationId::generate());
    let refused = store.insert_destination(&orphan).await;
    assert!(matches!(refused, Err(StoreError::Other(_))), "{refused:?}");

    let mut destinations = Vec::new();
    for _ in 0..2 {
        let organization = fixtures::organization();
        let platform = KeyOwner::Platform {
            organization_id: organization.id.clone(),
        };
        store
            .insert_organization(&organization, &fixtures::key(platform))
            .await
            .unwrap();
        let destination = fixtures::destination(&organization.id);
        store.insert_destination(&destination).await.unwrap();
        destinations.push(destination);
    }
    let crossed = fixtures::key(KeyOwner::Destination {
        organization_id: destinations[0].organization_id.clone(),
        destination_id: destinations[1].id.clone(),
    });
    let refused = store
        .insert_key(&crossed, None, mandate_domain::now())
        .await;
    assert!(matches!(refused, Err(StoreError::Other(_))), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_enforces_references() {
    let (store, _database) = support::postgres_store().await;
    references_are_enforced(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_enforces_references() {
    let (store, _directory) = support::sqlite_store().await;
    references_are_enforced(store).await;
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in [
        "mysql://root:hunter2@localhost/mandate",
        "data/mandate.db",
        "sqlite::memory:",
    ] {
        let refused = DbStore::open(url, &StoreOptions::default())
            .await
            .unwrap_err();
        assert!(
            !mandate_domain::error_chain(&refused).contains("hunter2"),
            "{refused}"
        );
    }
}

/// Runs `statements` on the SQLite file of a store, behind the store's back.
fn damage(directory: &tempfile::TempDir, statements: &str) {
    let path = directory.path().join("mandate.db");
    let mut conn = SqliteConnection::establish(&path.display().to_string()).unwrap();
    conn.batch_execute(statements).unwrap();
}

/// A stored value that breaks a domain rule fails the read of its row with the store's error
/// for unreadable rows (a 500, never a panic), and a list names the request it cannot read in
/// `unreadable` instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_values_that_break_domain_rules_fail_their_reads() {
    let (store, directory) = support::sqlite_store().await;
    let (_, destinations) = fixtures::seed_organization(&*store, 1).await;
    let orchestrator = fixtures::seed_orchestrator(&*store).await;
    let request = fixtures::payment_request(&destinations[0], Direction::Incoming, None);
    let created = fixtures::request_event(EventType::PaymentRequestCreated, &request);
    store.insert_request(&request, &created).await.unwrap();
    damage(
        &directory,
        "UPDATE orchestrators SET slug = 'Not A Slug';
         UPDATE payment_requests SET amount_paid = 'not a number';",
    );

    let unreadable = |read: Result<_, StoreError>| match read {
        Err(StoreError::Other(cause)) => cause.to_string(),
        other => panic!("a damaged row was read: {other:?}"),
    };
    let orchestrator = store.orchestrator(&orchestrator.id).await.map(|_| ());
    assert!(unreadable(orchestrator).starts_with("a stored row cannot be read"));
    let read = store.request(&request.id).await.map(|_| ());
    assert!(unreadable(read).starts_with("a stored row cannot be read"));
    let scope = RequestScope::Destination(destinations[0].id.clone());
    let listed = store
        .list_requests(&scope, &RequestFilter::default(), &page())
        .await
        .unwrap();
    assert!(listed.data.is_empty());
    assert_eq!(listed.unreadable, vec![request.id.to_string()]);
}

fn store_of(store: DbStore) -> Arc<dyn Store> {
    Arc::new(store)
}

/// Awaits `future`, failing the test when it takes 10 s or more.
async fn promptly<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("no outcome within 10 s")
}

fn fast_failing() -> StoreOptions {
    StoreOptions {
        max_connections: 1,
        acquire_timeout: Duration::from_millis(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_an_unreachable_database_fails_fast_without_showing_the_password() {
    let refused = promptly(DbStore::open(
        "postgres://postgres:hunter2@127.0.0.1:1/postgres",
        &fast_failing(),
    ))
    .await
    .unwrap_err();
    let shown = mandate_domain::error_chain(&refused);
    assert!(shown.contains("127.0.0.1:1"), "{shown}");
    assert!(
        !shown.contains("hunter2") && !format!("{refused:?}").contains("hunter2"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_unavailable_while_the_database_is_gone_and_recovers() {
    let database = FreshDatabase::create().await;
    let proxy = Proxy::start(address_of(&database.url).unwrap()).await;
    let store = store_of(
        DbStore::open(
            &with_address(&database.url, &proxy.address()).unwrap(),
            &fast_failing(),
        )
        .await
        .unwrap(),
    );
    store.ping().await.unwrap();

    proxy.cut().await;
    for _ in 0..2 {
        let outcome = promptly(store.ping()).await;
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{outcome:?}"
        );
    }

    proxy.restore().await;
    store.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_bounded_when_the_database_stops_answering() {
    let database = FreshDatabase::create().await;
    let proxy = Proxy::start(address_of(&database.url).unwrap()).await;
    let store = store_of(
        DbStore::open(
            &with_address(&database.url, &proxy.address()).unwrap(),
            &fast_failing(),
        )
        .await
        .unwrap(),
    );
    store.ping().await.unwrap();

    proxy.freeze();
    // One ping holds the only connection while the others wait for it.
    let outcomes = promptly(futures_util::future::join_all((0..3).map(|_| store.ping()))).await;
    for outcome in outcomes {
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{outcome:?}"
        );
    }

    proxy.thaw();
    store.ping().await.unwrap();
}

/// Many rounds of simultaneous key insertions on a warm pool, so that the attempts overlap.
async fn key_limit_holds_under_contention(store: Arc<dyn Store>) {
    futures_util::future::join_all((0..16).map(|_| store.ping())).await;
    for _ in 0..10 {
        let orchestrator = fixtures::orchestrator();
        let owner = KeyOwner::Orchestrator {
            orchestrator_id: orchestrator.id.clone(),
        };
        store
            .insert_orchestrator(&orchestrator, &fixtures::key(owner.clone()))
            .await
            .unwrap();
        let at = mandate_domain::now();
        let attempts = (0..16).map(|_| {
            let store = store.clone();
            let candidate = fixtures::key(owner.clone());
            async move { store.insert_key(&candidate, Some(3), at).await.unwrap() }
        });
        let accepted = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .filter(|accepted| *accepted)
            .count();
        assert_eq!(accepted, 2);
        assert_eq!(store.keys_of(&owner).await.unwrap().len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_key_limit_holds_under_contention() {
    let (store, _database) = support::postgres_store().await;
    key_limit_holds_under_contention(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_key_limit_holds_under_contention() {
    let (store, _directory) = support::sqlite_store().await;
    key_limit_holds_under_contention(store).await;
}

/// Two stores on one SQLite file stand for two processes (the server and an admin command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_sqlite_file_write_concurrently_without_lock_errors() {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", directory.path().join("mandate.db").display());
    let options = StoreOptions::default();
    let (first, second) =
        tokio::join!(DbStore::open(&url, &options), DbStore::open(&url, &options));
    let stores = [store_of(first.unwrap()), store_of(second.unwrap())];
    let organization = fixtures::organization();
    let platform = KeyOwner::Platform {
        organization_id: organization.id.clone(),
    };
    stores[0]
        .insert_organization(&organization, &fixtures::key(platform.clone()))
        .await
        .unwrap();
    let writes = (0..64).map(|n| {
        let store = stores[n % 2].clone();
        let destination = fixtures::destination(&organization.id);
        let key = fixtures::key(platform.clone());
        async move {
            store.insert_destination(&destination).await?;
            store
                .insert_key(&key, Some(1000), mandate_domain::now())
                .await?;
            store
                .list_destinations(
                    &mandate_domain::policy::DestinationScope::One(destination.id),
                    &page(),
                )
                .await
        }
    });
    for outcome in futures_util::future::join_all(writes).await {
        outcome.unwrap();
    }
    assert_eq!(stores[1].keys_of(&platform).await.unwrap().len(), 65);
}

fn page() -> mandate_domain::ports::PageRequest {
    mandate_domain::ports::PageRequest {
        limit: 10,
        starting_after: None,
    }
}

/// Each actix worker runs a current-thread runtime and drops a handler's future when its
/// client goes away; the store must neither panic then nor leave the operation half done.
#[tokio::test]
async fn abandoned_operations_complete_on_a_current_thread_runtime() {
    let (store, _directory) = support::sqlite_store().await;
    let organization = fixtures::organization();
    let platform = KeyOwner::Platform {
        organization_id: organization.id.clone(),
    };
    store
        .insert_organization(&organization, &fixtures::key(platform.clone()))
        .await
        .unwrap();
    for _ in 0..20 {
        let key = fixtures::key(platform.clone());
        let mut insert = store.insert_key(&key, Some(100), mandate_domain::now());
        // Polled once, then dropped.
        std::future::poll_fn(|context| {
            let _ = insert.as_mut().poll(context);
            std::task::Poll::Ready(())
        })
        .await;
        drop(insert);
    }
    promptly(async {
        while store.keys_of(&platform).await.unwrap().len() < 21 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A keyed call on the database: nothing of what it wrote stays unless it commits, whether it
/// rolls back or dies (its transaction dropped with its connection).
async fn keyed_calls_keep_nothing_unless_they_commit(store: Arc<dyn Store>) {
    use mandate_domain::ports::{KeyedCall, KeyedStart};

    let (_, destinations) = fixtures::seed_organization(&*store, 1).await;
    let events = fixtures::all_events(&*store).await;
    let call = KeyedCall {
        scope: "key_a".into(),
        key: "order-1".into(),
        fingerprint: "fp-1".into(),
        received_at: mandate_domain::now(),
    };
    // The first call rolls back, the second dies without ending, the third commits.
    for ending in ["roll back", "die", "commit"] {
        let KeyedStart::Run(write) = store.clone().begin_keyed(&call).await.unwrap() else {
            panic!("the key is unused until a call commits");
        };
        let request = fixtures::payment_request(
            &destinations[0],
            mandate_domain::payments::Direction::Incoming,
            None,
        );
        let event = fixtures::request_event(
            mandate_domain::events::EventType::PaymentRequestCreated,
            &request,
        );
        write
            .store()
            .insert_request(&request, &event)
            .await
            .unwrap();
        // The call's own reads see its writes.
        assert!(write.store().request(&request.id).await.unwrap().is_some());
        match ending {
            "roll back" => write.roll_back().await.unwrap(),
            "die" => drop(write),
            _ => write.commit(call.answer(201, "{}".into())).await.unwrap(),
        }
        let kept = store.request(&request.id).await.unwrap().is_some();
        assert_eq!(kept, ending == "commit", "after {ending}");
    }
    assert_eq!(
        fixtures::all_events(&*store).await.len(),
        events.len() + 1,
        "one event, of the call that committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keyed_calls_keep_nothing_unless_they_commit() {
    let (store, _database) = support::postgres_store().await;
    keyed_calls_keep_nothing_unless_they_commit(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keyed_calls_keep_nothing_unless_they_commit() {
    let (store, _directory) = support::sqlite_store().await;
    keyed_calls_keep_nothing_unless_they_commit(store).await;
}

/// A call with a key another call holds waits for it: it gets the first call's answer when
/// that commits, runs when it rolls back, and is told `InFlight` when the wait outlasts the
/// lock timeout (the acquire timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keyed_calls_wait_for_the_first_call_with_their_key() {
    use mandate_domain::ports::{IdempotencyStart, KeyedCall, KeyedStart};

    let database = FreshDatabase::create().await;
    let options = StoreOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_millis(500),
    };
    let store = store_of(DbStore::open(&database.url, &options).await.unwrap());
    let call = KeyedCall {
        scope: "key_a".into(),
        key: "order-1".into(),
        fingerprint: "fp-1".into(),
        received_at: mandate_domain::now(),
    };
    let run = |store: &Arc<dyn Store>| {
        let (store, call) = (store.clone(), call.clone());
        async move { store.begin_keyed(&call).await.unwrap() }
    };
    let KeyedStart::Run(first) = run(&store).await else {
        panic!("the first call runs");
    };
    // Past the lock timeout: still in flight.
    let started = Instant::now();
    assert!(matches!(
        promptly(run(&store)).await,
        KeyedStart::Answered(IdempotencyStart::InFlight)
    ));
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Within it: the second waits, then runs once the first rolls back.
    let second = tokio::spawn(run(&store));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "the second call waits for the first");
    first.roll_back().await.unwrap();
    let KeyedStart::Run(second) = promptly(second).await.unwrap() else {
        panic!("the key is unused once the first call rolled back");
    };
    // A third waits for the second, then replays its answer.
    let third = tokio::spawn(run(&store));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!third.is_finished(), "the third call waits for the second");
    second.commit(call.answer(201, "{}".into())).await.unwrap();
    match promptly(third).await.unwrap() {
        KeyedStart::Answered(found) => assert_eq!(
            found,
            IdempotencyStart::Replay {
                status: 201,
                body: "{}".into()
            }
        ),
        KeyedStart::Run(_) => panic!("the key was answered"),
    }
}

/// Starts a long wait for work on `waiter`, checks that it lasts while nothing happens, runs
/// `write`, and returns how long the wait went on after the write had committed.
async fn wake_delay(
    waiter: &Arc<dyn Store>,
    write: impl std::future::Future<Output = ()>,
) -> Duration {
    let wait = tokio::spawn({
        let waiter = waiter.clone();
        async move {
            waiter.wait_for_work(Duration::from_secs(30)).await;
            Instant::now()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!wait.is_finished(), "the wait ended without news");
    write.await;
    let committed = Instant::now();
    promptly(wait)
        .await
        .unwrap()
        .saturating_duration_since(committed)
}

/// How long a wait for work with `timeout` lasts.
async fn waited(store: &Arc<dyn Store>, timeout: Duration) -> Duration {
    let started = Instant::now();
    promptly(store.wait_for_work(timeout)).await;
    started.elapsed()
}

/// A request of `destination` and its event, stored by `store`.
async fn store_request(store: &Arc<dyn Store>, destination: &mandate_domain::model::Destination) {
    let request = fixtures::payment_request(
        destination,
        mandate_domain::payments::Direction::Incoming,
        None,
    );
    let event = fixtures::request_event(
        mandate_domain::events::EventType::PaymentRequestCreated,
        &request,
    );
    store.insert_request(&request, &event).await.unwrap();
}

/// A `webhook.test` event whose attempt names an endpoint that does not exist: the store
/// refuses it, event and all.
async fn refused_direct_event(store: &Arc<dyn Store>) {
    use mandate_domain::events::{Audience, Event, EventType};
    use mandate_domain::ids::EndpointId;
    use mandate_domain::webhooks::Delivery;

    let at = mandate_domain::now();
    let event = Event::new(EventType::WebhookTest, Audience::default(), &"test", at);
    let delivery = Delivery::first(&event.id, &EndpointId::generate(), at);
    assert!(store.insert_direct_event(&event, &delivery).await.is_err());
}

const PROMPTLY: Duration = Duration::from_secs(1);
const QUIET: Duration = Duration::from_millis(700);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_workers_wake_when_another_replica_commits() {
    use mandate_domain::webhooks::Delivery;

    let database = FreshDatabase::create().await;
    let options = StoreOptions::default();
    let waiter = store_of(DbStore::open(&database.url, &options).await.unwrap());
    let writer = store_of(DbStore::open(&database.url, &options).await.unwrap());
    let (_, destinations) = fixtures::seed_organization(&*writer, 1).await;

    // The first wait starts listening, and ends once the listener listens: what was committed
    // before could not be heard.
    assert!(waited(&waiter, Duration::from_secs(30)).await < Duration::from_secs(5));
    // Without news a wait lasts its whole timeout: nothing polls.
    assert!(waited(&waiter, QUIET).await >= QUIET);

    // A new event committed by another replica wakes it at once.
    let delay = wake_delay(&waiter, store_request(&writer, &destinations[0])).await;
    assert!(delay < PROMPTLY, "woken {delay:?} after the commit");
    assert!(waited(&waiter, QUIET).await >= QUIET);

    // So does a new attempt (a retry, a rescheduled delivery).
    let endpoint = fixtures::destination_endpoint(&destinations[0]);
    writer.insert_endpoint(&endpoint).await.unwrap();
    let event = fixtures::all_events(&*writer).await.remove(0);
    let attempt = Delivery::first(&event.id, &endpoint.id, mandate_domain::now());
    let delay = wake_delay(&waiter, async {
        writer.insert_delivery(&attempt).await.unwrap();
    })
    .await;
    assert!(delay < PROMPTLY, "woken {delay:?} after the commit");

    // News that arrives while nobody waits ends the next wait at once.
    store_request(&writer, &destinations[0]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(waited(&waiter, Duration::from_secs(30)).await < PROMPTLY);

    // A rolled-back write announces nothing.
    refused_direct_event(&writer).await;
    assert!(waited(&waiter, QUIET).await >= QUIET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_work_listener_reconnects_after_losing_its_connection() {
    let database = FreshDatabase::create().await;
    let proxy = Proxy::start(address_of(&database.url).unwrap()).await;
    let waiter = store_of(
        DbStore::open(
            &with_address(&database.url, &proxy.address()).unwrap(),
            &fast_failing(),
        )
        .await
        .unwrap(),
    );
    let writer = store_of(
        DbStore::open(&database.url, &StoreOptions::default())
            .await
            .unwrap(),
    );
    let (_, destinations) = fixtures::seed_organization(&*writer, 1).await;
    assert!(waited(&waiter, Duration::from_secs(30)).await < Duration::from_secs(5));

    proxy.cut().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore().await;
    // Listening again, the listener wakes its waiters: news may have been missed meanwhile.
    assert!(waited(&waiter, Duration::from_secs(30)).await < Duration::from_secs(10));

    let delay = wake_delay(&waiter, store_request(&writer, &destinations[0])).await;
    assert!(delay < PROMPTLY, "woken {delay:?} after the commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_workers_wake_when_the_store_commits() {
    let (store, _directory) = support::sqlite_store().await;
    let (_, destinations) = fixtures::seed_organization(&*store, 1).await;
    assert!(waited(&store, QUIET).await >= QUIET);

    let delay = wake_delay(&store, store_request(&store, &destinations[0])).await;
    assert!(delay < PROMPTLY, "woken {delay:?} after the commit");
    assert!(waited(&store, QUIET).await >= QUIET);

    // News that arrives while nobody waits ends the next wait at once.
    store_request(&store, &destinations[0]).await;
    assert!(waited(&store, Duration::from_secs(30)).await < PROMPTLY);

    refused_direct_event(&store).await;
    assert!(waited(&store, QUIET).await >= QUIET);
}
