//! API key material: generation, the keyed hash that is stored, and the display prefix.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Which kind of key; the kind is visible in the key's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `mnd_plat_…`
    Platform,
    /// `mnd_dest_…`
    Destination,
    /// `mnd_orch_…`
    Orchestrator,
}

impl KeyKind {
    /// Every kind.
    pub const ALL: [KeyKind; 3] = [
        KeyKind::Platform,
        KeyKind::Destination,
        KeyKind::Orchestrator,
    ];

    /// The text every key of this kind starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Platform => "mnd_plat_",
            KeyKind::Destination => "mnd_dest_",
            KeyKind::Orchestrator => "mnd_orch_",
        }
    }

    /// The kind a presented key claims to be, from its prefix.
    pub fn of(key: &str) -> Option<KeyKind> {
        Self::ALL
            .into_iter()
            .find(|kind| key.starts_with(kind.prefix()))
    }
}

/// Characters shown of a key in lists: enough to recognise it, far too few to use it.
pub const DISPLAY_PREFIX_LEN: usize = 12;

/// A newly generated key: the plain text (shown once) and what is stored of it.
pub struct GeneratedKey {
    /// The key itself; returned to the caller once and never stored.
    pub plain: String,
    /// The keyed hash to store and look up by.
    pub hash: String,
    /// The display prefix.
    pub prefix: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Hashes keys with HMAC-SHA256 under a server secret: an O(1) lookup per request, and a
/// stolen table reveals nothing usable without the secret.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

impl KeyHasher {
    /// A hasher keyed with `secret` (at least 32 bytes are expected).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { mac }
    }

    /// The keyed hash of a presented secret, as lower-case hex.
    pub fn hash(&self, secret: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(secret.as_bytes());
        let digest = mac.finalize().into_bytes();
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Compares a presented secret with an expected one in constant time.
    pub fn matches(&self, presented: &str, expected: &str) -> bool {
        let mut mac = self.mac.clone();
        mac.update(presented.as_bytes());
        let mut expected_mac = self.mac.clone();
        expected_mac.update(expected.as_bytes());
        mac.verify(&expected_mac.finalize().into_bytes()).is_ok()
    }

    /// Generates a key of `kind`: the prefix and 32 random bytes in base62.
    pub fn generate(&self, kind: KeyKind) -> GeneratedKey {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let plain = format!("{}{}", kind.prefix(), base62(&bytes));
        GeneratedKey {
            hash: self.hash(&plain),
            prefix: plain.chars().take(DISPLAY_PREFIX_LEN).collect(),
            plain,
        }
    }
}

/// Base62 of a big-endian number, by repeated division: 32 bytes give 43 characters.
fn base62(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut number = bytes.to_vec();
    let mut out = Vec::new();
    while number.iter().any(|&byte| byte != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        out.push(ALPHABET[remainder as usize]);
    }
    // Pad so every key has the same length whatever its leading bytes.
    while out.len() < 43 {
        out.push(ALPHABET[0]);
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_carry_their_kind_and_hash_to_the_stored_value() {
        let hasher = KeyHasher::new(b"0123456789abcdef0123456789abcdef");
        for kind in KeyKind::ALL {
            let key = hasher.generate(kind);
            assert_eq!(KeyKind::of(&key.plain), Some(kind));
            assert_eq!(key.plain.len(), kind.prefix().len() + 43);
            assert!(key.plain.is_ascii());
            assert_eq!(hasher.hash(&key.plain), key.hash);
            assert!(!key.hash.contains(&key.plain));
            assert_eq!(key.prefix, key.plain[..DISPLAY_PREFIX_LEN]);
        }
    }

    #[test]
    fn the_hash_depends_on_the_server_secret() {
        let one = KeyHasher::new(b"secret one, long enough to count");
        let two = KeyHasher::new(b"secret two, long enough to count");
        assert_ne!(one.hash("mnd_plat_x"), two.hash("mnd_plat_x"));
        assert!(one.matches("token", "token"));
        assert!(!one.matches("token", "tokeN"));
    }

    #[test]
    fn base62_is_positional() {
        assert_eq!(base62(&[0, 61]), format!("{}z", "0".repeat(42)));
        assert_eq!(base62(&[0, 62]), format!("{}10", "0".repeat(41)));
    }
}
