//! Agent request signatures by an independent RFC 9421 implementation: the Python package
//! `http-message-signatures`, run through `rfc9421.py` next to this file. Tests sign requests
//! with it and check the server's signatures with it, so that a misreading of the RFC shared by
//! our signer and our verifier cannot pass unnoticed.
//!
//! The interpreter is `MANDATE_TEST_PYTHON` (default `python3`); `cargo xtask test` installs the
//! package when it is missing. Without it these helpers fail the test; they never skip it.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{Api, Reply};

/// The variable naming the Python interpreter that has `http-message-signatures`.
const PYTHON_ENV: &str = "MANDATE_TEST_PYTHON";
/// The driver script.
const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/rfc9421.py");
/// The driver's exit status when the Python packages are not installed.
const MISSING_PACKAGES: i32 = 3;

/// One request, as signed and checked.
#[derive(Debug, Clone, Copy)]
pub struct AgentRequest<'a> {
    /// `POST`, `GET`, …
    pub method: &'a str,
    /// The absolute URL, which is `@target-uri`: for a test server, `server.url(path)` (its
    /// public URL is its base URL).
    pub url: &'a str,
    /// Headers sent besides the signature ones (`X-Client-Id`, `Content-Type`, …).
    pub headers: &'a [(&'a str, &'a str)],
    /// The exact body bytes sent.
    pub body: &'a [u8],
}

impl AgentRequest<'_> {
    /// The components SPEC §8 requires this request's signature to cover: `@method`,
    /// `@target-uri`, `content-digest` with a body, `x-client-id` when sent.
    pub fn required_components(&self) -> Vec<&'static str> {
        let mut required = vec!["@method", "@target-uri"];
        if !self.body.is_empty() {
            required.push("content-digest");
        }
        if self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("x-client-id"))
        {
            required.push("x-client-id");
        }
        required
    }

    fn json(&self) -> Value {
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Value::from(*value)))
            .collect();
        json!({
            "method": self.method,
            "url": self.url,
            "headers": headers,
            "body": STANDARD.encode(self.body),
        })
    }
}

/// A request signed by the Python library.
#[derive(Debug, Clone)]
pub struct PythonSigned {
    /// The key id it signed with: the public key, `ed25519:<base64>`.
    pub key_id: String,
    /// The headers it added: `Content-Digest` (with a body), `Signature-Input`, `Signature`.
    pub headers: Vec<(String, String)>,
}

impl PythonSigned {
    /// An added header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The added headers, borrowed, for [`send_signed`].
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }
}

/// What the Python library says of a signed request.
#[derive(Debug, Clone, PartialEq)]
pub enum PythonVerdict {
    /// The signature verified with the key, covers the required components, and the digest
    /// matches the body.
    Verified {
        label: String,
        /// The covered components, in signed order.
        covered: Vec<String>,
        /// The signature parameters (`created`, `keyid`, `alg`, `nonce`, …).
        parameters: Value,
    },
    /// Refused, with the library's reason.
    Rejected(String),
}

fn python() -> String {
    std::env::var(PYTHON_ENV)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| "python3".to_owned())
}

/// Runs the driver's `command` on `input` and returns its JSON answer; any failure to answer
/// fails the test.
fn run_driver(command: &str, input: &Value) -> Value {
    let python = python();
    let mut child = Command::new(&python)
        .args([DRIVER, command])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "could not run {PYTHON_ENV}={python}: {error}; run `cargo xtask test`, or point \
                 {PYTHON_ENV} at a Python 3 that has the http-message-signatures package"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "rfc9421.py {command} answered no JSON ({error}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        }),
        Some(MISSING_PACKAGES) => panic!(
            "{python} lacks the Python package http-message-signatures ({}); run `cargo xtask \
             test`, which installs it, or `{python} -m pip install http-message-signatures`",
            stderr.trim()
        ),
        _ => panic!("rfc9421.py {command} failed ({}): {stderr}", output.status),
    }
}

/// Signs `request` with the Python library: Ed25519 key from `seed`, key id its public key,
/// covering `covered` in that order, with the library's own label and parameter order
/// (`created`, `keyid`, `alg`, `nonce`). `Content-Digest` is computed by the driver (hashlib)
/// when the body is not empty.
pub fn python_sign(
    request: &AgentRequest<'_>,
    seed: &[u8; 32],
    covered: &[&str],
    created: i64,
    nonce: &str,
) -> PythonSigned {
    let mut input = request.json();
    input["seed"] = Value::from(STANDARD.encode(seed));
    input["covered"] = json!(covered);
    input["created"] = Value::from(created);
    input["nonce"] = Value::from(nonce);
    let answer = run_driver("sign", &input);
    let given = |name: &str| {
        request
            .headers
            .iter()
            .any(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
    };
    let headers = answer["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| !given(name))
        .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned()))
        .collect();
    PythonSigned {
        key_id: answer["key_id"].as_str().unwrap().to_owned(),
        headers,
    }
}

/// Checks `request` sent with `signature_headers` (`Content-Digest`, `Signature-Input`,
/// `Signature`) with the Python library, against `public_key` (`ed25519:<base64>`, which must
/// also be the `keyid`), requiring `required` components to be covered.
pub fn python_verify(
    request: &AgentRequest<'_>,
    signature_headers: &[(&str, &str)],
    public_key: &str,
    required: &[&str],
) -> PythonVerdict {
    let mut input = request.json();
    for (name, value) in signature_headers {
        input["headers"][*name] = Value::from(*value);
    }
    input["public_key"] = Value::from(public_key);
    input["required"] = json!(required);
    let answer = run_driver("verify", &input);
    if answer["verified"] == true {
        PythonVerdict::Verified {
            label: answer["label"].as_str().unwrap().to_owned(),
            covered: answer["covered"]
                .as_array()
                .unwrap()
                .iter()
                .map(|name| name.as_str().unwrap().to_owned())
                .collect(),
            parameters: answer["parameters"].clone(),
        }
    } else {
        PythonVerdict::Rejected(answer["error"].as_str().unwrap_or_default().to_owned())
    }
}

/// Sends `request` to the server behind `api` with its exact body bytes, its headers,
/// `signature_headers` (from [`python_sign`] or the Rust signer) and, when given, a Bearer
/// token. `request.url` must be `api.base()` plus the path.
pub async fn send_signed(
    api: &Api,
    request: &AgentRequest<'_>,
    signature_headers: &[(&str, &str)],
    bearer: Option<&str>,
) -> Reply {
    assert!(
        request.url.starts_with(api.base()),
        "{} is not on {}",
        request.url,
        api.base()
    );
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
    let mut builder = api
        .client
        .request(method, request.url)
        .body(request.body.to_vec());
    if let Some(token) = bearer {
        builder = builder.bearer_auth(token);
    }
    for (name, value) in request.headers.iter().chain(signature_headers) {
        builder = builder.header(*name, *value);
    }
    let response = builder.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        body,
        headers,
    }
}
