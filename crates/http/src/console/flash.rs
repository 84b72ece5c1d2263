//! What the last action did, carried by a short-lived cookie to the page it redirected to and
//! shown there once. A value shown once (a webhook signing secret, a payment link with its
//! token) travels sealed (ChaCha20-Poly1305) under a key derived from the session token and
//! the server secret: the cookie alone reveals nothing, another session cannot open it, and
//! the value is never in a URL, a log line or a database row.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;

/// Marks a sealed flash in its cookie; plain ones start with `+` or `!` (URL-encoded).
const SEALED: char = '~';
/// HKDF salt and the associated data of every seal: this use of the key material only.
const CONTEXT: &[u8] = b"mandate console flash";
/// Between the message and the value shown once, inside the seal (neither contains it).
const SEPARATOR: char = '\0';

/// What the last action did, shown once on the page it redirected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flash {
    /// It was done.
    Done(String),
    /// It was refused, in the API's wording.
    Refused(String),
    /// It was done, and made a value that is shown this once, beneath `text`.
    Reveal {
        /// What was done.
        text: String,
        /// The value shown once.
        secret: String,
        /// What the API warned of, in its words (a payment link's `warnings`).
        warning: Option<String>,
    },
}

fn key(material: &str) -> LessSafeKey {
    let key = hkdf::Salt::new(hkdf::HKDF_SHA256, CONTEXT)
        .extract(material.as_bytes())
        .expand(&[b"v1"], &CHACHA20_POLY1305)
        .map(UnboundKey::from)
        .unwrap_or_else(|_| unreachable!("HKDF-SHA256 gives the 32 bytes ChaCha20 needs"));
    LessSafeKey::new(key)
}

impl Flash {
    /// The cookie's value. A [`Flash::Reveal`] is sealed under `flash_key` (the session's
    /// [`mandate_domain::auth::Authenticator::console_flash_key`]); without one, or should
    /// sealing fail, only its message travels.
    pub(super) fn encode(&self, flash_key: Option<&str>) -> String {
        let (mark, text) = match self {
            Flash::Done(text) => ('+', text),
            Flash::Refused(text) => ('!', text),
            Flash::Reveal {
                text,
                secret,
                warning,
            } => {
                let sealed =
                    flash_key.and_then(|material| seal(material, text, secret, warning.as_deref()));
                if let Some(sealed) = sealed {
                    return sealed;
                }
                ('+', text)
            }
        };
        form_urlencoded::byte_serialize(format!("{mark}{text}").as_bytes()).collect()
    }

    /// The flash of a cookie's value; a sealed one opens only with its session's `flash_key`.
    pub(super) fn decode(value: &str, flash_key: Option<&str>) -> Option<Self> {
        if let Some(sealed) = value.strip_prefix(SEALED) {
            return open(flash_key?, sealed);
        }
        let (text, _) = form_urlencoded::parse(value.as_bytes()).next()?;
        let mut chars = text.chars();
        match chars.next()? {
            '+' => Some(Flash::Done(chars.collect())),
            '!' => Some(Flash::Refused(chars.collect())),
            _ => None,
        }
    }
}

fn seal(material: &str, text: &str, secret: &str, warning: Option<&str>) -> Option<String> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut sealed = format!("{text}{SEPARATOR}{secret}").into_bytes();
    if let Some(warning) = warning {
        sealed.extend(format!("{SEPARATOR}{warning}").into_bytes());
    }
    key(material)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(CONTEXT),
            &mut sealed,
        )
        .ok()?;
    let mut value = nonce.to_vec();
    value.extend_from_slice(&sealed);
    Some(format!("{SEALED}{}", URL_SAFE_NO_PAD.encode(value)))
}

fn open(material: &str, sealed: &str) -> Option<Flash> {
    let mut bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let mut sealed = bytes.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
    let plain = key(material)
        .open_in_place(nonce, Aad::from(CONTEXT), &mut sealed)
        .ok()?;
    let plain = std::str::from_utf8(plain).ok()?;
    let mut parts = plain.splitn(3, SEPARATOR);
    let (text, secret) = (parts.next()?, parts.next()?);
    Some(Flash::Reveal {
        text: text.to_owned(),
        secret: secret.to_owned(),
        warning: parts.next().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cookie_safe(encoded: &str) -> bool {
        encoded
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
    }

    #[test]
    fn flashes_survive_their_cookie() {
        for flash in [
            Flash::Done("Approved clm_1 with create:incoming; 1 of 5 agents".into()),
            Flash::Refused("permissions: must be a subset; \"quoted\" & <marked>".into()),
        ] {
            let encoded = flash.encode(None);
            assert!(cookie_safe(&encoded), "{encoded}");
            assert_eq!(Flash::decode(&encoded, None), Some(flash));
        }
        assert_eq!(Flash::decode("garbage", None), None);
    }

    #[test]
    fn a_revealed_value_is_sealed_to_its_session() {
        let secret = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXg=";
        let flash = Flash::Reveal {
            text: "Created endpoint we_1; its signing secret:".into(),
            secret: secret.into(),
            warning: None,
        };
        let encoded = flash.encode(Some("session a"));
        assert!(cookie_safe(&encoded), "{encoded}");
        assert!(!encoded.contains("whsec"), "{encoded}");
        assert!(!encoded.contains("signing"), "{encoded}");
        assert_ne!(encoded, flash.encode(Some("session a")), "a fresh nonce");
        assert_eq!(
            Flash::decode(&encoded, Some("session a")),
            Some(flash.clone())
        );
        assert_eq!(Flash::decode(&encoded, Some("session b")), None);
        assert_eq!(Flash::decode(&encoded, None), None);
        let mut tampered = encoded.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(Flash::decode(&tampered, Some("session a")), None);
        let warned = Flash::Reveal {
            text: "Created payment link pl_1; send the payer this address:".into(),
            secret: "https://pay.example/pay/token".into(),
            warning: Some("the destination has no payment_address".into()),
        };
        let encoded = warned.encode(Some("session a"));
        assert!(!encoded.contains("payment_address"), "{encoded}");
        assert_eq!(Flash::decode(&encoded, Some("session a")), Some(warned));
        // Without a session to seal to, only the message travels.
        assert_eq!(
            Flash::decode(&flash.encode(None), None),
            Some(Flash::Done(
                "Created endpoint we_1; its signing secret:".into()
            ))
        );
    }
}
