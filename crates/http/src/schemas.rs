//! Schemas of the values the API checks, for the OpenAPI document: enumerations taken from the
//! domain's own lists, and the patterns of the domain's rules (amounts, currencies, slugs,
//! ids). Fields name them with `#[schema(value_type = …)]`; each becomes one component.

use std::borrow::Cow;

use mandate_domain::claims::ClaimStatus as DomainClaimStatus;
use mandate_domain::events::EventType as DomainEventType;
use mandate_domain::ids;
use mandate_domain::model::ClientStatus as DomainClientStatus;
use mandate_domain::payments::{Direction as DomainDirection, RequestStatus};
use mandate_domain::principal::PrincipalKind as DomainPrincipalKind;
use mandate_domain::values::Permission as DomainPermission;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// The pattern of an id with `prefix`, as the API writes it (the ULID part upper case; the
/// server also reads it in lower case).
pub fn id_pattern(prefix: &str) -> String {
    format!("^{prefix}_[0-7][0-9A-HJKMNP-TV-Z]{{25}}$")
}

/// A string schema with `description`, then whatever `configure` adds.
fn string(
    description: &str,
    configure: impl FnOnce(ObjectBuilder) -> ObjectBuilder,
) -> RefOr<Schema> {
    configure(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description)),
    )
    .into()
}

