//! OAuth access tokens: EdDSA (Ed25519) JWTs issued by the client-credentials grant and
//! verified by the authentication pipeline, plus the JWKS that publishes the public key.
//!
//! A token only proves who it was issued to and with which scope; the pipeline still checks
//! the client ID against the store on every request, so revocation is immediate.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mandate_domain::ids::KeyId;
use mandate_domain::model::Client;
use mandate_domain::values::{Permission, PermissionSet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use utoipa::ToSchema;

/// How long an access token lives (SPEC: at most 15 minutes).
pub const TOKEN_LIFETIME_SECONDS: u64 = 900;
/// The `aud` of every token.
pub const AUDIENCE: &str = "mandate";
/// The JOSE `typ` of our access tokens (RFC 9068), so no other JWT passes for one.
const TOKEN_TYPE: &str = "at+jwt";
/// Tolerated clock difference between the replica that issued a token and the one checking it.
const LEEWAY_SECONDS: u64 = 5;

/// The PKCS#8 v1 wrapping of a raw Ed25519 seed (RFC 8410): a fixed 16-byte prefix.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// How many verified tokens are remembered at most; beyond it, expired ones are dropped, and
/// if that is not enough, all of them (they are verified again on their next use).
const VERIFIED_CAPACITY: usize = 16_384;

/// Signs and verifies access tokens. Built once at start: the keys are parsed here and kept.
pub struct TokenService {
    issuer: String,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    jwks: serde_json::Value,
    /// Tokens whose signature and claims were verified, by the SHA-256 of their text, until
    /// they expire. A token's verdict depends only on its bytes and the time, so the same text
    /// needs its Ed25519 signature checked once, not on every request.
    verified: Mutex<HashMap<[u8; 32], TokenClaims>>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("TokenService")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// One public key of the JWKS (RFC 8037 `OKP`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// The key id that tokens name in their header.
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// The JSON Web Key Set served at `/.well-known/jwks.json`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JwkSet {
    /// The keys that may have signed a current token.
    pub keys: Vec<Jwk>,
}

/// A freshly issued token, as the token endpoint returns it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The signed JWT.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The granted permissions, space-separated.
    pub scope: String,
}

/// The claims of a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The client ID (`cli_…`).
    pub sub: String,
    /// The orchestrator the client ID was issued to.
    pub orc: String,
    /// The delegating destination.
    pub dst: String,
    /// The orchestrator key (`key_…`) that obtained the token: revoking it ends the token.
    pub key: String,
    /// The granted scope.
    pub scope: PermissionSet,
    /// The client ID's version when the token was issued.
    pub ver: u64,
    /// The token's unique id.
    pub jti: String,
    /// When it was issued.
    pub iat: DateTime<Utc>,
    /// When it expires.
    pub exp: DateTime<Utc>,
}

