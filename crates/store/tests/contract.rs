//! The store contract on both backends: every case on a database of its own, cloned from a
//! template migrated once per run.

use std::sync::Arc;

use mandate_domain::ports::Store;
use mandate_store::{DbStore, StoreOptions};
use mandate_test_support::{PostgresTemplate, SqliteTemplate};

async fn migrate(url: String) -> anyhow::Result<()> {
    mandate_store::migrate(&url).await?;
    Ok(())
}

async fn opened(url: &str) -> Arc<dyn Store> {
    let store = DbStore::open(url, &StoreOptions::default())
        .await
        .unwrap_or_else(|error| panic!("cannot open the test database: {error}"));
    Arc::new(store)
}

fn main() {
    let arguments = libtest_mimic::Arguments::from_args();
    let sqlite = Arc::new(SqliteTemplate::new(migrate).unwrap_or_else(|error| panic!("{error:#}")));
    let postgres = Arc::new(PostgresTemplate::new(migrate));

    let mut trials = mandate_contract::trials("sqlite", {
        let sqlite = sqlite.clone();
        move || {
            let sqlite = sqlite.clone();
            async move {
                let database = sqlite.fresh().await;
                (opened(&database.url).await, database)
            }
        }
    });
    trials.extend(mandate_contract::trials("postgres", {
        let postgres = postgres.clone();
        move || {
            let postgres = postgres.clone();
            async move {
                let database = postgres.fresh().await;
                (opened(&database.url).await, database)
            }
        }
    }));
    let conclusion = libtest_mimic::run(&arguments, trials);
    // Exiting runs no destructors: the templates go first.
    drop((sqlite, postgres));
    conclusion.exit();
}
