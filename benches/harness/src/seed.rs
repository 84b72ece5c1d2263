//! Seeds a running Mandate through its HTTP API, the way a real tenant would start: an
//! organization, a destination and its key, an orchestrator, a client ID granted
//! `read:incoming`, an OAuth access token, and payment requests created as that client.

use anyhow::{Context, bail};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// Mandate's base URL.
    #[arg(long)]
    server: String,
    #[arg(long)]
    admin_token: String,
    /// How many payment requests to create as the client.
    #[arg(long, default_value_t = 100)]
    requests: usize,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    #[arg(long)]
    server: String,
    #[arg(long)]
    client_id: String,
    /// The orchestrator's key.
    #[arg(long)]
    secret: String,
}

pub(crate) struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path} answered {status}: {body}");
        }
        Ok(body)
    }
}

fn text(value: &Value, pointer: &str) -> anyhow::Result<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no {pointer} in {value}"))
}

pub(crate) fn suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

pub async fn run(args: Args) -> anyhow::Result<Value> {
    let api = Api::new(&args.server);
    let admin = args.admin_token.as_str();
    let organization = api
        .post(
            "/v1/admin/organizations",
            admin,
            &[],
            json!({"name": "Bench"}),
        )
        .await?;
    let platform_key = text(&organization, "/platform_key")?;
    let destination = api
        .post(
            "/v1/destinations",
            &platform_key,
            &[],
            json!({"slug": format!("bench-{}", suffix()), "display_name": "Bench"}),
        )
        .await?;
    let destination_id = text(&destination, "/id")?;
    let key = api
        .post(
            &format!("/v1/destinations/{destination_id}/keys"),
            &platform_key,
            &[],
            json!({}),
        )
        .await?;
    let destination_key = text(&key, "/key")?;
    let slug = format!("bench-{}", suffix());
    let orchestrator = api
        .post(
            "/v1/admin/orchestrators",
            admin,
            &[],
            json!({"slug": slug, "name": "Bench agents"}),
        )
        .await?;
    let orchestrator_key = text(&orchestrator, "/api_key")?;
    let client = api
        .post(
            "/v1/client-ids",
            &destination_key,
            &[],
            json!({"orchestrator": slug}),
        )
        .await?;
    let client_id = text(&client, "/id")?;
    api.post(
        &format!("/v1/client-ids/{client_id}/permissions"),
        &destination_key,
        &[],
        json!({"permission": "read:incoming"}),
    )
    .await?;
    let access_token = issue_token(&api, &client_id, &orchestrator_key).await?;

    let mut request_id = String::new();
    let mut made = 0;
    while made < args.requests {
        let wave = (args.requests - made).min(16);
        let mut tasks = tokio::task::JoinSet::new();
        for n in made..made + wave {
            let api = Api {
                base: api.base.clone(),
                client: api.client.clone(),
            };
            let (key, client_id) = (orchestrator_key.clone(), client_id.clone());
            tasks.spawn(async move {
                api.post(
                    "/v1/requests",
                    &key,
                    &[("X-Client-Id", client_id.as_str())],
                    json!({"direction": "incoming", "amount": "42.50",
                           "currency": "USDC-base", "reference": format!("INV-{n}")}),
                )
                .await
            });
        }
        while let Some(created) = tasks.join_next().await {
            request_id = text(&created??, "/id")?;
        }
        made += wave;
    }
    Ok(json!({
        "organization_id": text(&organization, "/organization/id")?,
        "platform_key": platform_key,
        "destination_id": destination_id,
        "destination_key": destination_key,
        "orchestrator_key": orchestrator_key,
        "client_id": client_id,
        "access_token": access_token,
        "request_id": request_id,
    }))
}

async fn issue_token(api: &Api, client_id: &str, secret: &str) -> anyhow::Result<String> {
    let response = api
        .client
        .post(format!("{}/v1/oauth/token", api.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .context("POST /v1/oauth/token")?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST /v1/oauth/token answered {status}: {body}");
    }
    text(&body, "/access_token")
}

pub async fn token(args: TokenArgs) -> anyhow::Result<Value> {
    let api = Api::new(&args.server);
    let access_token = issue_token(&api, &args.client_id, &args.secret).await?;
    Ok(json!({ "access_token": access_token }))
}