macro_rules! value_schema {
    ($(#[$doc:meta])* $name:ident, $description:literal, $configure:expr) => {
        $(#[$doc])*
        pub enum $name {}

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string($description, $configure)
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

macro_rules! id_schema {
    ($(#[$doc:meta])* $name:ident, $id:ty) => {
        value_schema!(
            $(#[$doc])*
            $name,
            "A prefixed, time-ordered id: the prefix, `_`, then a ULID.",
            |schema| schema.pattern(Some(id_pattern(<$id>::PREFIX)))
        );
    };
}

value_schema!(
    /// `incoming` or `outgoing`.
    Direction,
    "Whether the destination receives the money (`incoming`) or pays it (`outgoing`).",
    |schema| schema.enum_values(Some(DomainDirection::ALL.map(DomainDirection::as_str)))
);

value_schema!(
    /// A payment request's status.
    PaymentRequestStatus,
    "`open → partially_paid → paid`; `open | partially_paid → cancelled | expired`.",
    |schema| schema.enum_values(Some(RequestStatus::ALL.map(RequestStatus::as_str)))
);

value_schema!(
    /// A claim's status.
    ClaimStatus,
    "`pending → approved | rejected | expired`; `approved → revoked | expired`.",
    |schema| schema.enum_values(Some(DomainClaimStatus::ALL.map(DomainClaimStatus::as_str)))
);

value_schema!(
    /// A client ID's status.
    ClientStatus,
    "`active`, or `revoked` (permanent).",
    |schema| schema.enum_values(Some(DomainClientStatus::ALL.map(DomainClientStatus::as_str)))
);

value_schema!(
    /// One permission of a client ID.
    Permission,
    "What a client ID may do; it is granted and withdrawn one at a time.",
    |schema| schema.enum_values(Some(DomainPermission::ALL.map(DomainPermission::as_str)))
);

value_schema!(
    /// An event type.
    EventType,
    "An event type of the catalogue (`GET /v1/event-types`).",
    |schema| schema.enum_values(Some(DomainEventType::ALL.map(DomainEventType::as_str)))
);

value_schema!(
    /// A kind of principal.
    PrincipalKind,
    "A kind of credential: `admin`, `platform`, `destination`, `orchestrator` or `client`.",
    |schema| schema.enum_values(Some(DomainPrincipalKind::ALL.map(DomainPrincipalKind::as_str)))
);

value_schema!(
    /// An event type pattern of a webhook endpoint's subscription.
    EventTypePattern,
    "An exact event type (`payment_request.paid`), a family (`payment_request.*`), or `*`.",
    |schema| schema.pattern(Some(r"^(\*|[a-z_]+\.\*|[a-z_]+\.[a-z_]+)$"))
);

value_schema!(
    /// The OAuth grant the token endpoint supports.
    GrantType,
    "Only `client_credentials` (RFC 6749 §4.4).",
    |schema| schema.enum_values(Some(["client_credentials"]))
);

value_schema!(
    /// The type of the tokens the token endpoint issues.
    TokenType,
    "Always `Bearer`: send the token as `Authorization: Bearer <token>`.",
    |schema| schema.enum_values(Some(["Bearer"]))
);

value_schema!(
    /// An error code of the token endpoint.
    OAuthErrorCode,
    "The RFC 6749 §5.2 error code.",
    |schema| schema.enum_values(Some([
        "invalid_request",
        "invalid_client",
        "unsupported_grant_type",
        "invalid_scope",
    ]))
);

value_schema!(
    /// An exact amount.
    Amount,
    "An exact decimal string greater than 0, with at most 20 integer and 18 fractional \
     digits; returned as given, without leading zeros (`10.50` comes back as `10.50`, \
     `010.5` as `10.5`), and compared by value.",
    |schema| schema.pattern(Some(r"^[0-9]{1,20}(\.[0-9]{1,18})?$"))
);

value_schema!(
    /// A sum of payments, which may pass the 20 integer digits of one amount.
    AmountTotal,
    "An exact decimal string: the sum of the payments, at most \
     340282366920938463463.374607431768211455, with at least the fraction digits of the \
     request's amount (`0.00`, then `42.50` for a request of `42.50`) and more only where \
     a payment needs them.",
    |schema| schema.pattern(Some(r"^[0-9]{1,21}(\.[0-9]{1,18})?$"))
);

value_schema!(
    /// A currency or asset code.
    Currency,
    "A currency or asset code, e.g. `USD`, `USDC-base`: 1–32 characters of A–Z, a–z, 0–9, \
     `_`, `.` and `-`, starting with a letter or digit.",
    |schema| schema.pattern(Some(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"))
);

value_schema!(
    /// A destination's or an orchestrator's slug.
    Slug,
    "3–64 characters of a–z, 0–9 and `-`, starting and ending with a letter or digit; unique.",
    |schema| schema.pattern(Some(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$"))
);

id_schema!(
    /// `org_…`
    OrganizationId,
    ids::OrganizationId
);
id_schema!(
    /// `dst_…`
    DestinationId,
    ids::DestinationId
);
id_schema!(
    /// `orc_…`
    OrchestratorId,
    ids::OrchestratorId
);
id_schema!(
    /// `cli_…`
    ClientId,
    ids::ClientId
);
id_schema!(
    /// `req_…`
    RequestId,
    ids::RequestId
);
id_schema!(
    /// `pay_…`
    PaymentId,
    ids::PaymentId
);
id_schema!(
    /// `cus_…`
    CustomerId,
    ids::CustomerId
);
id_schema!(
    /// `clm_…`
    ClaimId,
    ids::ClaimId
);
id_schema!(
    /// `we_…`
    EndpointId,
    ids::EndpointId
);
id_schema!(
    /// `evt_…`
    EventId,
    ids::EventId
);
id_schema!(
    /// `dlv_…`
    DeliveryId,
    ids::DeliveryId
);
id_schema!(
    /// `key_…`
    KeyId,
    ids::KeyId
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mandate_domain::ids::RequestId;

    use super::id_pattern;

    #[test]
    fn the_id_pattern_matches_generated_ids() {
        let pattern = id_pattern(RequestId::PREFIX);
        assert_eq!(pattern, "^req_[0-7][0-9A-HJKMNP-TV-Z]{25}$");
        let id = RequestId::generate().to_string();
        let ulid = id.strip_prefix("req_").unwrap();
        assert_eq!(ulid.len(), 26);
        assert!(matches!(ulid.as_bytes()[0], b'0'..=b'7'));
        assert!(
            ulid.bytes()
                .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
        );
    }
}
