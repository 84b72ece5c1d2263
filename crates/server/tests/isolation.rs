//! Isolation at scale: a randomized model test against the real server over HTTP.
//!
//! Many organizations, destinations, orchestrators, client IDs and agents act in random order
//! (permission grants and withdrawals, revocations, requests, payments, cancellations, attempts
//! on other tenants' objects). A small reference model written here — plain structs and the
//! SPEC §4 rules restated directly, independent of `mandate_domain::policy` — says after every
//! step what each principal may see, and the test checks the server against it:
//!
//! - every step's outcome (201/200 versus 403/404/409) is the one the model predicts;
//! - after every step, the object it created or changed is readable (`GET` by id) by exactly
//!   the principals the model allows, and is 404 for every other one; after a grant, a
//!   withdrawal or a revocation, the affected principal's view of a sample of requests and
//!   events is re-checked;
//! - every `CHECKPOINT` steps and at the end, each principal's whole `GET /v1/requests` and
//!   the `payment_request.*` events of its `GET /v1/events` equal the model's sets;
//! - at the end, what each webhook receiver got is checked against the model (see
//!   [`World::check_webhooks`] for exactly what is and is not asserted), including the
//!   endpoints that access tokens narrowed to part of their client ID's permissions register
//!   for `*`: they receive only what the token's scope and the client ID's current
//!   permissions both allow, and such a token gets 404 on its client ID's own endpoint.
//!
//! `MANDATE_ISOLATION_SEED` replays a run; `MANDATE_ISOLATION_STEPS` changes its length
//! (default 10,000). The summary line is written straight to the process's stderr, so that it
//! shows in `cargo xtask test` although the harness captures `println!`.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::{join, join_all};
use mandate_signatures::AgentSigner;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::agent_signing::{AgentRequest, send_signed};
use support::receiver::Receiver;
use support::{ADMIN_TOKEN, Api, Database, Reply, Server, TempDir};

/// Steps between two full comparisons of every principal's lists.
const CHECKPOINT: usize = 500;
/// Client IDs issued with an orchestrator key, at most.
const MAX_KEY_CLIENTS: usize = 14;
/// Active client IDs with an orchestrator key, at least (revocations stop there).
const MIN_ACTIVE_KEY_CLIENTS: usize = 4;
/// Agents approved over a run, at most.
const MAX_AGENTS: usize = 3;
/// How long webhooks may take to arrive at the end.
const WEBHOOK_WAIT: Duration = Duration::from_secs(120);

const PERMISSIONS: [&str; 5] = [
    "read:incoming",
    "read:outgoing",
    "payments:report",
    "create:incoming",
    "create:outgoing",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Direction {
    Incoming,
    Outgoing,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
    fn read(self) -> &'static str {
        match self {
            Direction::Incoming => "read:incoming",
            Direction::Outgoing => "read:outgoing",
        }
    }
    fn create(self) -> &'static str {
        match self {
            Direction::Incoming => "create:incoming",
            Direction::Outgoing => "create:outgoing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Open,
    PartiallyPaid,
    Paid,
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::PartiallyPaid => "partially_paid",
            Status::Paid => "paid",
            Status::Cancelled => "cancelled",
        }
    }
}

/// A principal as the test addresses it (indexes into the world's vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    /// A platform key, for its whole organization.
    Platform(usize),
    /// A platform key with `X-Destination-Id`: that destination's owner.
    PlatformFor(usize),
    /// A destination key.
    Destination(usize),
    /// An orchestrator key without `X-Client-Id`.
    Orchestrator(usize),
    /// A client ID: orchestrator key + `X-Client-Id`, or an agent's signature.
    Client(usize),
    /// An access token of a client ID, maybe narrowed (an index into the world's tokens).
    /// It only registers an endpoint; what the endpoint may receive is its business.
    Token(usize),
}

/// An access token a client ID's orchestrator asked for, with a scope.
struct Token {
    client: usize,
    /// The scope when it is less than the client ID held at issue; `None` when it covered
    /// everything (then its endpoint follows the client ID's permissions, whatever they
    /// become).
    scope: Option<BTreeSet<&'static str>>,
}

struct Org {
    key: String,
}

struct Dest {
    id: String,
    slug: String,
    org: usize,
    key: String,
}

struct Orch {
    slug: String,
    key: String,
}

struct Client {
    id: String,
    dest: usize,
    orch: usize,
    permissions: BTreeSet<&'static str>,
    active: bool,
    /// For an agent's client ID: its key and its claim.
    agent: Option<(AgentSigner, String)>,
}

struct Req {
    id: String,
    dest: usize,
    direction: Direction,
    /// The client ID it was created through (None: an owner created it).
    client: Option<usize>,
    amount: u64,
    paid: u64,
    status: Status,
}

struct Ev {
    id: String,
    req: usize,
    /// Endpoint owners that were allowed to see it at some point since it was created.
    ever: HashSet<Who>,
    /// Endpoint owners allowed to see it from its creation on, without interruption.
    continuous: HashSet<Who>,
}

struct Endpoint {
    owner: Who,
    id: String,
    receiver: Receiver,
    /// Events with an index at or past this were created after the endpoint.
    since: usize,
}

/// The world: the server's objects and the reference model of who may see what.
struct World {
    api: Api,
    seed: u64,
    step: usize,
    rng: StdRng,
    orgs: Vec<Org>,
    dests: Vec<Dest>,
    orchs: Vec<Orch>,
    clients: Vec<Client>,
    tokens: Vec<Token>,
    reqs: Vec<Req>,
    events: Vec<Ev>,
    event_index: HashMap<String, usize>,
    endpoints: Vec<Endpoint>,
    checks: AtomicU64,
    nonces: AtomicU64,
    nonce_prefix: String,
    /// The last steps, printed when a check fails.
    history: VecDeque<String>,
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn str_of(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {value}"))
        .to_owned()
}

/// What a refused credential gets before any authorization: a revoked client ID named with an
/// orchestrator key is 403; a revoked agent's signature no longer authenticates (401).
fn refused_credential(client: &Client) -> u16 {
    if client.agent.is_some() { 401 } else { 403 }
}

impl World {
    // ----- the reference model (SPEC §4, restated) -----

    fn org_of(&self, dest: usize) -> usize {
        self.dests[dest].org
    }

