//! An agent's whole journey against a Mandate server, as a program:
//!
//! 1. take an Ed25519 key: a fresh one, or the one kept in `--seed-file` (created on the first
//!    run), so that the agent keeps its identity across runs;
//! 2. submit a claim for a destination (`POST /v1/claims`) with the orchestrator's key as the
//!    Bearer **and** the agent's RFC 9421 signature, which proves that the agent holds its key;
//! 3. print what the destination's owner runs to approve it, then poll the claim with the
//!    orchestrator's key until the owner decides (or `--timeout` passes);
//! 4. once approved, act as the agent — its signature and `X-Client-Id`, no Bearer — and create
//!    an incoming payment request, then read it back.
//!
//! ```sh
//! cargo run -p mandate-signatures --example agent -- --url http://127.0.0.1:8080 \
//!     --orchestrator-key "$ORCH" --service agents-inc --namespace rosas-coffee \
//!     --seed-file agent.seed
//! ```
//!
//! Every signed request gets a fresh nonce and `created` = now. The URL must be the server's
//! public URL (`MANDATE__SERVER__PUBLIC_URL`; by default `http://` + its bind address), because
//! the signature covers `@target-uri` and the server rebuilds it from that setting.
//! See `docs/agents.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use mandate_signatures::AgentSigner;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

/// How often the claim is polled while the owner decides.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Submits an agent's claim to a Mandate server, waits for the destination owner's approval,
/// then acts as the agent: creates an incoming payment request signed with the agent's key.
#[derive(Debug, Parser)]
#[command(name = "agent")]
struct Args {
    /// The server's public URL, exactly as the server knows it (MANDATE__SERVER__PUBLIC_URL;
    /// a local server's default is http://127.0.0.1:8080 — not localhost).
    #[arg(long, env = "MANDATE_URL")]
    url: String,

    /// The orchestrator's API key (mnd_orch_…), which submits the claim and polls it.
    #[arg(long, env = "MANDATE_ORCHESTRATOR_KEY", hide_env_values = true)]
    orchestrator_key: String,

    /// The orchestrator's slug (the claim's `service`).
    #[arg(long, env = "MANDATE_SERVICE")]
    service: String,

    /// The destination's slug (the claim's `namespace`).
    #[arg(long, env = "MANDATE_NAMESPACE")]
    namespace: String,

    /// A file holding the agent's Ed25519 seed (64 hex characters). Created with a new key
    /// when absent; without it the agent has a new key, and so a new identity, on every run.
    #[arg(long, env = "MANDATE_AGENT_SEED_FILE")]
    seed_file: Option<PathBuf>,

    /// The agent's id within the service (default: derived from its public key).
    #[arg(long)]
    agent_id: Option<String>,

    /// The agent's display name, shown to the owner.
    #[arg(long, default_value = "Example agent")]
    agent_name: String,

    /// The agent's IP address, as the service reports it.
    #[arg(long, default_value = "127.0.0.1")]
    ip_address: String,

    /// How long to wait for the owner's decision, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,

    /// The payment request's amount (a decimal string).
    #[arg(long, default_value = "25")]
    amount: String,

