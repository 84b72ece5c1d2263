//! Signing requests as an agent does.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use sfv::{BareItem, DictSerializer, InnerList, Item, ListEntry, key_ref};

use crate::base::{Component, serialize_inner_list, signature_base};
use crate::{
    ALGORITHM, CONTENT_DIGEST, LABEL, MAX_NONCE_CHARS, SignedMessage, SigningError, content_digest,
    key_id,
};

/// The three headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `Content-Digest`, when there is a body.
    pub content_digest: Option<String>,
    /// `Signature-Input`.
    pub signature_input: String,
    /// `Signature`.
    pub signature: String,
}

impl SignatureHeaders {
    /// The headers to send, as (name, value) pairs.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = Vec::with_capacity(3);
        if let Some(digest) = &self.content_digest {
            pairs.push(("Content-Digest", digest.as_str()));
        }
        pairs.push(("Signature-Input", self.signature_input.as_str()));
        pairs.push(("Signature", self.signature.as_str()));
        pairs
    }
}

/// An agent's signing key: signs requests as an agent would (`keyid` = its public key).
pub struct AgentSigner {
    pub(crate) key: SigningKey,
    /// The `keyid`, written once.
    key_id: String,
}

impl fmt::Debug for AgentSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AgentSigner {
    /// The signer for the Ed25519 key with this 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(&key.verifying_key());
        Self { key, key_id }
    }

    /// A signer with a fresh random key.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut seed = [0; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The public key: the agent's identity.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The signatures' `keyid`, `ed25519:<base64 of the public key>`: the `public_key` of the
    /// agent's claim.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs a request: covers `@method`, `@target-uri`, `content-digest` (computed here when
    /// `body` is not empty) and each of `headers` (lowercase names, such as `x-client-id`;
    /// a repeated name is one component with several field lines), with parameters
    /// `created`, `keyid`, `alg="ed25519"` and `nonce`. The caller sends `headers` and the
    /// returned headers with the request.
    pub fn sign(
        &self,
        method: &str,
        target_uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        created: i64,
        nonce: &str,
    ) -> Result<SignatureHeaders, SigningError> {
        let digest = (!body.is_empty()).then(|| content_digest(body));
        let mut covered_headers = HeaderMap::new();
        let mut components = vec![Component::Method, Component::TargetUri];
        let digest_header = digest
            .as_deref()
            .map(|digest| (CONTENT_DIGEST, digest))
            .into_iter();
        for (name, value) in digest_header.chain(headers.iter().copied()) {
            let header = HeaderName::from_lowercase(name.as_bytes())
                .map_err(|_| SigningError::HeaderName(name.to_owned()))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| SigningError::HeaderValue(name.to_owned()))?;
            let component = Component::Field(header.clone());
            if !components.contains(&component) {
                components.push(component);
            }
            covered_headers.append(header, value);
        }

        let created = sfv::Integer::try_from(created).map_err(|_| SigningError::Created)?;
        let nonce = match nonce.chars().count() {
            1..=MAX_NONCE_CHARS => {
                sfv::StringRef::from_str(nonce).map_err(|_| SigningError::Nonce)?
            }
            _ => return Err(SigningError::Nonce),
        };
        let key_id = sfv::StringRef::from_str(&self.key_id)
            .unwrap_or_else(|_| unreachable!("ed25519:<base64> is printable ASCII"));
        let items = components
            .iter()
            .map(|component| {
                sfv::String::from_string(component.name().to_owned())
                    .map(Item::new)
                    .unwrap_or_else(|_| unreachable!("component names are printable ASCII"))
            })
            .collect();
        let mut parameters = sfv::Parameters::new();
        let parameter = |name: &'static str| key_ref(name).to_owned();
        parameters.insert(parameter("created"), BareItem::Integer(created));
        parameters.insert(parameter("keyid"), BareItem::String(key_id.to_owned()));
        parameters.insert(
            parameter("alg"),
            BareItem::String(sfv::string_ref(ALGORITHM).to_owned()),
        );
        parameters.insert(parameter("nonce"), BareItem::String(nonce.to_owned()));
        let input = InnerList::with_params(items, parameters);

        let message = SignedMessage {
            method,
            target_uri,
            headers: &covered_headers,
            body,
        };
        let base = signature_base(&message, &components, &serialize_inner_list(&input))?;
        let signature = self.key.sign(base.as_bytes()).to_bytes();

        let mut signature_input = String::new();
        DictSerializer::with_buffer(&mut signature_input)
            .members([(key_ref(LABEL), &ListEntry::InnerList(input))]);
        let mut signature_header = String::new();
        let _ = DictSerializer::with_buffer(&mut signature_header)
            .bare_item(key_ref(LABEL), signature.as_slice());
        Ok(SignatureHeaders {
            content_digest: digest,
            signature_input,
            signature: signature_header,
        })
    }
}