    /// Whether `who` may read `req` (`GET` one, list, and its events).
    fn sees(&self, who: Who, req: &Req) -> bool {
        match who {
            Who::Platform(org) => self.org_of(req.dest) == org,
            Who::PlatformFor(dest) | Who::Destination(dest) => req.dest == dest,
            Who::Client(c) => self.client_sees(c, req),
            // Within its scope: a permission counts only when both the token and the client
            // ID hold it now.
            Who::Token(t) => {
                let token = &self.tokens[t];
                let client = &self.clients[token.client];
                client.active
                    && client.dest == req.dest
                    && (req.client == Some(token.client)
                        || (client.permissions.contains(req.direction.read())
                            && token
                                .scope
                                .as_ref()
                                .is_none_or(|scope| scope.contains(req.direction.read()))))
            }
            // An orchestrator reads no request itself; it sees the events of what any of its
            // active client IDs may read.
            Who::Orchestrator(orch) => self
                .clients
                .iter()
                .enumerate()
                .any(|(c, client)| client.orch == orch && self.client_sees(c, req)),
        }
    }

    fn client_sees(&self, c: usize, req: &Req) -> bool {
        let client = &self.clients[c];
        client.active
            && client.dest == req.dest
            && (req.client == Some(c) || client.permissions.contains(req.direction.read()))
    }

    /// Everyone the test looks through.
    fn viewers(&self) -> Vec<Who> {
        let mut all: Vec<Who> = (0..self.orgs.len()).map(Who::Platform).collect();
        all.extend((0..self.dests.len()).map(Who::PlatformFor));
        all.extend((0..self.dests.len()).map(Who::Destination));
        all.extend((0..self.orchs.len()).map(Who::Orchestrator));
        all.extend((0..self.clients.len()).map(Who::Client));
        all
    }

    /// The status a principal's `GET /v1/requests/{id}` must answer (None: not a route for it).
    fn expected_request_read(&self, who: Who, req: &Req) -> Option<u16> {
        match who {
            Who::Orchestrator(_) => None,
            Who::Client(c) if !self.clients[c].active => Some(refused_credential(&self.clients[c])),
            _ => Some(if self.sees(who, req) { 200 } else { 404 }),
        }
    }

    fn expected_event_read(&self, who: Who, req: &Req) -> u16 {
        match who {
            Who::Client(c) if !self.clients[c].active => refused_credential(&self.clients[c]),
            _ if self.sees(who, req) => 200,
            _ => 404,
        }
    }

    /// Brings the webhook bookkeeping of `who` up to date after its visibility changed.
    fn refresh_visibility(&mut self, who: Who) {
        let verdicts: Vec<bool> = self
            .events
            .iter()
            .map(|event| self.sees(who, &self.reqs[event.req]))
            .collect();
        for (event, visible) in self.events.iter_mut().zip(verdicts) {
            if visible {
                event.ever.insert(who);
            } else {
                event.continuous.remove(&who);
            }
        }
    }

    // ----- talking to the server -----

    fn count(&self, n: u64) {
        self.checks.fetch_add(n, Ordering::Relaxed);
    }

    fn context(&self) -> String {
        let history: Vec<&str> = self.history.iter().map(String::as_str).collect();
        format!(
            "seed {} step {}; last steps:\n  {}",
            self.seed,
            self.step,
            history.join("\n  ")
        )
    }

    fn note(&mut self, what: String) {
        if self.history.len() == 40 {
            self.history.pop_front();
        }
        self.history.push_back(format!("#{} {what}", self.step));
    }

    async fn call(&self, who: Who, method: &str, path: &str, body: Option<Value>) -> Reply {
        match who {
            Who::Platform(org) => {
                self.api
                    .send(method, path, Some(&self.orgs[org].key), body, &[])
                    .await
            }
            Who::PlatformFor(dest) => {
                let key = &self.orgs[self.dests[dest].org].key;
                let header = [("x-destination-id", self.dests[dest].id.as_str())];
                self.api.send(method, path, Some(key), body, &header).await
            }
            Who::Destination(dest) => {
                self.api
                    .send(method, path, Some(&self.dests[dest].key), body, &[])
                    .await
            }
            Who::Orchestrator(orch) => {
                self.api
                    .send(method, path, Some(&self.orchs[orch].key), body, &[])
                    .await
            }
            Who::Client(c) => {
                let client = &self.clients[c];
                match &client.agent {
                    Some((signer, _)) => {
                        self.agent_call(signer, Some(&client.id), None, method, path, body)
                            .await
                    }
                    None => {
                        let header = [("x-client-id", client.id.as_str())];
                        let key = &self.orchs[client.orch].key;
                        self.api.send(method, path, Some(key), body, &header).await
                    }
                }
            }
            Who::Token(t) => {
                let token = self.access_token(t).await;
                self.api.send(method, path, Some(&token), body, &[]).await
            }
        }
    }

