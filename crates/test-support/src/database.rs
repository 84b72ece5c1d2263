//! Fresh databases on the PostgreSQL server the tests are given.

use crate::with_database;

/// The server the tests create their databases on, from `TEST_DATABASE_URL`.
fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_DATABASE_URL is not set: run `cargo xtask test`, which finds or starts \
             PostgreSQL, or set it to a PostgreSQL URL whose user may create databases, e.g. \
             postgres://postgres@127.0.0.1:5432/postgres"
        )
    })
}

/// A connection to `url`, driven in the background.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to the test PostgreSQL: {error}"));
    tokio::spawn(connection);
    client
}

/// An empty database on the test server, dropped (sessions and all) when this is dropped.
pub struct FreshDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl FreshDatabase {
    /// An empty database.
    pub async fn create() -> FreshDatabase {
        FreshDatabase::create_as("").await
    }

    /// A copy of `template`, which no session may be connected to.
    pub(crate) async fn clone_of(template: &FreshDatabase) -> FreshDatabase {
        FreshDatabase::create_as(&format!(" TEMPLATE {}", template.name)).await
    }

    /// A database made by `CREATE DATABASE <a new name><options>`.
    async fn create_as(options: &str) -> FreshDatabase {
        let admin_url = test_database_url();
        let name = format!(
            "mandate_test_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        connect(&admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}{options}"))
            .await
            .unwrap_or_else(|error| panic!("cannot create the test database {name}: {error}"));
        let url = with_database(&admin_url, &name)
            .unwrap_or_else(|error| panic!("TEST_DATABASE_URL: {error:#}"));
        FreshDatabase {
            url,
            admin_url,
            name,
        }
    }

    /// Ends the database's sessions and refuses new ones, as a template must be.
    pub(crate) async fn close_to_sessions(&self) {
        let name = &self.name;
        connect(&self.admin_url)
            .await
            .batch_execute(&format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .await
            .unwrap_or_else(|error| panic!("cannot close {name} to sessions: {error}"));
    }

    /// A connection to the database.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop cannot await: a thread with a runtime of its own drops the database.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&statement).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test database {}: {error}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: the dropping thread panicked",
                self.name
            ),
        }
    }
}