    /// The payment request's currency.
    #[arg(long, default_value = "USD")]
    currency: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit with 2 (clap prints the usage); every other failure with 1, as one
    // readable line of causes.
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let base = base_url(&args.url)?;
    let signer = load_signer(args.seed_file.as_deref())?;
    let public_key = signer.key_id();
    let agent_id = args.agent_id.clone().unwrap_or_else(|| {
        let bytes = signer.public_key().to_bytes();
        format!("example-{}", hex(&bytes[..6]))
    });
    println!("Agent key: {public_key} (agent id {agent_id:?})");

    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("could not build the HTTP client")?,
        base,
    };

    // 1. The claim: the orchestrator's key as the Bearer, signed by the agent.
    let claim = json!({
        "namespace": args.namespace,
        "public_key": public_key,
        "service": args.service,
        "ip_address": args.ip_address,
        "nonce": random_nonce(),
        "agent_id": agent_id,
        "agent_name": args.agent_name,
    });
    let submitted = api
        .signed(
            &signer,
            Method::POST,
            "/v1/claims",
            Some(&claim),
            &[],
            Some(&args.orchestrator_key),
        )
        .await?;
    if !matches!(submitted.status, 200 | 201) {
        bail!("the claim was refused: {}", submitted.describe());
    }
    let claim_id = submitted.text("id")?;
    let status = submitted.text("status")?;
    if submitted.status == 201 {
        println!("Claim {claim_id} submitted: {status}.");
    } else {
        println!("Claim {claim_id} already exists for this key: {status}.");
    }

    // 2. The owner decides; the orchestrator polls.
    if status == "pending" {
        let claim_url = format!("{}/v1/claims/{claim_id}", api.base);
        println!();
        println!(
            "The owner of {:?} approves it with its destination key (or the platform key):",
            args.namespace
        );
        println!();
        println!("  curl -X POST {claim_url}/approve \\");
        println!("    -H \"Authorization: Bearer $OWNER_KEY\" \\");
        println!("    -H 'Content-Type: application/json' -d '{{}}'");
        println!();
        println!("or refuses it with POST {claim_url}/reject.");
        println!(
            "Waiting up to {} s for the decision (polling every {} s)…",
            args.timeout,
            POLL_INTERVAL.as_secs()
        );
    }
    let approved = wait_for_approval(&api, &args, &claim_id).await?;
    let client_id = approved.text("client_id")?;
    println!(
        "Approved: the agent acts as client ID {client_id} with {}.",
        approved.body["permissions"]
    );

    // 3. The agent acts alone: its signature and X-Client-Id, no Bearer.
    let as_agent = [("x-client-id", client_id.as_str())];
    let request = json!({
        "direction": "incoming",
        "amount": args.amount,
        "currency": args.currency,
        "reference": format!("agent {agent_id}"),
    });
    let created = api
        .signed(
            &signer,
            Method::POST,
            "/v1/requests",
            Some(&request),
            &as_agent,
            None,
        )
        .await?;
    if created.status != 201 {
        bail!(
            "the agent could not create a payment request: {}",
            created.describe()
        );
    }
    let request_id = created.text("id")?;
    // A signed request without a body: no Content-Digest.
    let read = api
        .signed(
            &signer,
            Method::GET,
            &format!("/v1/requests/{request_id}"),
            None,
            &as_agent,
            None,
        )
        .await?;
    if read.status != 200 {
        bail!(
            "the agent could not read its payment request: {}",
            read.describe()
        );
    }
    println!("Payment request {request_id} created by the agent:");
    println!(
        "{}",
        serde_json::to_string_pretty(&read.body).context("could not print the request")?
    );
    Ok(())
}

