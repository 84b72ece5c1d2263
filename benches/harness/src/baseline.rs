//! The bare stack Mandate is built on, doing the least work its hot paths must do: actix-web,
//! diesel-async on a deadpool pool of the same size, the same schema. `GET /requests/{id}` is
//! one primary-key SELECT of a payment-request row, rendered as JSON; `POST /requests` inserts
//! a request row and its event row in one transaction. No authentication, no validation beyond
//! JSON parsing: the physical limit the ratios are taken against.

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

diesel::table! {
    payment_requests (id) {
        id -> Text,
        organization_id -> Text,
        destination_id -> Text,
        direction -> Text,
        amount -> Text,
        currency -> Text,
        amount_paid -> Text,
        status -> Text,
        customer_id -> Nullable<Text>,
        reference -> Nullable<Text>,
        description -> Nullable<Text>,
        due_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        metadata -> Text,
        created_by -> Text,
        client_id -> Nullable<Text>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    events (id) {
        id -> Text,
        organization_id -> Nullable<Text>,
        destination_id -> Nullable<Text>,
        orchestrator_id -> Nullable<Text>,
        client_id -> Nullable<Text>,
        direction -> Nullable<Text>,
        event_type -> Text,
        family -> Text,
        data -> Text,
        created_at -> Timestamp,
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = payment_requests, treat_none_as_default_value = false)]
struct RequestRow {
    id: String,
    organization_id: String,
    destination_id: String,
    direction: String,
    amount: String,
    currency: String,
    amount_paid: String,
    status: String,
    customer_id: Option<String>,
    reference: Option<String>,
    description: Option<String>,
    due_at: Option<NaiveDateTime>,
    expires_at: Option<NaiveDateTime>,
    metadata: String,
    created_by: String,
    client_id: Option<String>,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
struct EventRow {
    id: String,
    organization_id: Option<String>,
    destination_id: Option<String>,
    direction: Option<String>,
    event_type: String,
    family: String,
    data: String,
    created_at: NaiveDateTime,
}

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long)]
    bind: String,
    /// A database migrated by `mandate migrate` and seeded by `seed-baseline`.
    #[arg(long)]
    database_url: String,
    /// Pool size: Mandate's default.
    #[arg(long, default_value_t = 16)]
    pool: usize,
    /// The organization and destination new requests belong to.
    #[arg(long)]
    organization: String,
    #[arg(long)]
    destination: String,
}

#[derive(clap::Args)]
pub struct SeedArgs {
    #[arg(long)]
    database_url: String,
    /// How many payment requests to create.
    #[arg(long, default_value_t = 1000)]
    requests: u64,
}

struct State {
    pool: Pool<AsyncPgConnection>,
    organization: String,
    destination: String,
}

#[derive(Deserialize)]
struct NewRequest {
    direction: String,
    amount: String,
    currency: String,
    reference: Option<String>,
}

fn prefixed(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new())
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

fn unavailable(error: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::ServiceUnavailable().body(error.to_string())
}

async fn get_request(state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    let mut conn = match state.pool.get().await {
        Ok(conn) => conn,
        Err(error) => return unavailable(error),
    };
    let row = payment_requests::table
        .find(id.into_inner())
        .select(RequestRow::as_select())
        .first(&mut conn)
        .await
        .optional();
    match row {
        Ok(Some(row)) => HttpResponse::Ok().json(row),
        Ok(None) => HttpResponse::NotFound().finish(),
        Err(error) => unavailable(error),
    }
}