    /// A fresh access token for token `t`'s client ID with its scope (its client ID active,
    /// its scope still held).
    async fn access_token(&self, t: usize) -> String {
        let token = &self.tokens[t];
        let client = &self.clients[token.client];
        let scope = token
            .scope
            .as_ref()
            .map(|scope| scope.iter().copied().collect::<Vec<_>>().join(" "));
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", client.id.clone()),
            ("client_secret", self.orchs[client.orch].key.clone()),
        ];
        form.extend(scope.map(|scope| ("scope", scope)));
        let reply = self
            .api
            .client
            .post(format!("{}/v1/oauth/token", self.api.base()))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "issuing a token\n{}", self.context());
        let body: Value = reply.json().await.unwrap();
        str_of(&body, "access_token")
    }

    /// Who manages an endpoint of `owner` at the end: a token's client ID manages every
    /// endpoint of the client ID, narrowed or not (a token would expire).
    fn manager(&self, owner: Who) -> Who {
        match owner {
            Who::Token(t) => Who::Client(self.tokens[t].client),
            other => other,
        }
    }

    /// A request signed by an agent's key: as the agent itself (with `X-Client-Id`), or as
    /// its orchestrator's claim submission (with the orchestrator's key).
    async fn agent_call(
        &self,
        signer: &AgentSigner,
        client_id: Option<&str>,
        bearer: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let bytes = body
            .map(|body| serde_json::to_vec(&body).unwrap())
            .unwrap_or_default();
        let url = format!("{}{path}", self.api.base());
        let nonce = format!(
            "{}-{}",
            self.nonce_prefix,
            self.nonces.fetch_add(1, Ordering::Relaxed)
        );
        let covered: Vec<(&str, &str)> = client_id
            .map(|id| ("x-client-id", id))
            .into_iter()
            .collect();
        let signed = signer
            .sign(method, &url, &covered, &bytes, unix_now(), &nonce)
            .unwrap();
        let mut headers = covered.clone();
        headers.push(("content-type", "application/json"));
        let request = AgentRequest {
            method,
            url: &url,
            headers: &headers,
            body: &bytes,
        };
        send_signed(&self.api, &request, &signed.pairs(), bearer).await
    }

    /// Every item id of a list, paged to its end.
    async fn list_all(&self, who: Who, path: &str) -> Result<Vec<Value>, Reply> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_path = match &cursor {
                Some(after) => format!("{path}?limit=100&starting_after={after}"),
                None => format!("{path}?limit=100"),
            };
            let page = self.call(who, "GET", &page_path, None).await;
            if page.status != 200 {
                return Err(page);
            }
            items.extend(page.body["data"].as_array().unwrap().iter().cloned());
            match page.body["next_cursor"].as_str() {
                Some(next) if page.body["has_more"] == true => cursor = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
    }

    // ----- setting up -----

    async fn admin(&self, path: &str, body: Value) -> Value {
        let created = self.api.post(path, ADMIN_TOKEN, body).await;
        assert_eq!(created.status, 201, "{}", created.body);
        created.body
    }

    async fn endpoint(&mut self, owner: Who) {
        let receiver = Receiver::start(&[]).await;
        let body = json!({"url": receiver.url, "event_types": ["payment_request.*"]});
        let created = self
            .call(owner, "POST", "/v1/webhook-endpoints", Some(body))
            .await;
        assert_eq!(created.status, 201, "{owner:?}: {}", created.body);
        self.endpoints.push(Endpoint {
            owner,
            id: str_of(&created.body, "id"),
            receiver,
            since: self.events.len(),
        });
    }

    async fn build(api: Api, seed: u64) -> Self {
        let mut world = World {
            api,
            seed,
            step: 0,
            rng: StdRng::seed_from_u64(seed),
            orgs: Vec::new(),
            dests: Vec::new(),
            orchs: Vec::new(),
            clients: Vec::new(),
            tokens: Vec::new(),
            reqs: Vec::new(),
            events: Vec::new(),
            event_index: HashMap::new(),
            endpoints: Vec::new(),
            checks: AtomicU64::new(0),
            nonces: AtomicU64::new(0),
            nonce_prefix: format!("iso-{}", support::random_hex(8)),
            history: VecDeque::new(),
        };
        let run = support::random_hex(3);
        for o in 0..2 {
            let created = world
                .admin(
                    "/v1/admin/organizations",
                    json!({"name": format!("Org {o}")}),
                )
                .await;
            let org = Org {
                key: str_of(&created, "platform_key"),
            };
            for d in 0..2 {
                let slug = format!("iso-{run}-o{o}-d{d}");
                let dest = world
                    .api
                    .post(
                        "/v1/destinations",
                        &org.key,
                        json!({"slug": slug, "display_name": slug}),
                    )
                    .await;
                assert_eq!(dest.status, 201, "{}", dest.body);
                let id = str_of(&dest.body, "id");
                let key = world
                    .api
                    .post(&format!("/v1/destinations/{id}/keys"), &org.key, json!({}))
                    .await;
                assert_eq!(key.status, 201, "{}", key.body);
                world.dests.push(Dest {
                    id,
                    slug,
                    org: world.orgs.len(),
                    key: str_of(&key.body, "key"),
                });
            }
            world.orgs.push(org);
        }
        // Orchestrator 3 is never issued a client ID: it must see nothing, ever.
        for o in 0..4 {
            let slug = format!("iso-{run}-orc{o}");
            let created = world
                .admin(
                    "/v1/admin/orchestrators",
                    json!({"slug": slug, "name": format!("Orchestrator {o}")}),
                )
                .await;
            world.orchs.push(Orch {
                slug,
                key: str_of(&created, "api_key"),
            });
        }
        for who in (0..world.orgs.len())
            .map(Who::Platform)
            .chain((0..world.dests.len()).map(Who::Destination))
            .chain((0..world.orchs.len()).map(Who::Orchestrator))
        {
            world.endpoint(who).await;
        }
        // Client IDs issued by every destination, to several orchestrators, two of them
        // linking the same orchestrator and destination.
        for (dest, orch) in [
            (0, 0),
            (0, 0),
            (0, 1),
            (1, 1),
            (1, 2),
            (2, 0),
            (2, 2),
            (3, 1),
        ] {
            world.issue(Who::Destination(dest), dest, orch, None).await;
        }
        world.new_agent(0, 1).await;
        world
    }

    async fn issue(
        &mut self,
        issuer: Who,
        dest: usize,
        orch: usize,
        permissions: Option<Vec<&'static str>>,
    ) {
        let mut body = json!({"orchestrator": self.orchs[orch].slug, "label": "isolation"});
        if let Some(permissions) = &permissions {
            body["permissions"] = json!(permissions);
        }
        let issued = self
            .call(issuer, "POST", "/v1/client-ids", Some(body))
            .await;
        assert_eq!(issued.status, 201, "{}\n{}", issued.body, self.context());
        assert_eq!(issued.body["destination_id"], self.dests[dest].id.as_str());
        let granted: BTreeSet<&'static str> = permissions
            .unwrap_or_else(|| vec!["create:incoming", "create:outgoing"])
            .into_iter()
            .collect();
        self.check_permissions(&issued.body, &granted);
        self.clients.push(Client {
            id: str_of(&issued.body, "id"),
            dest,
            orch,
            permissions: granted,
            active: true,
            agent: None,
        });
        let c = self.clients.len() - 1;
        self.endpoint(Who::Client(c)).await;
        if self.rng.gen_bool(0.5) {
            self.token_endpoint(c).await;
        }
        self.after_visibility_change(c).await;
    }

    /// An access token of client `c`, with a random part of its permissions as scope,
    /// registers an endpoint for `*`. SPEC §4: it receives only what the token may read, and
    /// the token may not see the client ID's own endpoint unless it holds all the client ID
    /// holds.
    async fn token_endpoint(&mut self, c: usize) {
        let held: Vec<&'static str> = self.clients[c].permissions.iter().copied().collect();
        if held.is_empty() {
            return;
        }
        let mut scope: BTreeSet<&'static str> = held
            .iter()
            .copied()
            .filter(|_| self.rng.gen_bool(0.5))
            .collect();
        if scope.is_empty() {
            scope.insert(*held.choose(&mut self.rng).unwrap());
        }
        let narrowed = scope != self.clients[c].permissions;
        self.note(format!("a token of client {c} with scope {scope:?}"));
        self.tokens.push(Token {
            client: c,
            scope: narrowed.then_some(scope),
        });
        let t = self.tokens.len() - 1;
        let receiver = Receiver::start(&[]).await;
        let body = json!({"url": receiver.url, "event_types": ["*"]});
        let created = self
            .call(Who::Token(t), "POST", "/v1/webhook-endpoints", Some(body))
            .await;
        assert_eq!(created.status, 201, "{}\n{}", created.body, self.context());
        let client_endpoint = self
            .endpoints
            .iter()
            .find(|endpoint| endpoint.owner == Who::Client(c))
            .map(|endpoint| endpoint.id.clone())
            .unwrap();
        self.endpoints.push(Endpoint {
            owner: Who::Token(t),
            id: str_of(&created.body, "id"),
            receiver,
            since: self.events.len(),
        });
        let path = format!("/v1/webhook-endpoints/{client_endpoint}");
        let seen = self.call(Who::Token(t), "GET", &path, None).await;
        self.expect(
            &seen,
            if narrowed { 404 } else { 200 },
            "a token reads its client ID's endpoint",
        );
        let rotated = self
            .call(
                Who::Token(t),
                "POST",
                &format!("{path}/rotate-secret"),
                None,
            )
            .await;
        self.expect(
            &rotated,
            if narrowed { 404 } else { 200 },
            "a token rotates its client ID's endpoint's secret",
        );
    }

    /// An agent: its orchestrator submits a claim signed by the agent's key; the destination's
    /// owner approves some of the permissions asked for.
    async fn new_agent(&mut self, dest: usize, orch: usize) {
        let signer = AgentSigner::from_seed(self.rng.r#gen());
        let body = json!({
            "namespace": self.dests[dest].slug,
            "public_key": signer.key_id().to_owned(),
            "service": self.orchs[orch].slug,
            "ip_address": "203.0.113.9",
            "nonce": format!("claim-{}", support::random_hex(12)),
            "agent_id": format!("agent-{}", support::random_hex(6)),
            "agent_name": "Isolation agent",
            "permissions": PERMISSIONS,
        });
        let submitted = self
            .agent_call(
                &signer,
                None,
                Some(&self.orchs[orch].key),
                "POST",
                "/v1/claims",
                Some(body),
            )
            .await;
        assert_eq!(
            submitted.status,
            201,
            "{}\n{}",
            submitted.body,
            self.context()
        );
        let claim = str_of(&submitted.body, "id");
        let granted = self.random_permissions();
        let approved = self
            .call(
                Who::Destination(dest),
                "POST",
                &format!("/v1/claims/{claim}/approve"),
                Some(json!({"permissions": granted})),
            )
            .await;
        assert_eq!(
            approved.status,
            200,
            "{}\n{}",
            approved.body,
            self.context()
        );
        let client_id = str_of(&approved.body, "client_id");
        let shown = self
            .call(
                Who::Destination(dest),
                "GET",
                &format!("/v1/client-ids/{client_id}"),
                None,
            )
            .await;
        let granted: BTreeSet<&'static str> = granted.into_iter().collect();
        self.check_permissions(&shown.body, &granted);
        self.clients.push(Client {
            id: client_id,
            dest,
            orch,
            permissions: granted,
            active: true,
            agent: Some((signer, claim)),
        });
        let c = self.clients.len() - 1;
        self.note(format!(
            "agent client {c} approved on dest {dest} via orch {orch}"
        ));
        self.endpoint(Who::Client(c)).await;
        self.after_visibility_change(c).await;
    }

    fn random_permissions(&mut self) -> Vec<&'static str> {
        let chosen: Vec<&'static str> = PERMISSIONS
            .iter()
            .copied()
            .filter(|_| self.rng.gen_bool(0.5))
            .collect();
        if chosen.is_empty() {
            vec!["create:incoming"]
        } else {
            chosen
        }
    }

    fn check_permissions(&self, client: &Value, expected: &BTreeSet<&'static str>) {
        let shown: BTreeSet<&str> = client["permissions"]
            .as_array()
            .unwrap_or_else(|| panic!("no permissions in {client}"))
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        assert_eq!(shown, expected, "permissions\n{}", self.context());
        self.count(1);
    }

    // ----- the steps -----

    fn pick_actor(&mut self) -> Who {
        let roll = self.rng.gen_range(0..10);
        match roll {
            0 => Who::Platform(self.rng.gen_range(0..self.orgs.len())),
            1 => Who::PlatformFor(self.rng.gen_range(0..self.dests.len())),
            2 => Who::Destination(self.rng.gen_range(0..self.dests.len())),
            _ => Who::Client(self.rng.gen_range(0..self.clients.len())),
        }
    }

    /// A request, most often one of the actor's destination (so that actions usually get past
    /// the visibility check), sometimes any.
    fn pick_request(&mut self, actor: Who) -> Option<usize> {
        if self.reqs.is_empty() {
            return None;
        }
        let dest = match actor {
            Who::PlatformFor(dest) | Who::Destination(dest) => Some(dest),
            Who::Client(c) => Some(self.clients[c].dest),
            _ => None,
        };
        if let Some(dest) = dest.filter(|_| self.rng.gen_bool(0.7)) {
            // A few tries at the destination's recent requests.
            for _ in 0..8 {
                let back = self.rng.gen_range(0..self.reqs.len().min(200));
                let r = self.reqs.len() - 1 - back;
                if self.reqs[r].dest == dest {
                    return Some(r);
                }
            }
        }
        Some(self.rng.gen_range(0..self.reqs.len()))
    }

    async fn run_step(&mut self) {
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..30 => self.step_create().await,
            30..46 => self.step_pay().await,
            46..54 => self.step_cancel().await,
            54..68 => self.step_permission(true).await,
            68..82 => self.step_permission(false).await,
            82..85 => self.step_issue().await,
            85..87 => self.step_revoke().await,
            87..88 => self.step_agent().await,
            _ => self.step_trespass().await,
        }
    }

    async fn step_create(&mut self) {
        let actor = self.pick_actor();
        let actor = match actor {
            // A platform needs X-Destination-Id to create.
            Who::Platform(_) => Who::PlatformFor(self.rng.gen_range(0..self.dests.len())),
            other => other,
        };
        let direction = if self.rng.gen_bool(0.5) {
            Direction::Incoming
        } else {
            Direction::Outgoing
        };
        let amount = self.rng.gen_range(1..=100u64);
        let (dest, client, expected) = match actor {
            Who::PlatformFor(dest) | Who::Destination(dest) => (dest, None, 201),
            Who::Client(c) => {
                let client = &self.clients[c];
                let expected = if !client.active {
                    refused_credential(client)
                } else if client.permissions.contains(direction.create()) {
                    201
                } else {
                    403
                };
                (client.dest, Some(c), expected)
            }
            _ => unreachable!(),
        };
        self.note(format!("{actor:?} creates {} {amount}", direction.as_str()));
        let body = json!({
            "direction": direction.as_str(),
            "amount": amount.to_string(),
            "currency": "USD",
            "reference": format!("step-{}", self.step),
        });
        let reply = self.call(actor, "POST", "/v1/requests", Some(body)).await;
        self.expect(&reply, expected, "create");
        if reply.status != 201 {
            return;
        }
        assert_eq!(reply.body["destination_id"], self.dests[dest].id.as_str());
        let client_id = client.map(|c| Value::from(self.clients[c].id.as_str()));
        assert_eq!(reply.body["client_id"], client_id.unwrap_or(Value::Null));
        self.reqs.push(Req {
            id: str_of(&reply.body, "id"),
            dest,
            direction,
            client,
            amount,
            paid: 0,
            status: Status::Open,
        });
        self.note(format!("  -> request {}", self.reqs.len() - 1));
        self.after_request_event(self.reqs.len() - 1, "payment_request.created")
            .await;
    }

    async fn step_pay(&mut self) {
        let actor = self.pick_actor();
        let Some(r) = self.pick_request(actor) else {
            return;
        };
        let amount = self.rng.gen_range(1..=60u64);
        let req = &self.reqs[r];
        let expected = match actor {
            Who::Client(c) if !self.clients[c].active => refused_credential(&self.clients[c]),
            _ if !self.sees(actor, req) => 404,
            Who::Client(c) if !self.clients[c].permissions.contains("payments:report") => 403,
            _ if req.status == Status::Cancelled => 409,
            _ => 201,
        };
        let path = format!("/v1/requests/{}/payments", req.id);
        let status = req.status;
        self.note(format!(
            "{actor:?} pays {amount} on request {r} ({status:?})"
        ));
        let body = json!({"amount": amount.to_string(), "reference": format!("pay-{}", self.step)});
        let reply = self.call(actor, "POST", &path, Some(body)).await;
        self.expect(&reply, expected, "report a payment");
        if reply.status != 201 {
            return;
        }
        let req = &mut self.reqs[r];
        req.paid += amount;
        let kind = if req.paid >= req.amount {
            req.status = Status::Paid;
            "payment_request.paid"
        } else {
            req.status = Status::PartiallyPaid;
            "payment_request.partially_paid"
        };
        self.after_request_event(r, kind).await;
    }

    async fn step_cancel(&mut self) {
        let actor = self.pick_actor();
        let Some(r) = self.pick_request(actor) else {
            return;
        };
        let req = &self.reqs[r];
        let expected = match actor {
            Who::Client(c) if !self.clients[c].active => refused_credential(&self.clients[c]),
            _ if !self.sees(actor, req) => 404,
            Who::Client(c)
                if req.client != Some(c)
                    || !self.clients[c].permissions.contains(req.direction.create()) =>
            {
                403
            }
            _ if !matches!(req.status, Status::Open | Status::PartiallyPaid) => 409,
            _ => 200,
        };
        let path = format!("/v1/requests/{}/cancel", req.id);
        let status = req.status;
        self.note(format!("{actor:?} cancels request {r} ({status:?})"));
        let reply = self.call(actor, "POST", &path, Some(json!({}))).await;
        self.expect(&reply, expected, "cancel");
        if reply.status != 200 {
            return;
        }
        self.reqs[r].status = Status::Cancelled;
        self.after_request_event(r, "payment_request.cancelled")
            .await;
    }

    /// An owner of the client ID's destination grants or withdraws one permission.
    async fn step_permission(&mut self, grant: bool) {
        let c = self.rng.gen_range(0..self.clients.len());
        let permission = *PERMISSIONS.choose(&mut self.rng).unwrap();
        let dest = self.clients[c].dest;
        let owner = match self.rng.gen_range(0..3) {
            0 => Who::Platform(self.org_of(dest)),
            1 => Who::PlatformFor(dest),
            _ => Who::Destination(dest),
        };
        let id = self.clients[c].id.clone();
        let reply = if grant {
            self.note(format!("{owner:?} grants {permission} to client {c}"));
            self.call(
                owner,
                "POST",
                &format!("/v1/client-ids/{id}/permissions"),
                Some(json!({"permission": permission})),
            )
            .await
        } else {
            self.note(format!("{owner:?} withdraws {permission} from client {c}"));
            self.call(
                owner,
                "DELETE",
                &format!("/v1/client-ids/{id}/permissions/{permission}"),
                None,
            )
            .await
        };
        if !self.clients[c].active {
            // A revoked client ID stays revoked: nothing about it changes any more.
            self.expect(&reply, 409, "change a revoked client ID");
            return;
        }
        self.expect(&reply, 200, "change permissions");
        if grant {
            self.clients[c].permissions.insert(permission);
        } else {
            self.clients[c].permissions.remove(permission);
        }
        let expected = self.clients[c].permissions.clone();
        self.check_permissions(&reply.body, &expected);
        self.after_visibility_change(c).await;
    }

    async fn step_issue(&mut self) {
        let key_clients = self.clients.iter().filter(|c| c.agent.is_none()).count();
        if key_clients >= MAX_KEY_CLIENTS {
            return self.step_trespass().await;
        }
        let dest = self.rng.gen_range(0..self.dests.len());
        let orch = self.rng.gen_range(0..3);
        let issuer = if self.rng.gen_bool(0.5) {
            Who::Destination(dest)
        } else {
            Who::PlatformFor(dest)
        };
        let permissions = self.rng.gen_bool(0.7).then(|| self.random_permissions());
        self.note(format!(
            "{issuer:?} issues a client ID to orch {orch} with {permissions:?}"
        ));
        self.issue(issuer, dest, orch, permissions).await;
        self.note(format!("  -> client {}", self.clients.len() - 1));
    }

    async fn step_revoke(&mut self) {
        let active: Vec<usize> = (0..self.clients.len())
            .filter(|&c| self.clients[c].active && self.clients[c].agent.is_none())
            .collect();
        if active.len() <= MIN_ACTIVE_KEY_CLIENTS {
            return self.step_issue().await;
        }
        let c = *active.choose(&mut self.rng).unwrap();
        let dest = self.clients[c].dest;
        let owner = if self.rng.gen_bool(0.5) {
            Who::Destination(dest)
        } else {
            Who::Platform(self.org_of(dest))
        };
        self.note(format!("{owner:?} revokes client {c}"));
        let path = format!("/v1/client-ids/{}/revoke", self.clients[c].id);
        let reply = self.call(owner, "POST", &path, Some(json!({}))).await;
        self.expect(&reply, 200, "revoke a client ID");
        assert_eq!(reply.body["status"], "revoked");
        self.clients[c].active = false;
        self.after_visibility_change(c).await;
    }

    /// Revokes the active agent's claim, or approves a new agent when none is active.
    async fn step_agent(&mut self) {
        let active = (0..self.clients.len())
            .find(|&c| self.clients[c].active && self.clients[c].agent.is_some());
        match active {
            Some(c) => {
                let dest = self.clients[c].dest;
                let claim = self.clients[c].agent.as_ref().unwrap().1.clone();
                self.note(format!("dest {dest} revokes the claim of agent client {c}"));
                let reply = self
                    .call(
                        Who::Destination(dest),
                        "POST",
                        &format!("/v1/claims/{claim}/revoke"),
                        Some(json!({})),
                    )
                    .await;
                self.expect(&reply, 200, "revoke a claim");
                self.clients[c].active = false;
                self.after_visibility_change(c).await;
            }
            None => {
                let agents = self.clients.iter().filter(|c| c.agent.is_some()).count();
                if agents >= MAX_AGENTS {
                    return self.step_trespass().await;
                }
                let dest = self.rng.gen_range(0..self.dests.len());
                let orch = self.rng.gen_range(0..3);
                self.new_agent(dest, orch).await;
            }
        }
    }

    /// Someone reaches for what is not theirs: refused, and nothing changes.
    async fn step_trespass(&mut self) {
        let c = self.rng.gen_range(0..self.clients.len());
        let client_id = self.clients[c].id.clone();
        let dest = self.clients[c].dest;
        let other_dest =
            (dest + 1 + self.rng.gen_range(0..self.dests.len() - 1)) % self.dests.len();
        let other_org = 1 - self.org_of(dest);
        let grant = Some(json!({"permission": "read:incoming"}));
        let create = Some(json!({"direction": "incoming", "amount": "1", "currency": "USD"}));
        let grant_path = format!("/v1/client-ids/{client_id}/permissions");
        let (who, method, path, body, expected) = match self.rng.gen_range(0..6) {
            // Another destination's owner, or another organization, grants on this client ID.
            0 => (Who::Destination(other_dest), "POST", grant_path, grant, 404),
            1 => (Who::Platform(other_org), "POST", grant_path, grant, 404),
            // An orchestrator may see its client IDs but not change them; a bystander sees none.
            2 if self.rng.gen_bool(0.5) => {
                let orch = self.clients[c].orch;
                (Who::Orchestrator(orch), "POST", grant_path, grant, 403)
            }
            2 => (
                Who::Orchestrator(3),
                "GET",
                format!("/v1/client-ids/{client_id}"),
                None,
                404,
            ),
            // A destination key naming another destination; a platform naming another
            // organization's destination.
            3 => {
                let key = self.dests[dest].key.clone();
                let other = self.dests[other_dest].id.clone();
                self.note(format!(
                    "dest {dest} creates with X-Destination-Id of dest {other_dest}"
                ));
                let reply = self
                    .api
                    .send(
                        "POST",
                        "/v1/requests",
                        Some(&key),
                        create,
                        &[("x-destination-id", &other)],
                    )
                    .await;
                return self.expect(&reply, 403, "name another destination");
            }
            4 => {
                let key = self.orgs[other_org].key.clone();
                let foreign = self.dests[dest].id.clone();
                self.note(format!(
                    "org {other_org} creates with X-Destination-Id of dest {dest}"
                ));
                let reply = self
                    .api
                    .send(
                        "POST",
                        "/v1/requests",
                        Some(&key),
                        create,
                        &[("x-destination-id", &foreign)],
                    )
                    .await;
                return self.expect(&reply, 403, "name another organization's destination");
            }
            // An orchestrator naming another orchestrator's client ID.
            _ => {
                let orch = (self.clients[c].orch + 1 + self.rng.gen_range(0..3)) % 4;
                let key = self.orchs[orch].key.clone();
                self.note(format!(
                    "orch {orch} reads with client {c} of another orchestrator"
                ));
                let reply = self
                    .api
                    .send(
                        "GET",
                        "/v1/requests",
                        Some(&key),
                        None,
                        &[("x-client-id", &client_id)],
                    )
                    .await;
                return self.expect(&reply, 403, "name another orchestrator's client ID");
            }
        };
        self.note(format!("{who:?} trespasses: {method} {path}"));
        let reply = self.call(who, method, &path, body).await;
        self.expect(&reply, expected, "trespass");
    }

    fn expect(&self, reply: &Reply, expected: u16, what: &str) {
        assert_eq!(
            reply.status,
            expected,
            "{what}: expected {expected}, got {}: {}\n{}",
            reply.status,
            reply.body,
            self.context()
        );
        self.count(1);
    }

    // ----- the checks -----

    /// After a step that emitted one event about request `r`: learn the event's id from the
    /// platform's feed, then check who can read the request and the event.
    async fn after_request_event(&mut self, r: usize, kind: &str) {
        let org = self.org_of(self.reqs[r].dest);
        let recent = self
            .call(Who::Platform(org), "GET", "/v1/events?limit=10", None)
            .await;
        assert_eq!(recent.status, 200, "{}", recent.body);
        let new: Vec<&Value> = recent.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| {
                event["type"]
                    .as_str()
                    .unwrap()
                    .starts_with("payment_request.")
                    && !self.event_index.contains_key(event["id"].as_str().unwrap())
            })
            .collect();
        assert_eq!(new.len(), 1, "one new event: {new:?}\n{}", self.context());
        assert_eq!(new[0]["type"], kind, "{}", self.context());
        assert_eq!(new[0]["data"]["object"]["id"], self.reqs[r].id.as_str());
        let id = str_of(new[0], "id");
        let mut event = Ev {
            id: id.clone(),
            req: r,
            ever: HashSet::new(),
            continuous: HashSet::new(),
        };
        for endpoint in &self.endpoints {
            if self.sees(endpoint.owner, &self.reqs[r]) {
                event.ever.insert(endpoint.owner);
                event.continuous.insert(endpoint.owner);
            }
        }
        self.event_index.insert(id, self.events.len());
        self.events.push(event);
        self.count(1);

        let (near, outsiders) = self.audience(self.reqs[r].dest);
        let e = self.events.len() - 1;
        let readers: Vec<Who> = near.iter().chain(&outsiders).copied().collect();
        // Orchestrators read no request; for them the event is the object. The others' reads
        // of the event follow the request's, which the full comparisons check for everyone.
        let mut event_readers: Vec<Who> = readers
            .iter()
            .filter(|who| matches!(who, Who::Orchestrator(_)))
            .copied()
            .collect();
        event_readers.push(*near.choose(&mut self.rng).unwrap());
        event_readers.extend(outsiders.first());
        let reads = readers.iter().map(|&who| self.check_request_read(who, r));
        let events = event_readers
            .iter()
            .map(|&who| self.check_event_read(who, e));
        join(join_all(reads), join_all(events)).await;
    }

    /// Whom to ask about a new or changed object of destination `dest`: everyone who is close
    /// to it (its owners, every client ID on it, their orchestrators, the orchestrator that
    /// never gets a client ID) and two principals picked at random among all the others.
    /// Asking every principal after every step would cost ~60 calls a step; the full
    /// comparisons every `CHECKPOINT` steps cover every principal.
    fn audience(&mut self, dest: usize) -> (Vec<Who>, Vec<Who>) {
        let mut near = vec![
            Who::Platform(self.org_of(dest)),
            Who::PlatformFor(dest),
            Who::Destination(dest),
            Who::Orchestrator(3),
        ];
        for (c, client) in self.clients.iter().enumerate() {
            if client.dest == dest {
                near.push(Who::Client(c));
                if !near.contains(&Who::Orchestrator(client.orch)) {
                    near.push(Who::Orchestrator(client.orch));
                }
            }
        }
        let others: Vec<Who> = self
            .viewers()
            .into_iter()
            .filter(|who| !near.contains(who))
            .collect();
        let outsiders = others.choose_multiple(&mut self.rng, 2).copied().collect();
        (near, outsiders)
    }

    async fn check_request_read(&self, who: Who, r: usize) {
        let req = &self.reqs[r];
        let Some(expected) = self.expected_request_read(who, req) else {
            return;
        };
        let reply = self
            .call(who, "GET", &format!("/v1/requests/{}", req.id), None)
            .await;
        assert_eq!(
            reply.status,
            expected,
            "LEAK CHECK: {who:?} GET request {r}: {}\n{}",
            reply.body,
            self.context()
        );
        if expected == 200 {
            assert_eq!(
                reply.body["status"],
                req.status.as_str(),
                "{}",
                self.context()
            );
        }
        self.count(1);
    }

    async fn check_event_read(&self, who: Who, e: usize) {
        let event = &self.events[e];
        let expected = self.expected_event_read(who, &self.reqs[event.req]);
        let reply = self
            .call(who, "GET", &format!("/v1/events/{}", event.id), None)
            .await;
        assert_eq!(
            reply.status,
            expected,
            "LEAK CHECK: {who:?} GET event {} of request {}: {}\n{}",
            event.id,
            event.req,
            reply.body,
            self.context()
        );
        self.count(1);
    }

    /// After client `c`'s permissions or status changed: its and its orchestrator's views of
    /// a sample of requests and events, and the webhook bookkeeping.
    async fn after_visibility_change(&mut self, c: usize) {
        let orch = self.clients[c].orch;
        self.refresh_visibility(Who::Client(c));
        self.refresh_visibility(Who::Orchestrator(orch));
        for t in 0..self.tokens.len() {
            if self.tokens[t].client == c {
                self.refresh_visibility(Who::Token(t));
            }
        }
        let dest = self.clients[c].dest;
        let mut sample: Vec<usize> = (0..self.reqs.len())
            .rev()
            .filter(|&r| self.reqs[r].dest == dest)
            .take(200)
            .collect();
        sample.shuffle(&mut self.rng);
        sample.truncate(6);
        if !self.reqs.is_empty() {
            for _ in 0..2 {
                sample.push(self.rng.gen_range(0..self.reqs.len()));
            }
        }
        let mut events: Vec<usize> = (0..self.events.len())
            .rev()
            .filter(|&e| self.reqs[self.events[e].req].dest == dest)
            .take(200)
            .collect();
        events.shuffle(&mut self.rng);
        events.truncate(6);
        let reads = sample
            .iter()
            .map(|&r| self.check_request_read(Who::Client(c), r));
        let event_reads = events.iter().flat_map(|&e| {
            [
                self.check_event_read(Who::Client(c), e),
                self.check_event_read(Who::Orchestrator(orch), e),
            ]
        });
        join(join_all(reads), join_all(event_reads)).await;
    }

    /// Every principal's whole request list and event feed against the model.
    async fn full_comparison(&self) {
        let everyone = self.viewers();
        join_all(everyone.iter().map(|&who| self.compare_lists(who))).await;
    }

    async fn compare_lists(&self, who: Who) {
        if let Who::Client(c) = who {
            let client = &self.clients[c];
            if !client.active {
                let reply = self.call(who, "GET", "/v1/requests", None).await;
                assert_eq!(reply.status, refused_credential(client), "{}", reply.body);
                let reply = self.call(who, "GET", "/v1/events", None).await;
                assert_eq!(reply.status, refused_credential(client), "{}", reply.body);
                self.count(2);
                return;
            }
        }
        let expected: BTreeSet<&str> = self
            .reqs
            .iter()
            .filter(|req| self.sees(who, req))
            .map(|req| req.id.as_str())
            .collect();
        if !matches!(who, Who::Orchestrator(_)) {
            let listed = self
                .list_all(who, "/v1/requests")
                .await
                .unwrap_or_else(|reply| {
                    panic!("{who:?} lists requests: {} {}", reply.status, reply.body)
                });
            let listed: BTreeSet<&str> = listed
                .iter()
                .map(|item| item["id"].as_str().unwrap())
                .collect();
            self.compare_sets(who, "GET /v1/requests", &listed, &expected);
        }
        let expected_events: BTreeSet<&str> = self
            .events
            .iter()
            .filter(|event| self.sees(who, &self.reqs[event.req]))
            .map(|event| event.id.as_str())
            .collect();
        let feed = self
            .list_all(who, "/v1/events")
            .await
            .unwrap_or_else(|reply| {
                panic!("{who:?} lists events: {} {}", reply.status, reply.body)
            });
        let feed: BTreeSet<&str> = feed
            .iter()
            .filter(|event| {
                event["type"]
                    .as_str()
                    .unwrap()
                    .starts_with("payment_request.")
            })
            .map(|event| event["id"].as_str().unwrap())
            .collect();
        self.compare_sets(who, "GET /v1/events", &feed, &expected_events);
    }

    fn compare_sets(&self, who: Who, what: &str, got: &BTreeSet<&str>, expected: &BTreeSet<&str>) {
        let leaked: Vec<&&str> = got.difference(expected).collect();
        let missing: Vec<&&str> = expected.difference(got).collect();
        assert!(
            leaked.is_empty() && missing.is_empty(),
            "{who:?} {what}: leaked {leaked:?}, missing {missing:?}\n{}",
            self.context()
        );
        self.count(1);
    }

    /// The webhooks each receiver got, against the model. Returns the number of leaks.
    ///
    /// Deliveries are fanned out after the event is written and re-authorized when sent, so
    /// the moment the server decides is not a step boundary the test controls. What is
    /// asserted, for every endpoint:
    ///
    /// - **no leak**: every event received is a `payment_request.*` event created after the
    ///   endpoint, which the model let the endpoint's owner see at some step boundary between
    ///   the event's creation and the end (visibility only changes at step boundaries, since
    ///   steps run one at a time);
    /// - **no loss**: every event created after the endpoint that the owner was allowed to see
    ///   at every step boundary from its creation to the end arrives. An event that was
    ///   invisible to the owner at some point in between (a `read:` withdrawn, then granted
    ///   again) may rightly have been skipped, and one that became visible only after its
    ///   creation (a grant later) was rightly never fanned out to it; neither is required.
    async fn check_webhooks(&self) -> usize {
        // Wait for everything owed to arrive.
        let deadline = Instant::now() + WEBHOOK_WAIT;
        for endpoint in &self.endpoints {
            let owed: BTreeSet<&str> = self.events[endpoint.since..]
                .iter()
                .filter(|event| event.continuous.contains(&endpoint.owner))
                .map(|event| event.id.as_str())
                .collect();
            loop {
                let received = endpoint.receiver.event_ids();
                let missing: Vec<&&str> =
                    owed.iter().filter(|id| !received.contains(**id)).collect();
                if missing.is_empty() {
                    self.count(owed.len() as u64);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{:?}'s endpoint {} never received {} events it was owed, e.g. {:?} (seed {})",
                    endpoint.owner,
                    endpoint.id,
                    missing.len(),
                    &missing[..missing.len().min(5)],
                    self.seed
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Let whatever is still queued go out (or be skipped) before judging what arrived.
        for endpoint in &self.endpoints {
            if let Who::Client(c) = self.manager(endpoint.owner) {
                if !self.clients[c].active {
                    continue;
                }
            }
            self.settled(endpoint, deadline).await;
        }
        let mut leaks = 0;
        for endpoint in &self.endpoints {
            for id in endpoint.receiver.event_ids() {
                let allowed = self.event_index.get(&id).is_some_and(|&e| {
                    e >= endpoint.since && self.events[e].ever.contains(&endpoint.owner)
                });
                if !allowed {
                    leaks += 1;
                    let _ = writeln!(
                        std::io::stderr(),
                        "isolation: LEAK: {:?}'s endpoint {} received {id} (known: {:?})",
                        endpoint.owner,
                        endpoint.id,
                        self.event_index
                            .get(&id)
                            .map(|&e| &self.reqs[self.events[e].req].id)
                    );
                }
                self.count(1);
            }
        }
        leaks
    }

    /// Waits until none of the endpoint's delivery attempts is pending.
    async fn settled(&self, endpoint: &Endpoint, deadline: Instant) {
        loop {
            let path = format!("/v1/webhook-endpoints/{}/deliveries?limit=100", endpoint.id);
            let log = self
                .call(self.manager(endpoint.owner), "GET", &path, None)
                .await;
            assert_eq!(log.status, 200, "{}", log.body);
            let pending = log.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|attempt| attempt["status"] == "pending");
            if !pending {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "deliveries to {:?}'s endpoint did not settle",
                endpoint.owner
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_principal_sees_exactly_what_the_model_allows_through_api_feed_and_webhooks() {
    let seed: u64 = std::env::var("MANDATE_ISOLATION_SEED")
        .ok()
        .map(|seed| seed.parse().expect("MANDATE_ISOLATION_SEED is a number"))
        .unwrap_or_else(rand::random);
    let steps: usize = std::env::var("MANDATE_ISOLATION_STEPS")
        .ok()
        .map(|steps| steps.parse().expect("MANDATE_ISOLATION_STEPS is a number"))
        .unwrap_or(10_000);
    let _ = writeln!(
        std::io::stderr(),
        "isolation: seed {seed} (replay with MANDATE_ISOLATION_SEED={seed}), {steps} steps"
    );
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    command
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
        .env("MANDATE__WEBHOOKS__RETRY_SCHEDULE", "0s,1s,1s,1s")
        .env("MANDATE__RATE_LIMIT__PER_SECOND", "0");
    let server = Server::start_with(command, &data.0).await;
    let started = Instant::now();
    let mut world = World::build(server.api(), seed).await;
    world.full_comparison().await;
    for step in 1..=steps {
        world.step = step;
        world.run_step().await;
        if step % CHECKPOINT == 0 {
            world.full_comparison().await;
        }
    }
    world.full_comparison().await;
    let stepped = started.elapsed();
    let leaks = world.check_webhooks().await;
    let checks = world.checks.load(Ordering::Relaxed);
    let _ = writeln!(
        std::io::stderr(),
        "isolation: {steps} steps, {checks} checks, {leaks} leaks (seed {seed}); {} requests, \
         {} events, {} client IDs, {} endpoints; steps {:.1} s, total {:.1} s",
        world.reqs.len(),
        world.events.len(),
        world.clients.len(),
        world.endpoints.len(),
        stepped.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(leaks, 0, "webhooks leaked (seed {seed})");
}