/// Polls the claim with the orchestrator's key until it is approved; any other decision, or
/// the deadline, is an error.
async fn wait_for_approval(api: &Api, args: &Args, claim_id: &str) -> Result<Reply> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let path = format!("/v1/claims/{claim_id}");
    loop {
        match api.get(&path, &args.orchestrator_key).await {
            Ok(reply) if reply.status == 200 => match reply.text("status")?.as_str() {
                "approved" => return Ok(reply),
                "pending" => {}
                other => bail!("claim {claim_id} is {other}: the agent may not act"),
            },
            // The server is busy or restarting: try again until the deadline.
            Ok(reply) if reply.status == 429 || reply.status >= 500 => {
                eprintln!("polling the claim: {} (retrying)", reply.describe());
            }
            Ok(reply) => bail!("could not read claim {claim_id}: {}", reply.describe()),
            Err(error) => eprintln!("polling the claim: {error:#} (retrying)"),
        }
        if Instant::now() >= deadline {
            let hint = if args.seed_file.is_some() {
                "; run again with the same --seed-file to keep waiting for the same claim"
            } else {
                ""
            };
            bail!(
                "claim {claim_id} was not decided within {} s{hint}",
                args.timeout
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The base URL without a trailing slash, checked to be an absolute http(s) URL.
fn base_url(text: &str) -> Result<String> {
    let base = text.trim().trim_end_matches('/').to_owned();
    let url = reqwest::Url::parse(&base)
        .with_context(|| format!("--url {text:?} is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("--url must be an http:// or https:// URL with a host, like http://127.0.0.1:8080");
    }
    Ok(base)
}

/// The agent's signer: from the seed file (created when absent), or a fresh key.
fn load_signer(seed_file: Option<&Path>) -> Result<AgentSigner> {
    let Some(path) = seed_file else {
        println!("No --seed-file: using a new key, which this run alone will know.");
        return Ok(AgentSigner::from_seed(random_bytes()));
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed = parse_seed(text.trim()).with_context(|| {
                format!(
                    "{} must hold a 32-byte Ed25519 seed as 64 hex characters",
                    path.display()
                )
            })?;
            println!("Using the agent key in {}.", path.display());
            Ok(AgentSigner::from_seed(seed))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = random_bytes();
            write_secret(path, &format!("{}\n", hex(&seed)))
                .with_context(|| format!("could not create {}", path.display()))?;
            println!("Created a new agent key in {}.", path.display());
            Ok(AgentSigner::from_seed(seed))
        }
        Err(error) => Err(error).with_context(|| format!("could not read {}", path.display())),
    }
}

/// Creates `path` with `contents`, readable by its owner only (on Unix); never overwrites.
fn write_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

fn parse_seed(text: &str) -> Result<[u8; 32]> {
    let digits: Vec<u32> = text
        .chars()
        .map(|c| c.to_digit(16))
        .collect::<Option<_>>()
        .context("not hexadecimal")?;
    if digits.len() != 64 {
        bail!("{} hex characters instead of 64", digits.len());
    }
    let mut seed = [0u8; 32];
    for (byte, pair) in seed.iter_mut().zip(digits.chunks_exact(2)) {
        // Two hex digits make one byte: at most 255.
        *byte = u8::try_from(pair[0] * 16 + pair[1]).context("not a byte")?;
    }
    Ok(seed)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A fresh nonce: 128 random bits in hex.
fn random_nonce() -> String {
    hex(&random_bytes::<16>())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The server, as the orchestrator and as the agent see it.
struct Api {
    http: reqwest::Client,
    /// The public URL (scheme and authority), without a trailing slash.
    base: String,
}

impl Api {
    /// `GET path` with a Bearer key.
    async fn get(&self, path: &str, key: &str) -> Result<Reply> {
        let url = format!("{}{path}", self.base);
        Reply::of(self.http.get(&url).bearer_auth(key)).await
    }

    /// A request signed by the agent: `@method`, `@target-uri` (the URL called),
    /// `content-digest` (with a body) and each of `headers`, with `created` = now and a fresh
    /// nonce. `bearer` is sent as well when given (only a claim submission takes both).
    async fn signed(
        &self,
        signer: &AgentSigner,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        bearer: Option<&str>,
    ) -> Result<Reply> {
        let url = format!("{}{path}", self.base);
        let bytes = match body {
            Some(body) => serde_json::to_vec(body).context("could not encode the body")?,
            None => Vec::new(),
        };
        let created = chrono::Utc::now().timestamp();
        let signature = signer
            .sign(
                method.as_str(),
                &url,
                headers,
                &bytes,
                created,
                &random_nonce(),
            )
            .context("could not sign the request")?;
        let mut request = self.http.request(method, &url);
        for (name, value) in headers.iter().copied().chain(signature.pairs()) {
            request = request.header(name, value);
        }
        if let Some(key) = bearer {
            request = request.bearer_auth(key);
        }
        if !bytes.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        Reply::of(request).await
    }
}

/// A response: its status and its JSON body.
struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    async fn of(request: RequestBuilder) -> Result<Self> {
        let response = request.send().await.context("could not reach the server")?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .context("could not read the server's answer")?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Self { status, body })
    }

    /// A string field of the body.
    fn text(&self, field: &str) -> Result<String> {
        self.body[field]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the answer has no {field:?}: {}", self.body))
    }

    /// The status and error for people, with a hint for the mistakes agents make most.
    fn describe(&self) -> String {
        let error = &self.body["error"];
        let (Some(code), Some(message)) = (error["code"].as_str(), error["message"].as_str())
        else {
            return format!("HTTP {}: {}", self.status, self.body);
        };
        let hint = match code {
            "SIGNATURE_INVALID" => {
                " (the signature covers the URL called: --url must be the server's public \
                 URL, e.g. http://127.0.0.1:8080 rather than localhost; and the clock must be \
                 within a minute of the server's)"
            }
            _ => "",
        };
        format!("HTTP {} {code}: {message}{hint}", self.status)
    }
}