async fn create_request(state: web::Data<State>, body: web::Json<NewRequest>) -> HttpResponse {
    let body = body.into_inner();
    let at = now();
    let row = RequestRow {
        id: prefixed("req"),
        organization_id: state.organization.clone(),
        destination_id: state.destination.clone(),
        direction: body.direction,
        amount: body.amount,
        currency: body.currency,
        amount_paid: "0".into(),
        status: "open".into(),
        customer_id: None,
        reference: body.reference,
        description: None,
        due_at: None,
        expires_at: None,
        metadata: "{}".into(),
        created_by: state.destination.clone(),
        client_id: None,
        version: 1,
        created_at: at,
        updated_at: at,
    };
    let data = match serde_json::to_string(&row) {
        Ok(data) => data,
        Err(error) => return unavailable(error),
    };
    let event = EventRow {
        id: prefixed("evt"),
        organization_id: Some(row.organization_id.clone()),
        destination_id: Some(row.destination_id.clone()),
        direction: Some(row.direction.clone()),
        event_type: "payment_request.created".into(),
        family: "payment_request".into(),
        data,
        created_at: at,
    };
    let mut conn = match state.pool.get().await {
        Ok(conn) => conn,
        Err(error) => return unavailable(error),
    };
    let inserted = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            // The two statements travel together (pipelined), as Mandate's do.
            let conn: &AsyncPgConnection = conn;
            let request = diesel::insert_into(payment_requests::table)
                .values(&row)
                .execute(&mut &*conn);
            let event = diesel::insert_into(events::table)
                .values(&event)
                .execute(&mut &*conn);
            let (request, event) = tokio::join!(request, event);
            request?;
            event?;
            Ok(())
        })
        .await;
    match inserted {
        Ok(()) => HttpResponse::Created().json(row),
        Err(error) => unavailable(error),
    }
}

fn pool(url: &str, size: usize) -> anyhow::Result<Pool<AsyncPgConnection>> {
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .context("building the pool")
}

pub fn serve(args: Args) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let state = web::Data::new(State {
            pool: pool(&args.database_url, args.pool)?,
            organization: args.organization,
            destination: args.destination,
        });
        HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/healthz", web::get().to(HttpResponse::Ok))
                .route("/requests/{id}", web::get().to(get_request))
                .route("/requests", web::post().to(create_request))
        })
        .bind(&args.bind)
        .with_context(|| format!("binding {}", args.bind))?
        .run()
        .await
        .context("serving")
    })
}

/// An organization, a destination and `requests` payment requests, inserted directly.
pub async fn seed(args: SeedArgs) -> anyhow::Result<serde_json::Value> {
    let (client, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
        .await
        .context("connecting to the baseline database")?;
    tokio::spawn(connection);
    let organization = prefixed("org");
    let destination = prefixed("dst");
    tokio_postgres::Client::execute(
        &client,
        "INSERT INTO organizations (id, name, created_at) \
             VALUES ($1, 'Baseline', now() AT TIME ZONE 'UTC')",
        &[&organization],
    )
    .await?;
    tokio_postgres::Client::execute(
        &client,
        "INSERT INTO destinations (id, organization_id, slug, display_name, max_agents, \
             pending_claim_ttl_seconds, created_at, updated_at) \
             VALUES ($1, $2, $3, 'Baseline', 10, 3600, now() AT TIME ZONE 'UTC', \
             now() AT TIME ZONE 'UTC')",
        &[&destination, &organization, &destination.to_lowercase()],
    )
    .await?;
    let template = prefixed("req");
    tokio_postgres::Client::execute(
        &client,
        "INSERT INTO payment_requests (id, organization_id, destination_id, direction, amount, \
             currency, amount_paid, status, reference, metadata, created_by, version, created_at, \
             updated_at) VALUES ($1, $2, $3, 'incoming', '42.5', 'USD', '0', 'open', 'INV-7', \
             '{}', $3, 1, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')",
        &[&template, &organization, &destination],
    )
    .await?;
    let ids =
        crate::bulk::copy_request(&client, &template, args.requests.saturating_sub(1)).await?;
    Ok(serde_json::json!({
        "organization_id": organization,
        "destination_id": destination,
        "request_id": ids.last().unwrap_or(&template),
    }))
}
