//! The OAuth 2.0 client-credentials grant (RFC 6749 §4.4) and the JWKS that lets anyone
//! verify the tokens it issues. Both routes are public: the grant authenticates itself.
//!
//! Errors of the token endpoint use RFC 6749 §5.2's `{"error", "error_description"}` rather
//! than Mandate's envelope, so that stock OAuth client libraries understand them.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use mandate_domain::auth::TokenGrantError;
use mandate_domain::values::Permission;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::BODY_LIMIT_BYTES;
use crate::error::{ApiError, ErrorEnvelope};
use crate::schemas;
use crate::state::State;
use crate::tokens::{JwkSet, TokenService};

/// The token request's parameters, sent as `application/x-www-form-urlencoded` (RFC 6749) or
/// as JSON. The client may authenticate with HTTP Basic instead of `client_id` and
/// `client_secret` (RFC 6749 §2.3.1), but not with both.
// Documentation only: the body is parsed by hand, to accept both encodings and HTTP Basic.
#[allow(dead_code)]
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// Must be `client_credentials`.
    #[schema(value_type = schemas::GrantType)]
    pub grant_type: String,
    /// The client ID, `cli_…`.
    #[schema(value_type = Option<schemas::ClientId>)]
    pub client_id: Option<String>,
    /// An API key of the orchestrator the client ID was issued to, `mnd_orch_…`.
    pub client_secret: Option<String>,
    /// Space-separated permissions, a subset of the client ID's; all of them when omitted.
    pub scope: Option<String>,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The access token, an EdDSA-signed JWT; send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = schemas::TokenType)]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// The granted permissions, space-separated.
    pub scope: String,
}

/// An error of the token endpoint (RFC 6749 §5.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type` or `invalid_scope`.
    #[schema(value_type = schemas::OAuthErrorCode)]
    pub error: &'static str,
    /// Human-readable explanation.
    pub error_description: String,
}

/// A refused grant, answered in the RFC 6749 §5.2 format.
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
}

impl OAuthError {
    const fn new(status: StatusCode, error: &'static str, description: &'static str) -> Self {
        Self {
            status,
            error,
            description,
        }
    }

    const fn invalid_request(description: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    const fn invalid_client(description: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    fn response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        no_store(&mut response);
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2 requires the challenge when Basic was tried; HTTP requires one on
            // every 401, and Basic is the scheme this endpoint accepts.
            response.insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="mandate""#));
        }
        response.json(OAuthErrorBody {
            error: self.error,
            error_description: self.description.to_owned(),
        })
    }
}

/// Token responses carry credentials: never cached (RFC 6749 §5.1).
fn no_store(response: &mut actix_web::HttpResponseBuilder) {
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    response.insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
}

/// The parameters this endpoint reads; any other parameter is ignored (RFC 6749 §3.2).
#[derive(Debug, Default)]
struct Params {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

impl Params {
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        match name {
            "grant_type" => Some(&mut self.grant_type),
            "client_id" => Some(&mut self.client_id),
            "client_secret" => Some(&mut self.client_secret),
            "scope" => Some(&mut self.scope),
            _ => None,
        }
    }

    /// Sets one parameter; an empty value counts as omitted (RFC 6749 §3.1), a repeated one is
    /// refused (§3.2).
    fn set(&mut self, name: &str, value: String) -> Result<(), OAuthError> {
        let Some(slot) = self.slot(name) else {
            return Ok(());
        };
        if slot.is_some() {
            return Err(OAuthError::invalid_request(
                "a parameter was sent more than once",
            ));
        }
        if !value.is_empty() {
            *slot = Some(value);
        }
        Ok(())
    }

    fn from_form(body: &[u8]) -> Result<Self, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| OAuthError::invalid_request("the form body is malformed"))?;
        let mut params = Self::default();
        for (name, value) in pairs {
            params.set(&name, value)?;
        }
        Ok(params)
    }

    fn from_json(body: &[u8]) -> Result<Self, OAuthError> {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|_| OAuthError::invalid_request("the JSON body must be an object"))?;
        let mut params = Self::default();
        for (name, value) in object {
            match value {
                serde_json::Value::String(text) => params.set(&name, text)?,
                serde_json::Value::Null => {}
                _ if params.slot(&name).is_some() => {
                    return Err(OAuthError::invalid_request(
                        "every parameter must be a string",
                    ));
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

/// How the body is encoded, from `Content-Type`.
fn parse_body(request: &HttpRequest, body: &[u8]) -> Result<Params, OAuthError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase());
    match content_type.as_deref() {
        Some("application/x-www-form-urlencoded") => Params::from_form(body),
        Some("application/json") => Params::from_json(body),
        None if body.is_empty() => Ok(Params::default()),
        _ => Err(OAuthError::invalid_request(
            "send the parameters as application/x-www-form-urlencoded or application/json",
        )),
    }
}

/// The HTTP Basic client credentials, if the request sends them (RFC 6749 §2.3.1: client id
/// and secret are form-urlencoded before being joined with `:` and base64-encoded).
fn basic_credentials(request: &HttpRequest) -> Result<Option<(String, String)>, OAuthError> {
    let mut values = request.headers().get_all(header::AUTHORIZATION);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OAuthError::invalid_request(
            "send at most one Authorization header",
        ));
    }
    const MALFORMED: OAuthError =
        OAuthError::invalid_client("malformed HTTP Basic client credentials");
    let text = value.to_str().map_err(|_| MALFORMED)?;
    let Some((scheme, encoded)) = text.trim().split_once(' ') else {
        return Err(OAuthError::invalid_request(
            "authenticate with HTTP Basic or with client_id and client_secret",
        ));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_request(
            "authenticate with HTTP Basic or with client_id and client_secret",
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| MALFORMED)?;
    let decoded = String::from_utf8(decoded).map_err(|_| MALFORMED)?;
    let (id, secret) = decoded.split_once(':').ok_or(MALFORMED)?;
    let id = form_decode(id).ok_or(MALFORMED)?;
    let secret = form_decode(secret).ok_or(MALFORMED)?;
    if id.is_empty() || secret.is_empty() {
        return Err(MALFORMED);
    }
    Ok(Some((id, secret)))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space, `%XX` a byte.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(index + 1..index + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 2;
            }
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8(out).ok()
}

