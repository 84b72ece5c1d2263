//! Prefixed, time-ordered identifiers (`org_…`, `dst_…`): a prefix, `_`, then a ULID in
//! Crockford base32, so ids sort by creation time and serve as pagination cursors.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an id of the form {prefix}_<26 characters>")]
pub struct InvalidId {
    /// The prefix the id should have carried.
    pub prefix: &'static str,
}

/// A ULID greater than every one generated before it in this process: plain ULIDs are random
/// within a millisecond, which would break creation order (and cursors) for close calls.
fn next_ulid() -> ulid::Ulid {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Overflow needs 2^80 ids in one millisecond; a fresh random one is the sane fallback.
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with (without the `_`).
            pub const PREFIX: &'static str = $prefix;

            /// A new id, ordered after every id generated before it in this process.
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, next_ulid()))
            }

            /// Parses an id, checking its prefix and its ULID part.
            pub fn parse(value: &str) -> Result<Self, InvalidId> {
                let invalid = InvalidId { prefix: $prefix };
                let rest = value
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .ok_or(invalid.clone())?;
                let ulid = ulid::Ulid::from_string(rest).map_err(|_| invalid.clone())?;
                // Store the canonical (upper-case) spelling so equal ids compare equal. The
                // decoder drops the bits above 128 of a first character past `7`, which would
                // give two spellings of one id: those are refused.
                let canonical = ulid.to_string();
                if !canonical.eq_ignore_ascii_case(rest) {
                    return Err(invalid);
                }
                Ok(Self(format!("{}_{}", $prefix, canonical)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

prefixed_id!(
    /// An organization (a platform).
    OrganizationId,
    "org"
);
prefixed_id!(
    /// A destination: a payee account under an organization.
    DestinationId,
    "dst"
);
prefixed_id!(
    /// A third-party service registered by the operator.
    OrchestratorId,
    "orc"
);
prefixed_id!(
    /// A delegation from one destination to one orchestrator.
    ClientId,
    "cli"
);
prefixed_id!(
    /// An API key (platform, destination or orchestrator); never the key itself.
    KeyId,
    "key"
);
prefixed_id!(
    /// A payment request.
    RequestId,
    "req"
);
prefixed_id!(
    /// A reported payment against a payment request.
    PaymentId,
    "pay"
);
prefixed_id!(
    /// A public payment link of a payment request.
    PaymentLinkId,
    "plink"
);
prefixed_id!(
    /// A customer of an organization's shared pool.
    CustomerId,
    "cus"
);
prefixed_id!(
    /// A webhook endpoint.
    EndpointId,
    "we"
);
prefixed_id!(
    /// One delivery attempt of an event to an endpoint.
    DeliveryId,
    "dlv"
);
prefixed_id!(
    /// An event of the outbox.
    EventId,
    "evt"
);
prefixed_id!(
    /// An agent's authorization request (a claim).
    ClaimId,
    "clm"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_sort_by_creation() {
        let first = DestinationId::generate();
        let second = DestinationId::generate();
        assert_eq!(DestinationId::parse(first.as_str()), Ok(first.clone()));
        assert!(first < second);
        assert_eq!(first.as_str().len(), "dst_".len() + 26);
    }

    #[test]
    fn wrong_prefix_or_garbage_is_refused() {
        let org = OrganizationId::generate();
        assert!(DestinationId::parse(org.as_str()).is_err());
        assert!(DestinationId::parse("dst_").is_err());
        assert!(DestinationId::parse("dst_not-a-ulid-at-all-000000").is_err());
        assert!(DestinationId::parse("dst01ARZ3NDEKTSV4RRFFQ69G5FAV").is_err());
    }

    #[test]
    fn ids_beyond_128_bits_are_refused() {
        // `8…` and `0…` would decode to the same 128 bits.
        assert!(DestinationId::parse("dst_80000000000000000000000000").is_err());
        assert!(DestinationId::parse("dst_ZZZZZZZZZZZZZZZZZZZZZZZZZZ").is_err());
        assert!(DestinationId::parse("dst_7ZZZZZZZZZZZZZZZZZZZZZZZZZ").is_ok());
    }

    #[test]
    fn lower_case_ids_are_canonicalised() {
        let id = KeyId::generate();
        let lower = format!("key_{}", id.as_str()["key_".len()..].to_lowercase());
        assert_eq!(KeyId::parse(&lower), Ok(id));
    }
}
