//! What the console tests share: a cookie-keeping HTTP client that does not follow redirects
//! (so each 303 and each cookie is seen), and an agent's claim submitted by its orchestrator.

use std::collections::BTreeMap;

use mandate_signatures::AgentSigner;
use serde_json::json;

use super::agent_signing::{AgentRequest, send_signed};
use super::{ADMIN_TOKEN, Api, random_hex};

/// One answer of the console.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    /// Where a 303 sends the browser.
    pub fn location(&self) -> &str {
        self.header("location")
    }

    /// Every `Set-Cookie` line.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    /// The value the page shows once beneath its flash (a signing secret, a payment link);
    /// `None` when it shows none.
    pub fn revealed(&self) -> Option<String> {
        let marker = "<p class=\"mono secret\">";
        let start = self.body.find(marker)? + marker.len();
        let end = start + self.body[start..].find("</p>")?;
        Some(self.body[start..end].replace("&amp;", "&"))
    }

    /// The `csrf_token` the page's forms carry.
    pub fn csrf_token(&self) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no csrf_token in the page:\n{}", self.body))
            + marker.len();
        let end = start + self.body[start..].find('"').unwrap();
        self.body[start..end].to_owned()
    }
}

/// A browser, as far as the console can tell: it keeps the cookies it is given.
pub struct Browser {
    base: String,
    client: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = if self.cookies.is_empty() {
            request
        } else {
            request.header("cookie", self.cookie_header())
        };
        let response = request.send().await.unwrap();
        let page = Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        };
        for line in page.set_cookies() {
            let pair = line.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || line.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .form(fields);
        self.send(request).await
    }

    /// Signs in with `key`; panics unless the console lets it in.
    pub async fn sign_in(&mut self, key: &str) -> Page {
        let signed_in = self.post("/console/login", &[("key", key)]).await;
        assert_eq!(signed_in.status, 303, "{}", signed_in.body);
        assert!(self.cookies.contains_key("mandate_session"));
        signed_in
    }

    /// The CSRF token of this browser's session, from a page.
    pub async fn csrf_token(&mut self) -> String {
        let page = self.get("/console/claims").await;
        assert_eq!(page.status, 200, "{}", page.body);
        page.csrf_token()
    }
}

/// A new orchestrator: its slug and key.
pub async fn register_orchestrator(api: &Api) -> (String, String) {
    let slug = format!("agents-{}", random_hex(4));
    let created = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": "Agent runner"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    (slug, created.body["api_key"].as_str().unwrap().to_owned())
}

/// The slug of a destination.
pub async fn destination_slug(api: &Api, key: &str, destination_id: &str) -> String {
    let destination = api
        .get(&format!("/v1/destinations/{destination_id}"), key)
        .await;
    assert_eq!(destination.status, 200, "{}", destination.body);
    destination.body["slug"].as_str().unwrap().to_owned()
}

/// A pending claim of a new agent for the destination `namespace`, asking `create:incoming`
/// and `create:outgoing`; its id.
pub async fn submit_claim(
    api: &Api,
    orchestrator_key: &str,
    service: &str,
    namespace: &str,
) -> String {
    let agent = AgentSigner::from_seed(rand::random());
    let body = json!({
        "namespace": namespace,
        "public_key": agent.key_id(),
        "service": service,
        "ip_address": "203.0.113.7",
        "nonce": format!("nonce-{}", random_hex(12)),
        "agent_id": format!("agent-{}", random_hex(4)),
        "agent_name": "Invoice agent",
        "permissions": ["create:incoming", "create:outgoing"],
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    let url = format!("{}/v1/claims", api.base());
    let signed = agent
        .sign(
            "POST",
            &url,
            &[],
            &bytes,
            chrono::Utc::now().timestamp(),
            &format!("sig-{}", random_hex(12)),
        )
        .unwrap();
    let request = AgentRequest {
        method: "POST",
        url: &url,
        headers: &[("content-type", "application/json")],
        body: &bytes,
    };
    let submitted = send_signed(api, &request, &signed.pairs(), Some(orchestrator_key)).await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    submitted.body["id"].as_str().unwrap().to_owned()
}