/// Reads the body up to the API's limit.
async fn read_body(mut payload: web::Payload) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::invalid("the body could not be read"))?;
        if body.len() + chunk.len() > BODY_LIMIT_BYTES {
            return Err(ApiError::payload_too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Exchanges client credentials for an access token.
#[utoipa::path(post, path = "/v1/oauth/token", tag = "oauth",
    request_body(description = "RFC 6749 §4.4.2 parameters; the client may authenticate with \
        HTTP Basic (`client_id:client_secret`) instead of the body parameters",
        content((TokenRequest = "application/x-www-form-urlencoded"),
            (TokenRequest = "application/json"))),
    responses(
        (status = 200, body = TokenResponse,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "invalid_request, unsupported_grant_type or invalid_scope",
            body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody,
            headers(("WWW-Authenticate" = String, description = "Basic realm=\"mandate\""))),
        (status = 413, body = ErrorEnvelope),
        (status = 429, description = "RATE_LIMITED: too many failed authentication attempts from \
            this address; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "INTERNAL: a bug, logged with the request id", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
pub async fn token(
    request: HttpRequest,
    payload: web::Payload,
    state: State,
    tokens: web::Data<TokenService>,
) -> Result<HttpResponse, ApiError> {
    // An address past its failed authentications is refused before the secret is checked.
    let address = request.peer_addr().map(|address| address.ip());
    if let Some((throttle, address)) = state.failed_auth.as_ref().zip(address) {
        throttle
            .check(address)
            .map_err(ApiError::failed_auth_throttled)?;
    }
    let body = read_body(payload).await?;
    match grant(&request, &body, &state, &tokens).await {
        Ok(response) => Ok(response),
        Err(GrantFailure::OAuth(error)) => {
            tracing::info!(
                error = error.error,
                reason = error.description,
                "token refused"
            );
            Ok(error.response())
        }
        Err(GrantFailure::Api(error)) => Err(error),
    }
}

enum GrantFailure {
    OAuth(OAuthError),
    Api(ApiError),
}

impl From<OAuthError> for GrantFailure {
    fn from(error: OAuthError) -> Self {
        GrantFailure::OAuth(error)
    }
}

async fn grant(
    request: &HttpRequest,
    body: &[u8],
    state: &State,
    tokens: &TokenService,
) -> Result<HttpResponse, GrantFailure> {
    let params = parse_body(request, body)?;
    let basic = basic_credentials(request)?;
    match params.grant_type.as_deref() {
        None => return Err(OAuthError::invalid_request("grant_type is required").into()),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only the client_credentials grant is supported",
            )
            .into());
        }
    }
    let (client_id, secret) = match (basic, params.client_id, params.client_secret) {
        (Some(_), _, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use exactly one client authentication method, HTTP Basic or the body",
            )
            .into());
        }
        // Some libraries repeat the client_id in the body next to Basic; it must agree.
        (Some((id, _)), Some(body_id), None) if body_id != id => {
            return Err(OAuthError::invalid_request(
                "client_id differs from the HTTP Basic client",
            )
            .into());
        }
        (Some(credentials), _, None) => credentials,
        (None, Some(id), Some(secret)) => (id, secret),
        (None, None, None) => {
            return Err(OAuthError::invalid_client("client authentication is required").into());
        }
        (None, _, _) => {
            return Err(OAuthError::invalid_request(
                "client_id and client_secret are both required",
            )
            .into());
        }
    };
    let now = mandate_domain::now();
    let (client, key_id, scope) = state
        .authenticator
        .client_credentials(&client_id, &secret, params.scope.as_deref(), now)
        .await
        .map_err(|error| match error {
            TokenGrantError::InvalidClient => {
                crate::metrics::record_refused_client_credentials();
                let address = request.peer_addr().map(|address| address.ip());
                if let Some((throttle, address)) = state.failed_auth.as_ref().zip(address) {
                    throttle.record_failure(address);
                }
                GrantFailure::OAuth(OAuthError::invalid_client("client authentication failed"))
            }
            TokenGrantError::InvalidScope => GrantFailure::OAuth(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "the requested scope exceeds the client ID's permissions",
            )),
            TokenGrantError::Store(error) => GrantFailure::Api(error.into()),
        })?;
    let issued = tokens
        .issue(&client, &key_id, &scope, now)
        .map_err(|error| GrantFailure::Api(ApiError::internal(&error)))?;
    tracing::debug!(client_id = %client.id, "access token issued");
    let mut response = HttpResponse::Ok();
    no_store(&mut response);
    Ok(response.json(TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        scope: issued.scope,
    }))
}

