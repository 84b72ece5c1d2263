//! Databases cloned from a template: migrated once however many are asked for at once, each
//! with the template's content and a life of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mandate_test_support::{PostgresTemplate, SqliteTemplate, connect};

/// The path of an `sqlite://PATH` URL.
fn path_of(url: &str) -> String {
    url.strip_prefix("sqlite://").unwrap_or(url).to_owned()
}

fn notes(rows: &[tokio_postgres::Row]) -> Vec<String> {
    rows.iter().map(|row| row.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_clones_share_one_migration_and_nothing_else() {
    let migrations = Arc::new(AtomicUsize::new(0));
    let template = PostgresTemplate::new({
        let migrations = migrations.clone();
        move |url: String| {
            let migrations = migrations.clone();
            async move {
                migrations.fetch_add(1, Ordering::SeqCst);
                connect(&url)
                    .await
                    .batch_execute(
                        "CREATE TABLE marker (note text); INSERT INTO marker VALUES ('migrated')",
                    )
                    .await?;
                Ok(())
            }
        }
    });
    let (first, second) = tokio::join!(template.fresh(), template.fresh());
    assert_eq!(migrations.load(Ordering::SeqCst), 1);
    assert_ne!(first.url, second.url);

    let first_client = first.client().await;
    let second_client = second.client().await;
    first_client
        .batch_execute("INSERT INTO marker VALUES ('only in the first')")
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let read = "SELECT note FROM marker ORDER BY note";
    let first_rows = first_client.query(read, &[]).await;
    let second_rows = second_client.query(read, &[]).await;
    let first_rows = first_rows.unwrap_or_else(|error| panic!("{error}"));
    let second_rows = second_rows.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(notes(&first_rows), ["migrated", "only in the first"]);
    assert_eq!(notes(&second_rows), ["migrated"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_copies_share_one_migration_and_nothing_else() {
    let migrations = Arc::new(AtomicUsize::new(0));
    let template = SqliteTemplate::new({
        let migrations = migrations.clone();
        move |url: String| {
            let migrations = migrations.clone();
            async move {
                migrations.fetch_add(1, Ordering::SeqCst);
                std::fs::write(path_of(&url), "migrated")?;
                Ok(())
            }
        }
    })
    .unwrap_or_else(|error| panic!("{error:#}"));
    let (first, second) = tokio::join!(template.fresh(), template.fresh());
    assert_eq!(migrations.load(Ordering::SeqCst), 1);
    assert_ne!(first.url, second.url);

    std::fs::write(path_of(&first.url), "changed").unwrap_or_else(|error| panic!("{error}"));
    let second_content = std::fs::read_to_string(path_of(&second.url));
    assert_eq!(
        second_content.unwrap_or_else(|error| panic!("{error}")),
        "migrated"
    );
    let removed = path_of(&first.url);
    drop(first);
    assert!(
        !std::path::Path::new(&removed).exists(),
        "a copy goes with its guard"
    );
}
