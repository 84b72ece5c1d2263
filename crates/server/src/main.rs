//! `mandate`: the server binary — configuration, CLI, wiring.

mod secrets;
mod settings;
mod shutdown;
mod telemetry;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mandate_domain::keys::KeyHasher;
use mandate_domain::principal::Principal;
use mandate_domain::usecases::Mandate;
use mandate_http::{AppState, FailedAuthThrottle, MetricsRenderer, RateLimit};
use mandate_store::{DbStore, StoreOptions};
use mandate_webhooks::{
    NetworkPolicy, RetrySchedule, Sender, SsrfGuard, WorkerConfig, parse_cidrs,
};
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, Settings};
use crate::shutdown::StopSignal;

/// Scoped, revocable access to payment destinations for orchestrators and their agents.
#[derive(Debug, Parser)]
#[command(name = "mandate", version)]
struct Cli {
    /// A configuration file (default: ./mandate.toml when present).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and deliver webhooks (the default).
    Serve {
        /// What this process does: `api` (HTTP only), `worker` (webhook delivery only), or `all`.
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Operator commands that act directly on the database.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print the OpenAPI document, for the configured public URL (`servers`).
    Openapi,
}

/// The parts of the server one process runs; replicas can split them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// The HTTP API.
    Api,
    /// The webhook delivery worker.
    Worker,
    /// Both.
    All,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an organization; prints it with its platform key (shown once).
    CreateOrganization {
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// Register an orchestrator; prints it with its API key (shown once).
    CreateOrchestrator {
        /// Unique slug.
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("mandate: {error:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Openapi) = cli.command {
        println!("{}", mandate_http::openapi::json(&settings.public_url()));
        return ExitCode::SUCCESS;
    }
    init_logging(&settings);
    let outcome = match cli.command.unwrap_or(Command::Serve { role: Role::All }) {
        Command::Serve { role } => serve(settings, role).await,
        Command::Migrate => migrate(&settings).await,
        Command::Admin(command) => admin(settings, command).await,
        Command::Openapi => Ok(()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "mandate stopped");
            eprintln!("mandate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    let filter = EnvFilter::try_new(&settings.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<DbStore> {
    let options = StoreOptions {
        max_connections: settings.database.max_connections,
        acquire_timeout: Duration::from_millis(settings.database.acquire_timeout_ms),
    };
    let store = DbStore::open(&settings.database_url(), &options)
        .await
        .context("cannot open the database")?;
    Ok(store)
}

fn use_cases(settings: &Settings, store: DbStore) -> anyhow::Result<Mandate> {
    let secret = secrets::load_or_generate(
        settings.secrets.key_hash_secret.as_deref(),
        &settings.data.dir,
        "key_hash_secret",
    )?;
    // The same server secret keys the API-key hashes and seals webhook secrets at rest
    // (each use with its own derived key).
    let store = store.with_webhook_secret_sealing(&secret);
    Ok(Mandate::new(Arc::new(store), KeyHasher::new(&secret))
        .with_public_url(&settings.public_url()))
}

async fn serve(settings: Settings, role: Role) -> anyhow::Result<()> {
    // Listening starts before anything else, so that a stop signal during start-up is honoured
    // like any other.
    let mut stop = StopSignal::listen().context("cannot listen for stop signals")?;
    let metrics = telemetry::install()?;
    let store = open_store(&settings).await?;
    let backend = store.backend();
    let pool_view = store.clone();
    let mandate = use_cases(&settings, store)?;
    let shutdown_timeout = Duration::from_secs(settings.server.shutdown_timeout_seconds);
    let hooks = &settings.webhooks;
    let policy = NetworkPolicy {
        allow_http: hooks.allow_http,
        allow_private_targets: hooks.allow_private_targets,
        allowed_cidrs: parse_cidrs(&hooks.allowed_cidrs)
            .context("invalid webhooks.allowed_cidrs")?,
    };
    let (stop_worker, worker_stop_asked) = tokio::sync::watch::channel(false);
    let worker = if role == Role::Api {
        None
    } else {
        let sender = Sender::new(policy.clone(), Duration::from_secs(hooks.timeout_seconds))
            .context("cannot build the webhook client")?;
        let config = WorkerConfig {
            schedule: RetrySchedule::parse(&hooks.retry_schedule)
                .context("invalid webhooks.retry_schedule")?,
            disable_after: Duration::from_secs(hooks.disable_after_hours * 3600),
            concurrency: hooks.concurrency,
            per_endpoint_concurrency: hooks.per_endpoint_concurrency,
            lease: Duration::from_secs(hooks.lease_seconds),
            shutdown_timeout,
            ..WorkerConfig::default()
        };
        let mut asked = worker_stop_asked;
        let shutdown = async move {
            // A dropped sender means the server is going away: stop as well.
            let _ = asked.wait_for(|stop| *stop).await;
        };
        tracing::info!(database = ?backend, "webhook worker starting");
        Some(tokio::spawn(mandate_webhooks::run(
            mandate.clone(),
            sender,
            config,
            shutdown,
        )))
    };
    let renderer = telemetry::renderer(metrics.clone(), pool_view.clone());
    let refresher = tokio::spawn(telemetry::refresh(mandate.clone(), pool_view, metrics));
    let rate_limit = RateLimit::new(settings.rate_limit.per_second, settings.rate_limit.burst);
    let failed_auth = FailedAuthThrottle::new(
        settings.rate_limit.failed_auth_per_minute,
        settings.rate_limit.failed_auth_burst,
    );
    let housekeeping = tokio::spawn(housekeeping(
        mandate.clone(),
        chrono::Duration::hours(
            i64::try_from(settings.webhooks.delivery_retention_hours).unwrap_or(i64::MAX),
        ),
        rate_limit.clone().filter(|_| role != Role::Worker),
        failed_auth.clone().filter(|_| role != Role::Worker),
    ));
    let grace_seconds = settings.server.shutdown_timeout_seconds;
    let bind_failed = || format!("cannot listen on {}", settings.server.bind);
    // Both servers start alike; their app factories differ in type.
    macro_rules! start {
        ($server:expr) => {{
            let server = $server
                .disable_signals()
                .shutdown_timeout(grace_seconds)
                .bind(&settings.server.bind)
                .with_context(bind_failed)?;
            let addresses = server.addrs();
            (server.run(), addresses)
        }};
    }
    let (running, addresses) = if role == Role::Worker {
        // No API here, but probes and scrapes still need an answer.
        start!(actix_web::HttpServer::new(move || operations_app(renderer.clone())).workers(1))
    } else {
        let authenticator = mandate.authenticator(settings.admin.token.clone());
        let signing_secret = secrets::load_or_generate(
            settings.secrets.token_signing_key.as_deref(),
            &settings.data.dir,
            "token_signing_key",
        )?;
        let tokens = Arc::new(mandate_http::tokens::TokenService::from_secret(
            &signing_secret,
            settings.public_url(),
        ));
        let state = AppState {
            mandate,
            authenticator,
            public_url: settings.public_url(),
            rate_limit,
            failed_auth,
            tokens,
            target_guard: Arc::new(SsrfGuard::new(policy)),
            allow_http: hooks.allow_http,
            console_session_lifetime: chrono::Duration::hours(i64::from(
                settings.console.session_hours,
            )),
            metrics: Some(renderer),
        };
        let mut server = actix_web::HttpServer::new(move || mandate_http::app(state.clone()));
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        start!(server)
    };
    for address in addresses {
        tracing::info!(%address, public_url = %settings.public_url(), database = ?backend, role = ?role, admin_api = settings.admin.token.is_some(), "mandate is serving");
    }
    let http = running.handle();
    let mut running = tokio::spawn(running);
    let signal = tokio::select! {
        served = &mut running => {
            return match served {
                Ok(result) => result.context("the HTTP server failed"),
                Err(failed) => Err(failed).context("the HTTP server task failed"),
            };
        }
        signal = stop.received() => signal,
    };
    tracing::info!(
        signal,
        timeout_s = grace_seconds,
        "shutting down: no new connections; finishing requests and webhook sends in flight"
    );
    let _ = stop_worker.send(true);
    let http_stopped = async {
        http.stop(true).await;
        let _ = running.await;
    };
    let worker_stopped = async {
        if let Some(worker) = worker {
            let _ = worker.await;
        }
    };
    let stopped = tokio::time::timeout(
        shutdown_timeout + SHUTDOWN_MARGIN,
        futures_join(http_stopped, worker_stopped),
    )
    .await;
    housekeeping.abort();
    refresher.abort();
    match stopped {
        Ok(()) => tracing::info!("mandate stopped"),
        Err(_) => tracing::warn!(
            "mandate stopped with work unfinished after the shutdown timeout; unsent webhook attempts are sent again when their lease ends"
        ),
    }
    Ok(())
}

/// Beyond the shutdown timeout, the time allowed to hand unsent webhook attempts back and
/// close the listeners.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

/// Waits for both.
async fn futures_join(first: impl Future<Output = ()>, second: impl Future<Output = ()>) {
    tokio::join!(first, second);
}

/// What a worker-only process serves: liveness and metrics, nothing of the API.
fn operations_app(
    renderer: MetricsRenderer,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    use actix_web::{HttpResponse, web};
    actix_web::App::new()
        .route(
            "/healthz",
            web::get()
                .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/metrics",
            web::get().to(move || {
                let body = renderer.render();
                async move {
                    HttpResponse::Ok()
                        .content_type("text/plain; version=0.0.4; charset=utf-8")
                        .body(body)
                }
            }),
        )
}

/// How often background housekeeping runs: expiring requests past their `expires_at`.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// Requests, claims or ledger records handled per round, so one round stays short.
const EXPIRY_BATCH: u32 = 500;

/// Idempotency records are kept this long (the API promises at least 24 hours).
const IDEMPOTENCY_RETENTION_HOURS: i64 = 48;
/// Purging old idempotency records is cheap but needs no second-level precision.
const PURGE_EVERY_ROUNDS: u64 = 600;

/// Signature nonces are kept past the 300 s a signature stays acceptable (plus the 60 s it
/// may run ahead), then forgotten.
const SIGNATURE_NONCE_RETENTION_SECONDS: i64 = 420;
/// Forgetting signature nonces and expired console sessions every minute keeps the tables
/// small.
const NONCE_PURGE_EVERY_ROUNDS: u64 = 60;

/// Finished delivery attempts are purged every minute too, in batches of this many, at most
/// [`DELIVERY_PURGE_BATCHES`] batches a round: a backlog (a lowered retention) is worked off
/// over the following rounds without one round holding the database for long.
const DELIVERY_PURGE_BATCH: u32 = 1000;
const DELIVERY_PURGE_BATCHES: u32 = 20;

/// Expires due requests (reads expire them too, so this bounds how long a due request can
/// linger unread) and due claims, appends queued approvals and revocations to the ledger,
/// purges old idempotency records, signature nonces, expired console sessions and finished
/// delivery attempts (older than `delivery_retention`), and lets the rate limiter forget idle
/// credentials.
async fn housekeeping(
    mandate: Mandate,
    delivery_retention: chrono::Duration,
    rate_limit: Option<RateLimit>,
    failed_auth: Option<FailedAuthThrottle>,
) {
    let mut interval = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u64.. {
        interval.tick().await;
        if round % PURGE_EVERY_ROUNDS == 0 {
            let before =
                mandate_domain::now() - chrono::Duration::hours(IDEMPOTENCY_RETENTION_HOURS);
            if let Err(error) = mandate.purge_idempotency(before).await {
                tracing::warn!(error = %error, "purging idempotency records failed; retrying later");
            }
        }
        if round % NONCE_PURGE_EVERY_ROUNDS == 0 {
            let before = mandate_domain::now()
                - chrono::Duration::seconds(SIGNATURE_NONCE_RETENTION_SECONDS);
            if let Err(error) = mandate.purge_signature_nonces(before).await {
                tracing::warn!(error = %error, "purging signature nonces failed; retrying later");
            }
            purge_finished_deliveries(&mandate, mandate_domain::now() - delivery_retention).await;
            if let Err(error) = mandate.purge_console_sessions(mandate_domain::now()).await {
                tracing::warn!(error = %error, "purging console sessions failed; retrying later");
            }
        }
        match mandate
            .expire_due_claims(mandate_domain::now(), EXPIRY_BATCH)
            .await
        {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "expired claims"),
            Err(error) => tracing::warn!(error = %error, "expiring claims failed; retrying"),
        }
        match mandate.record_ledger(EXPIRY_BATCH).await {
            Ok(0) => {}
            Ok(recorded) => tracing::info!(recorded, "appended ledger entries"),
            Err(error) => {
                tracing::warn!(error = %error, "appending to the ledger failed; retrying")
            }
        }
        match mandate
            .expire_due_requests(mandate_domain::now(), EXPIRY_BATCH)
            .await
        {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "expired payment requests"),
            Err(error) => {
                tracing::warn!(error = %error, "expiring payment requests failed; retrying")
            }
        }
        if let Some(limit) = &rate_limit {
            limit.forget_idle();
        }
        if let Some(throttle) = &failed_auth {
            throttle.forget_idle();
        }
    }
}

/// Purges finished delivery attempts made before `before`, batch after batch while batches
/// come back full, at most [`DELIVERY_PURGE_BATCHES`] of them.
async fn purge_finished_deliveries(mandate: &Mandate, before: chrono::DateTime<chrono::Utc>) {
    let mut purged = 0;
    for _ in 0..DELIVERY_PURGE_BATCHES {
        match mandate
            .purge_finished_deliveries(before, DELIVERY_PURGE_BATCH)
            .await
        {
            Ok(batch) => {
                purged += batch;
                if batch < u64::from(DELIVERY_PURGE_BATCH) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "purging delivery attempts failed; retrying later");
                break;
            }
        }
    }
    if purged > 0 {
        tracing::info!(
            purged,
            "purged finished delivery attempts past their retention"
        );
    }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let applied = mandate_store::migrate(&settings.database_url())
        .await
        .context("migration failed")?;
    println!("{}", serde_json::json!({ "applied_migrations": applied }));
    Ok(())
}

async fn admin(settings: Settings, command: AdminCommand) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let mandate = use_cases(&settings, store)?;
    let now = mandate_domain::now();
    let output = match command {
        AdminCommand::CreateOrganization { name } => {
            let (organization, key) = mandate
                .create_organization(&Principal::Admin, &name, now)
                .await?;
            serde_json::json!({
                "organization": { "id": organization.id, "object": "organization", "name": organization.name, "created_at": organization.created_at },
                "platform_key": key.plain,
            })
        }
        AdminCommand::CreateOrchestrator { slug, name } => {
            let (orchestrator, key) = mandate
                .create_orchestrator(&Principal::Admin, &slug, &name, now)
                .await?;
            serde_json::json!({
                "orchestrator": { "id": orchestrator.id, "object": "orchestrator", "slug": orchestrator.slug, "name": orchestrator.name, "created_at": orchestrator.created_at },
                "api_key": key.plain,
            })
        }
    };
    println!("{output:#}");
    Ok(())
}