/// The public keys that verify access tokens (RFC 7517), keyed by the `kid` in their header.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "oauth",
    responses((status = 200, body = JwkSet)))]
pub async fn jwks(tokens: web::Data<TokenService>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(tokens.jwks())
}

/// The authorization server's metadata (RFC 8414), from the configured public URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerMetadata {
    /// The `iss` of every access token: the public URL.
    pub issuer: String,
    /// `POST` client credentials here.
    pub token_endpoint: String,
    /// The public keys that verify access tokens.
    pub jwks_uri: String,
    /// Always `["client_credentials"]`.
    pub grant_types_supported: Vec<&'static str>,
    /// `client_secret_basic` (HTTP Basic) and `client_secret_post` (body parameters).
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Every permission a token's `scope` may name.
    pub scopes_supported: Vec<&'static str>,
    /// Empty: there is no authorization endpoint, only the client-credentials grant.
    pub response_types_supported: Vec<&'static str>,
}

/// Where the token endpoint and its keys are, and what they support (RFC 8414), so that OAuth
/// libraries configure themselves.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    responses((status = 200, body = ServerMetadata)))]
pub async fn metadata(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(ServerMetadata {
            issuer: state.tokens.issuer().to_owned(),
            token_endpoint: format!("{}/v1/oauth/token", state.public_url),
            jwks_uri: format!("{}/.well-known/jwks.json", state.public_url),
            grant_types_supported: vec!["client_credentials"],
            token_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
            ],
            scopes_supported: Permission::ALL
                .iter()
                .map(|permission| permission.as_str())
                .collect(),
            response_types_supported: Vec::new(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn form_values_decode() {
        assert_eq!(form_decode("cli_01%3Ax+y").as_deref(), Some("cli_01:x y"));
        assert_eq!(form_decode("plain").as_deref(), Some("plain"));
        assert_eq!(form_decode("%"), None);
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("%zz"), None);
    }

    #[test]
    fn basic_credentials_are_read() {
        let encoded = STANDARD.encode("cli%5F1:s%3Ae+cret");
        let request = TestRequest::default()
            .insert_header((header::AUTHORIZATION, format!("Basic {encoded}")))
            .to_http_request();
        assert_eq!(
            basic_credentials(&request).unwrap(),
            Some(("cli_1".to_owned(), "s:e cret".to_owned()))
        );
        let request = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Basic !!!"))
            .to_http_request();
        assert_eq!(
            basic_credentials(&request).unwrap_err().error,
            "invalid_client"
        );
        let request = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Bearer abc"))
            .to_http_request();
        assert_eq!(
            basic_credentials(&request).unwrap_err().error,
            "invalid_request"
        );
        let request = TestRequest::default().to_http_request();
        assert_eq!(basic_credentials(&request).unwrap(), None);
    }

    #[test]
    fn bodies_parse_as_form_or_json() {
        let form = TestRequest::default()
            .insert_header((
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=UTF-8",
            ))
            .to_http_request();
        let params = parse_body(
            &form,
            concat!(
                "grant_type=client_credentials&client_id=cli_1",
                "&scope=create%3Aincoming+create%3Aoutgoing&extra=1&client_secret="
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(params.grant_type.as_deref(), Some("client_credentials"));
        assert_eq!(params.client_id.as_deref(), Some("cli_1"));
        assert_eq!(
            params.client_secret, None,
            "an empty value counts as omitted"
        );
        assert_eq!(
            params.scope.as_deref(),
            Some("create:incoming create:outgoing")
        );
        let repeated = parse_body(&form, b"grant_type=a&grant_type=b").unwrap_err();
        assert_eq!(repeated.error, "invalid_request");

        let json = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .to_http_request();
        let params = parse_body(
            &json,
            br#"{"grant_type":"client_credentials","client_secret":"k","other":5}"#,
        )
        .unwrap();
        assert_eq!(params.client_secret.as_deref(), Some("k"));
        assert!(parse_body(&json, br#"{"grant_type":1}"#).is_err());
        assert!(parse_body(&json, b"[]").is_err());

        let text = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "text/plain"))
            .to_http_request();
        assert!(parse_body(&text, b"grant_type=client_credentials").is_err());
    }
}
