//! Bulk seeding for the list figures: copies one payment request row (made through the API, so
//! it is a real one) under fresh ids, either until its destination holds the wanted number of
//! requests (then analysed), or by a number of rows with no `ANALYZE` (the growth figure).
//! Rows go in with `INSERT … SELECT … unnest(…)` in large batches.

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    database_url: String,
    /// The request whose row is copied.
    #[arg(long)]
    template: String,
    /// How many requests its destination should hold afterwards; the table is then analysed.
    #[arg(long, conflicts_with = "grow")]
    total: Option<u64>,
    /// How many copies to add with no `ANALYZE`, and with autovacuum off on the table so that
    /// none runs either: the planner keeps the statistics from before the growth.
    #[arg(long)]
    grow: Option<u64>,
}

const BATCH: u64 = 20_000;

const COLUMNS: &str = "organization_id, destination_id, direction, amount, currency, \
    amount_paid, status, customer_id, reference, description, due_at, expires_at, metadata, \
    created_by, client_id, version, created_at, updated_at";

/// Inserts `count` copies of the `template` request under new, older ids; returns the ids.
pub async fn copy_request(
    client: &tokio_postgres::Client,
    template: &str,
    count: u64,
) -> anyhow::Result<Vec<String>> {
    let statement = client
        .prepare(&format!(
            "INSERT INTO payment_requests (id, {COLUMNS}) \
             SELECT n.id, {COLUMNS} FROM payment_requests t, unnest($1::text[]) AS n(id) \
             WHERE t.id = $2"
        ))
        .await?;
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default();
    let mut ids = Vec::new();
    let mut made = 0;
    while made < count {
        let size = BATCH.min(count - made);
        // Ids a little older than now, each 1 ms apart: a realistic, time-ordered history.
        let batch: Vec<String> = (made..made + size)
            .map(|n| {
                let at = now_ms.saturating_sub(10_000 + (count - n));
                format!("req_{}", ulid::Ulid::from_parts(at, rand::random::<u128>()))
            })
            .collect();
        let inserted = client.execute(&statement, &[&batch, &template]).await?;
        anyhow::ensure!(
            inserted == size,
            "the template request {template} was not found"
        );
        made += size;
        ids.extend(batch.into_iter().take(1));
    }
    Ok(ids)
}

pub async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let (client, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
        .await
        .context("connecting to the database")?;
    tokio::spawn(connection);
    let started = std::time::Instant::now();
    match (args.total, args.grow) {
        (_, Some(grow)) => {
            client
                .batch_execute("ALTER TABLE payment_requests SET (autovacuum_enabled = off)")
                .await?;
            copy_request(&client, &args.template, grow).await?;
        }
        (Some(total), None) => {
            let row = client
                .query_one(
                    "SELECT count(*) FROM payment_requests WHERE destination_id = \
                     (SELECT destination_id FROM payment_requests WHERE id = $1)",
                    &[&args.template],
                )
                .await?;
            let existing = u64::try_from(row.get::<_, i64>(0)).unwrap_or_default();
            copy_request(&client, &args.template, total.saturating_sub(existing)).await?;
            client.batch_execute("ANALYZE payment_requests").await?;
        }
        (None, None) => anyhow::bail!("--total or --grow is needed"),
    }
    let row = client
        .query_one("SELECT count(*) FROM payment_requests", &[])
        .await?;
    Ok(serde_json::json!({
        "rows": row.get::<_, i64>(0),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

#[derive(clap::Args)]
pub struct DbArgs {
    /// A URL of the server's maintenance database.
    #[arg(long)]
    url: String,
    /// `create NAME`, `drop NAME` or `version`.
    action: String,
    name: Option<String>,
}

pub async fn db(args: DbArgs) -> anyhow::Result<serde_json::Value> {
    let (client, connection) = tokio_postgres::connect(&args.url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    let name = || {
        args.name
            .as_deref()
            .filter(|n| {
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
            .context("a database name of [a-z0-9_] is needed")
    };
    match args.action.as_str() {
        "create" => {
            let name = name()?;
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await?;
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await?;
        }
        "drop" => {
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", name()?))
                .await?;
        }
        "version" => {
            let row = client.query_one("SHOW server_version", &[]).await?;
            return Ok(serde_json::json!({ "version": row.get::<_, String>(0) }));
        }
        other => anyhow::bail!("unknown action {other}"),
    }
    Ok(serde_json::json!({}))
}
