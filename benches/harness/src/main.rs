//! The benchmark harness that `cargo xtask bench` drives: the bare actix-web + diesel-async
//! baseline server, seeding (through Mandate's HTTP API, or in bulk with SQL), and the webhook
//! load with its loopback receiver. Each subcommand prints one JSON object on stdout.

mod baseline;
mod bulk;
mod seed;
mod webhooks;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mandate-bench",
    about = "Benchmark harness for cargo xtask bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the bare baseline: one primary-key SELECT, and a two-row insert transaction.
    Baseline(baseline::Args),
    /// Give a migrated database the rows the baseline serves (an organization, a destination,
    /// payment requests); prints the ids.
    SeedBaseline(baseline::SeedArgs),
    /// Seed a running Mandate through its HTTP API; prints the credentials and ids.
    Seed(seed::Args),
    /// Issue an OAuth access token for a client ID; prints it.
    Token(seed::TokenArgs),
    /// Copy a payment request row until its destination holds `--total` requests.
    Bulk(bulk::Args),
    /// The webhook load: throughput to a loopback receiver, then latency at a fixed rate.
    Webhooks(webhooks::Args),
    /// Create or drop a database, or print the server's version.
    Db(bulk::DbArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Baseline(args) => baseline::serve(args),
        command => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let output = runtime.block_on(async move {
                match command {
                    Command::Baseline(_) => unreachable!("served above"),
                    Command::SeedBaseline(args) => baseline::seed(args).await,
                    Command::Seed(args) => seed::run(args).await,
                    Command::Token(args) => seed::token(args).await,
                    Command::Bulk(args) => bulk::run(args).await,
                    Command::Webhooks(args) => webhooks::run(args).await,
                    Command::Db(args) => bulk::db(args).await,
                }
            })?;
            println!("{output}");
            Ok(())
        }
    }
}