/// Why a token was refused; the label is stable, for logs and metrics, never for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid access token: {0}")]
pub struct InvalidToken(pub &'static str);

/// Signing failed, which a well-formed key never does.
#[derive(Debug, thiserror::Error)]
#[error("could not sign an access token")]
pub struct SigningFailed(#[source] jsonwebtoken::errors::Error);

/// The claims as they travel.
#[derive(Debug, Serialize, Deserialize)]
struct WireClaims {
    iss: String,
    aud: String,
    sub: String,
    exp: i64,
    iat: i64,
    jti: String,
    orc: String,
    dst: String,
    /// Required: a token without it (issued before keys were named) is refused.
    key: String,
    scope: String,
    ver: u64,
}

/// A permission set as the space-separated `scope` string of OAuth.
pub fn scope_string(scope: &PermissionSet) -> String {
    scope
        .iter()
        .map(Permission::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a bearer credential is shaped like a JWT (three base64url parts, the first a JSON
/// object), so the pipeline can tell access tokens from API keys without trying both.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    base64url(header)
        && base64url(payload)
        && base64url(signature)
        && URL_SAFE_NO_PAD
            .decode(header)
            .is_ok_and(|json| json.first() == Some(&b'{'))
}

impl TokenService {
    /// The service for the Ed25519 key derived from `seed`, issuing tokens as `issuer` (the
    /// server's public URL).
    pub fn new(seed: &[u8; 32], issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        let public = ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes();
        let mut der = Vec::with_capacity(PKCS8_ED25519_PREFIX.len() + seed.len());
        der.extend_from_slice(&PKCS8_ED25519_PREFIX);
        der.extend_from_slice(seed);
        let kid: String = Sha256::digest(public)
            .iter()
            .take(8)
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        let jwks = JwkSet {
            keys: vec![Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: URL_SAFE_NO_PAD.encode(public),
                kid: kid.clone(),
                alg: "EdDSA".into(),
                use_: "sig".into(),
            }],
        };
        Self {
            issuer,
            encoding: EncodingKey::from_ed_der(&der),
            // The verifier takes the raw public key, not DER.
            decoding: DecodingKey::from_ed_der(&public),
            validation,
            jwks: serde_json::to_value(jwks).unwrap_or_default(),
            kid,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The service for a key derived from secret material of any length (a generated 32-byte
    /// secret or a configured string), so every replica given the same secret signs alike.
    pub fn from_secret(secret: &[u8], issuer: impl Into<String>) -> Self {
        // Domain-separated, so the seed differs from the secret even if it is reused elsewhere.
        let seed: [u8; 32] = Sha256::new()
            .chain_update(b"mandate access-token signing key v1\0")
            .chain_update(secret)
            .finalize()
            .into();
        Self::new(&seed, issuer)
    }

    /// The `iss` of every token.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key id tokens carry in their header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS document.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// Issues a token for `client` with `scope` (already checked to be within its permissions),
    /// obtained with the orchestrator key `key_id`.
    pub fn issue(
        &self,
        client: &Client,
        key_id: &KeyId,
        scope: &PermissionSet,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, SigningFailed> {
        let iat = now.timestamp();
        let scope = scope_string(scope);
        let claims = WireClaims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_owned(),
            sub: client.id.to_string(),
            exp: iat.saturating_add_unsigned(TOKEN_LIFETIME_SECONDS),
            iat,
            jti: random_jti(),
            orc: client.orchestrator_id.to_string(),
            dst: client.destination_id.to_string(),
            key: key_id.to_string(),
            scope: scope.clone(),
            ver: client.version,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());
        let access_token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(SigningFailed)?;
        Ok(IssuedToken {
            access_token,
            expires_in: TOKEN_LIFETIME_SECONDS,
            scope,
        })
    }

    /// Verifies a token's signature (EdDSA with our key only), `exp`, `iss` and `aud`, and
    /// parses its claims. Whether its client ID is still active is the caller's next step.
    ///
    /// A token verified before is recognised by the hash of its text and only its expiry is
    /// checked again: the signature check (tens of microseconds) is done once per token, not
    /// once per request.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, InvalidToken> {
        self.verify_at(token, Utc::now())
    }

    fn verify_at(&self, token: &str, now: DateTime<Utc>) -> Result<TokenClaims, InvalidToken> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // The same rule as the full check: expired once `exp` is more than the leeway ago.
        let live = |claims: &TokenClaims| {
            now.timestamp()
                <= claims
                    .exp
                    .timestamp()
                    .saturating_add_unsigned(LEEWAY_SECONDS)
        };
        {
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(claims) = verified.get(&digest) {
                if live(claims) {
                    return Ok(claims.clone());
                }
                verified.remove(&digest);
                return Err(InvalidToken("expired"));
            }
        }
        let claims = self.verify_signed(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= VERIFIED_CAPACITY {
            verified.retain(|_, claims| live(claims));
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(digest, claims.clone());
        Ok(claims)
    }

    /// The full check: signature, header and claims.
    fn verify_signed(&self, token: &str) -> Result<TokenClaims, InvalidToken> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<WireClaims>(token, &self.decoding, &self.validation)
            .map_err(|error| {
                InvalidToken(match error.kind() {
                    ErrorKind::ExpiredSignature => "expired",
                    ErrorKind::InvalidSignature => "bad_signature",
                    ErrorKind::InvalidIssuer => "wrong_issuer",
                    ErrorKind::InvalidAudience => "wrong_audience",
                    ErrorKind::InvalidAlgorithm => "wrong_algorithm",
                    ErrorKind::MissingRequiredClaim(_) => "missing_claim",
                    _ => "malformed",
                })
            })?;
        if data.header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(InvalidToken("wrong_type"));
        }
        if data.header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(InvalidToken("unknown_key"));
        }
        let claims = data.claims;
        let scope = claims
            .scope
            .split_ascii_whitespace()
            .map(Permission::parse)
            .collect::<Result<PermissionSet, _>>()
            .map_err(|_| InvalidToken("unknown_permission"))?;
        let time = |seconds: i64| {
            Utc.timestamp_opt(seconds, 0)
                .single()
                .ok_or(InvalidToken("bad_time"))
        };
        Ok(TokenClaims {
            iat: time(claims.iat)?,
            exp: time(claims.exp)?,
            sub: claims.sub,
            orc: claims.orc,
            dst: claims.dst,
            key: claims.key,
            scope,
            ver: claims.ver,
            jti: claims.jti,
        })
    }
}

fn random_jti() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use chrono::Duration;
    use mandate_domain::ids::{ClientId, DestinationId, OrchestratorId, OrganizationId};
    use mandate_domain::model::ClientStatus;

    use super::*;

    const ISSUER: &str = "https://mandate.example";

    fn service(seed: u8) -> TokenService {
        TokenService::new(&[seed; 32], ISSUER)
    }

    fn client() -> Client {
        let now = mandate_domain::now();
        Client {
            id: ClientId::generate(),
            organization_id: OrganizationId::generate(),
            destination_id: DestinationId::generate(),
            orchestrator_id: OrchestratorId::generate(),
            label: None,
            permissions: PermissionSet::default_for_new_client(),
            agent_key: None,
            version: 3,
            status: ClientStatus::Active,
            created_at: now,
            updated_at: now,
        }
    }

    /// A token for a fresh client with no permissions, issued at `at`.
    fn issue_any(service: &TokenService, at: DateTime<Utc>) -> IssuedToken {
        service
            .issue(&client(), &KeyId::generate(), &PermissionSet::default(), at)
            .unwrap()
    }

    /// The header `service` signs its tokens with.
    fn signing_header(service: &TokenService) -> Header {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(service.kid().to_owned());
        header
    }

    fn sign_raw(header: &str, claims: &serde_json::Value, signature: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            signature
        )
    }

    fn wire_claims(service: &TokenService) -> serde_json::Value {
        let now = Utc::now().timestamp();
        serde_json::json!({
            "iss": service.issuer(), "aud": AUDIENCE, "sub": ClientId::generate().to_string(),
            "exp": now + 600, "iat": now, "jti": "x", "orc": OrchestratorId::generate().to_string(),
            "dst": DestinationId::generate().to_string(), "scope": "create:incoming", "ver": 1,
            "key": KeyId::generate().to_string(),
        })
    }

    #[test]
    fn a_token_round_trips() {
        let service = service(7);
        let client = client();
        let scope: PermissionSet = [Permission::CreateOutgoing].into_iter().collect();
        let now = mandate_domain::now();
        let key_id = KeyId::generate();
        let issued = service.issue(&client, &key_id, &scope, now).unwrap();
        assert_eq!(issued.expires_in, 900);
        assert_eq!(issued.scope, "create:outgoing");
        assert!(looks_like_jwt(&issued.access_token));
        let claims = service.verify(&issued.access_token).unwrap();
        assert_eq!(claims.sub, client.id.as_str());
        assert_eq!(claims.orc, client.orchestrator_id.as_str());
        assert_eq!(claims.dst, client.destination_id.as_str());
        assert_eq!(claims.key, key_id.as_str());
        assert_eq!(claims.scope, scope);
        assert_eq!(claims.ver, 3);
        assert_eq!(claims.exp - claims.iat, Duration::seconds(900));
        let again = service
            .issue(&client, &KeyId::generate(), &scope, now)
            .unwrap();
        assert_ne!(
            service.verify(&again.access_token).unwrap().jti,
            claims.jti,
            "every token has its own jti"
        );
    }

    #[test]
    fn the_jwks_publishes_the_verifying_key() {
        let service = service(7);
        let key = &service.jwks()["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], service.kid());
        assert_eq!(service.kid().len(), 16);
        let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
        let expected = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert_eq!(x, expected.to_bytes());
        // A key from the JWKS alone verifies a token.
        let from_jwks = DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
        let token = issue_any(&service, Utc::now());
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        jsonwebtoken::decode::<serde_json::Value>(&token.access_token, &from_jwks, &validation)
            .unwrap();
    }

    #[test]
    fn the_same_secret_gives_the_same_key() {
        let one = TokenService::from_secret(b"some configured secret, 32+ chars", ISSUER);
        let two = TokenService::from_secret(b"some configured secret, 32+ chars", ISSUER);
        let other = TokenService::from_secret(b"another configured secret, 32+ ch", ISSUER);
        assert_eq!(one.jwks(), two.jwks());
        assert_ne!(one.kid(), other.kid());
        let issued = issue_any(&one, Utc::now());
        assert!(two.verify(&issued.access_token).is_ok());
    }

    #[test]
    fn a_remembered_token_still_expires_and_other_texts_are_checked_in_full() {
        let service = service(7);
        let now = Utc::now();
        let issued = issue_any(&service, now);
        let first = service.verify_at(&issued.access_token, now).unwrap();
        // Served from memory now, with the same claims.
        assert_eq!(service.verify_at(&issued.access_token, now).unwrap(), first);
        // Within the leeway after `exp` it is still good; past it, refused.
        let exp = first.exp;
        assert!(
            service
                .verify_at(&issued.access_token, exp + Duration::seconds(5))
                .is_ok()
        );
        assert_eq!(
            service.verify_at(&issued.access_token, exp + Duration::seconds(6)),
            Err(InvalidToken("expired"))
        );
        // A changed text is not the remembered token: its signature is checked.
        let mut tampered = issued.access_token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(service.verify_at(&tampered, now).is_err());
        // Another service (another key) never sees this one's memory.
        assert!(
            self::service(8)
                .verify_at(&issued.access_token, now)
                .is_err()
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let service = service(7);
        let long_ago = Utc::now() - Duration::hours(1);
        let issued = issue_any(&service, long_ago);
        assert_eq!(
            service.verify(&issued.access_token),
            Err(InvalidToken("expired"))
        );
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let other = TokenService::new(&[8; 32], ISSUER);
        let issued = issue_any(&other, Utc::now());
        // Same issuer and kid-less confusion aside, the signature must not verify.
        assert!(service(7).verify(&issued.access_token).is_err());
        // Even when it claims our kid.
        let header = signing_header(&service(7));
        let forged = jsonwebtoken::encode(&header, &wire_claims(&other), &other.encoding).unwrap();
        assert_eq!(
            service(7).verify(&forged),
            Err(InvalidToken("bad_signature"))
        );
    }

    #[test]
    fn a_wrong_audience_or_issuer_is_refused() {
        let service = service(7);
        let header = signing_header(&service);
        let mut claims = wire_claims(&service);
        assert!(
            service
                .verify(&jsonwebtoken::encode(&header, &claims, &service.encoding).unwrap())
                .is_ok()
        );
        claims["aud"] = "someone-else".into();
        let token = jsonwebtoken::encode(&header, &claims, &service.encoding).unwrap();
        assert_eq!(service.verify(&token), Err(InvalidToken("wrong_audience")));
        let mut claims = wire_claims(&service);
        claims["iss"] = "https://evil.example".into();
        let token = jsonwebtoken::encode(&header, &claims, &service.encoding).unwrap();
        assert_eq!(service.verify(&token), Err(InvalidToken("wrong_issuer")));
        let mut claims = wire_claims(&service);
        claims.as_object_mut().unwrap().remove("aud");
        let token = jsonwebtoken::encode(&header, &claims, &service.encoding).unwrap();
        assert!(service.verify(&token).is_err());
    }

    #[test]
    fn alg_none_and_hs256_tokens_are_refused() {
        let service = service(7);
        let claims = wire_claims(&service);
        let kid = service.kid();
        let none = sign_raw(
            &format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#),
            &claims,
            "",
        );
        assert!(service.verify(&none).is_err());
        let none_with_signature = sign_raw(
            &format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#),
            &claims,
            "AAAA",
        );
        assert!(service.verify(&none_with_signature).is_err());
        // HS256 keyed with the public key: the classic algorithm-confusion attack.
        let public = URL_SAFE_NO_PAD
            .decode(service.jwks()["keys"][0]["x"].as_str().unwrap())
            .unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(kid.to_owned());
        let hs256 =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&public)).unwrap();
        assert_eq!(service.verify(&hs256), Err(InvalidToken("wrong_algorithm")));
    }

    #[test]
    fn unknown_permissions_wrong_type_or_kid_are_refused() {
        let service = service(7);
        let header = signing_header(&service);
        let mut claims = wire_claims(&service);
        claims["scope"] = "create:incoming launch:missiles".into();
        let token = jsonwebtoken::encode(&header, &claims, &service.encoding).unwrap();
        assert_eq!(
            service.verify(&token),
            Err(InvalidToken("unknown_permission"))
        );
        let claims = wire_claims(&service);
        let mut plain = header.clone();
        plain.typ = Some("JWT".into());
        let token = jsonwebtoken::encode(&plain, &claims, &service.encoding).unwrap();
        assert_eq!(service.verify(&token), Err(InvalidToken("wrong_type")));
        let mut other_kid = header;
        other_kid.kid = Some("0123456789abcdef".into());
        let token = jsonwebtoken::encode(&other_kid, &claims, &service.encoding).unwrap();
        assert_eq!(service.verify(&token), Err(InvalidToken("unknown_key")));
    }

    #[test]
    fn jwt_shapes_are_told_from_keys() {
        let service = service(7);
        let token = issue_any(&service, Utc::now());
        assert!(looks_like_jwt(&token.access_token));
        for not_a_jwt in [
            "mnd_orch_0123456789abcdefABCDEF0123456789abcdef",
            "admin-token",
            "a.b",
            "a.b.c",
            "eyJhbGciOiJFZERTQSJ9..sig",
            "eyJhbGciOiJFZERTQSJ9.e30.c2ln.extra",
            "eyJhbGciOiJFZERTQSJ9.e3+.c2ln",
            "",
        ] {
            assert!(!looks_like_jwt(not_a_jwt), "{not_a_jwt}");
        }
        assert!(looks_like_jwt("eyJhbGciOiJFZERTQSJ9.e30.c2ln"));
    }
}
