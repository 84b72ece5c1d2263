//! What the API returns: the JSON shapes of SPEC §5, documented in the OpenAPI schema.

use chrono::{DateTime, Utc};
use mandate_domain::model::{ApiKey, Destination, Orchestrator, Organization};
use mandate_domain::payments::{Payment, PaymentRequest};
use mandate_domain::ports::Page;
use mandate_domain::usecases::IssuedKey;
use serde::Serialize;
use utoipa::ToSchema;

use crate::schemas;

/// An organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    /// `org_…`
    #[schema(value_type = schemas::OrganizationId)]
    pub id: String,
    /// Always `organization`.
    pub object: &'static str,
    /// Display name.
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
}

impl From<Organization> for OrganizationView {
    fn from(organization: Organization) -> Self {
        Self {
            id: organization.id.into(),
            object: "organization",
            name: organization.name,
            created_at: organization.created_at,
        }
    }
}

/// A destination.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationView {
    /// `dst_…`
    #[schema(value_type = schemas::DestinationId)]
    pub id: String,
    /// Always `destination`.
    pub object: &'static str,
    /// `org_…`
    #[schema(value_type = schemas::OrganizationId)]
    pub organization_id: String,
    /// Unique slug (the claim namespace).
    #[schema(value_type = schemas::Slug)]
    pub slug: String,
    /// Shown to payers.
    pub display_name: String,
    /// Where payers send money, free text.
    pub payment_address: Option<String>,
    /// Agents that may be approved at once.
    pub max_agents: u32,
    /// Lifetime of a pending claim.
    pub pending_claim_ttl_seconds: u32,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
    /// RFC 3339, UTC.
    pub updated_at: DateTime<Utc>,
}

impl From<Destination> for DestinationView {
    fn from(destination: Destination) -> Self {
        Self {
            id: destination.id.into(),
            object: "destination",
            organization_id: destination.organization_id.into(),
            slug: destination.slug.into(),
            display_name: destination.display_name,
            payment_address: destination.payment_address,
            max_agents: destination.max_agents,
            pending_claim_ttl_seconds: destination.pending_claim_ttl_seconds,
            created_at: destination.created_at,
            updated_at: destination.updated_at,
        }
    }
}

/// An API key as listed: never the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// `key_…`
    #[schema(value_type = schemas::KeyId)]
    pub id: String,
    /// Always `api_key`.
    pub object: &'static str,
    /// The first 12 characters of the key.
    pub prefix: String,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
    /// Last use, to the minute.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id.into(),
            object: "api_key",
            prefix: key.prefix,
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// Keys of one owner, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Always `list`.
    pub object: &'static str,
    /// The keys, revoked ones included.
    pub data: Vec<KeyView>,
    /// Always `false`: an owner's keys fit in one page.
    pub has_more: bool,
    /// Always `null`.
    pub next_cursor: Option<String>,
}

impl From<Vec<ApiKey>> for KeyList {
    fn from(keys: Vec<ApiKey>) -> Self {
        Self {
            object: "list",
            data: keys.into_iter().map(KeyView::from).collect(),
            has_more: false,
            next_cursor: None,
        }
    }
}

/// A key just created: the only time the key is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeyView {
    /// `key_…`
    #[schema(value_type = schemas::KeyId)]
    pub id: String,
    /// The key. Store it now: it cannot be shown again.
    pub key: String,
    /// The first 12 characters of the key.
    pub prefix: String,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
}

impl From<IssuedKey> for NewKeyView {
    fn from(issued: IssuedKey) -> Self {
        Self {
            id: issued.record.id.into(),
            key: issued.plain,
            prefix: issued.record.prefix,
            created_at: issued.record.created_at,
        }
    }
}

/// An orchestrator.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrchestratorView {
    /// `orc_…`
    #[schema(value_type = schemas::OrchestratorId)]
    pub id: String,
    /// Always `orchestrator`.
    pub object: &'static str,
    /// Unique slug (the `service` of claims).
    #[schema(value_type = schemas::Slug)]
    pub slug: String,
    /// Display name.
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
}

impl From<Orchestrator> for OrchestratorView {
    fn from(orchestrator: Orchestrator) -> Self {
        Self {
            id: orchestrator.id.into(),
            object: "orchestrator",
            slug: orchestrator.slug.into(),
            name: orchestrator.name,
            created_at: orchestrator.created_at,
        }
    }
}

/// An orchestrator's own profile with its keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrchestratorProfile {
    /// The orchestrator.
    #[serde(flatten)]
    pub orchestrator: OrchestratorView,
    /// Its keys, revoked ones included.
    pub keys: Vec<KeyView>,
}

/// The schema of a page of `$item` items, named `$name`: the list envelope that [`ListBody`]
/// writes, documented once for every list.
macro_rules! list_schema {
    ($(#[$doc:meta])* $name:ident, $item:ty) => {
        $(#[$doc])*
        pub enum $name {}

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::views::list_envelope(
                    <$item as utoipa::ToSchema>::name().as_ref(),
                    stringify!($name),
                )
            }
        }

        impl utoipa::ToSchema for $name {
            fn schemas(
                schemas: &mut Vec<(
                    String,
                    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
                )>,
            ) {
                schemas.push((
                    <$item as utoipa::ToSchema>::name().into_owned(),
                    <$item as utoipa::PartialSchema>::schema(),
                ));
                <$item as utoipa::ToSchema>::schemas(schemas);
            }
        }
    };
}
pub(crate) use list_schema;

/// The list envelope around items of the schema component `item`.
pub(crate) fn list_envelope(
    item: &str,
    name: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    use utoipa::openapi::{Ref, schema::SchemaType};
    ObjectBuilder::new()
        .description(Some(format!(
            "{name}: a page of `{item}` items, newest first, in the list envelope."
        )))
        .property(
            "object",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["list"]))
                .description(Some("Always `list`.")),
        )
        .required("object")
        .property(
            "data",
            ArrayBuilder::new()
                .items(Ref::from_schema_name(item))
                .description(Some("The items of this page.")),
        )
        .required("data")
        .property(
            "has_more",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some("Whether older items follow.")),
        )
        .required("has_more")
        .property(
            "next_cursor",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some(
                    "Pass as `starting_after` for the next page; `null` on the last one.",
                )),
        )
        .required("next_cursor")
        .property(
            "unreadable",
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(
                    "Present only when some stored item of this page could not be read (a \
                     damaged row): their ids, left out of `data`; the cause is logged.",
                )),
        )
        .into()
}

list_schema!(
    /// A page of organizations, newest first.
    OrganizationList,
    OrganizationView
);
list_schema!(
    /// A page of orchestrators, newest first.
    OrchestratorList,
    OrchestratorView
);
list_schema!(
    /// A page of destinations.
    DestinationList,
    DestinationView
);
list_schema!(
    /// A page of client IDs.
    ClientList,
    ClientView
);
list_schema!(
    /// A page of payment requests.
    PaymentRequestList,
    PaymentRequestView
);
list_schema!(
    /// A page of claims.
    ClaimList,
    ClaimView
);
list_schema!(
    /// A page of ledger entries; the cursor is a `seq`.
    LedgerList,
    LedgerEntryView
);

/// A page of domain objects, which serialize to their API shape themselves.
#[derive(Debug, Serialize)]
pub struct ListBody<T: Serialize> {
    object: &'static str,
    data: Vec<T>,
    has_more: bool,
    next_cursor: Option<String>,
    /// Present only when some stored item of the page could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreadable: Vec<String>,
}

impl<T: Serialize> ListBody<T> {
    /// The list envelope of `page`; `id` names the cursor of an item.
    pub fn new(page: Page<T>, id: impl Fn(&T) -> String) -> Self {
        let next_cursor = if page.has_more {
            // The oldest item of the page, readable or not (ids of one kind sort by age).
            page.data
                .last()
                .map(&id)
                .into_iter()
                .chain(page.unreadable.last().cloned())
                .min()
        } else {
            None
        };
        Self {
            object: "list",
            data: page.data,
            has_more: page.has_more,
            next_cursor,
            unreadable: page.unreadable,
        }
    }
}

/// A client ID (documentation of the shape `mandate_domain::model::Client` serializes to).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientView {
    /// `cli_…`
    #[schema(value_type = schemas::ClientId)]
    pub id: String,
    /// Always `client_id`.
    pub object: String,
    /// The delegating destination.
    #[schema(value_type = schemas::DestinationId)]
    pub destination_id: String,
    /// The orchestrator it is issued to.
    #[schema(value_type = schemas::OrchestratorId)]
    pub orchestrator_id: String,
    /// Free text for the issuer.
    pub label: Option<String>,
    /// Its permissions, sorted.
    #[schema(value_type = Vec<schemas::Permission>)]
    pub permissions: Vec<String>,
    /// For an agent's client ID (created by approving a claim): the agent's key, its only
    /// credential; `null` otherwise.
    pub agent_public_key: Option<String>,
    /// Bumped by every change.
    pub version: u64,
    /// `active` or `revoked` (permanent).
    #[schema(value_type = schemas::ClientStatus)]
    pub status: String,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
    /// RFC 3339, UTC.
    pub updated_at: DateTime<Utc>,
}

/// A payment request (documentation of the shape `mandate_domain::payments::PaymentRequest`
/// serializes to).
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentRequestView {
    /// `req_…`
    #[schema(value_type = schemas::RequestId)]
    pub id: String,
    /// Always `payment_request`.
    pub object: String,
    /// The destination receiving or paying.
    #[schema(value_type = schemas::DestinationId)]
    pub destination_id: String,
    /// `incoming` or `outgoing`.
    #[schema(value_type = schemas::Direction)]
    pub direction: String,
    /// Decimal string, exact.
    #[schema(value_type = schemas::Amount)]
    pub amount: String,
    /// Currency or asset code.
    #[schema(value_type = schemas::Currency)]
    pub currency: String,
    /// Decimal string; may exceed `amount` after an overpayment.
    #[schema(value_type = schemas::AmountTotal)]
    pub amount_paid: String,
    /// `open`, `partially_paid`, `paid`, `cancelled` or `expired`.
    #[schema(value_type = schemas::PaymentRequestStatus)]
    pub status: String,
    /// A customer of the organization's pool.
    #[schema(value_type = Option<schemas::CustomerId>)]
    pub customer_id: Option<String>,
    /// The payer's reference.
    pub reference: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// When payment is due.
    pub due_at: Option<DateTime<Utc>>,
    /// When it expires if not completed.
    pub expires_at: Option<DateTime<Utc>>,
    /// String pairs.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The id of the principal that created it.
    pub created_by: String,
    /// The client ID it was created through; null when an owner created it.
    #[schema(value_type = Option<schemas::ClientId>)]
    pub client_id: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
    /// RFC 3339, UTC.
    pub updated_at: DateTime<Utc>,
}

/// A reported payment (documentation of the shape `mandate_domain::payments::Payment`
/// serializes to).
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    /// `pay_…`
    #[schema(value_type = schemas::PaymentId)]
    pub id: String,
    /// Always `payment`.
    pub object: String,
    /// The request paid.
    #[schema(value_type = schemas::RequestId)]
    pub request_id: String,
    /// The request's destination.
    #[schema(value_type = schemas::DestinationId)]
    pub destination_id: String,
    /// Decimal string.
    #[schema(value_type = schemas::Amount)]
    pub amount: String,
    /// The settlement's reference.
    pub reference: String,
    /// When the money moved.
    pub paid_at: DateTime<Utc>,
    /// The id of the principal that reported it.
    pub created_by: String,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
}

/// A payment and the request after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentRecorded {
    /// The payment.
    #[schema(value_type = PaymentView)]
    pub payment: Payment,
    /// The request, updated.
    #[schema(value_type = PaymentRequestView)]
    pub payment_request: PaymentRequest,
}

/// A new payment link: share `url` with the payer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentLinkCreated {
    /// `plink_…`
    pub id: String,
    /// Always `payment_link`.
    pub object: &'static str,
    /// The public page; the token in it is shown only now.
    pub url: String,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
    /// What would stop the payer from paying through the link; empty when nothing does.
    pub warnings: Vec<PaymentLinkWarning>,
}

/// Why a payer could not pay through a new link as it stands. The link works all the same:
/// its page shows the destination as it is when opened, so fixing the cause fixes the link.
#[derive(Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct PaymentLinkWarning {
    /// `NO_PAYMENT_ADDRESS`: the destination has no `payment_address` to show.
    pub code: &'static str,
    /// The destination's field to set.
    pub field: &'static str,
    /// What the payer sees and how to fix it.
    pub message: &'static str,
}

impl PaymentLinkWarning {
    /// The destination gives the payer nowhere to send the money.
    pub const NO_PAYMENT_ADDRESS: Self = Self {
        code: "NO_PAYMENT_ADDRESS",
        field: "payment_address",
        message: "the destination has no payment_address: the page asks the payer to contact \
                  the destination instead; set one with PATCH /v1/destinations/{id} and the link \
                  shows it",
    };
}

/// A claim (documentation of the shape `mandate_domain::claims::Claim` serializes to).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimView {
    /// `clm_…`
    #[schema(value_type = schemas::ClaimId)]
    pub id: String,
    /// Always `claim`.
    pub object: String,
    /// The destination the agent wants to act for.
    #[schema(value_type = schemas::DestinationId)]
    pub destination_id: String,
    /// The destination's slug, as submitted.
    #[schema(value_type = schemas::Slug)]
    pub namespace: String,
    /// The submitting orchestrator.
    #[schema(value_type = schemas::OrchestratorId)]
    pub orchestrator_id: String,
    /// The submitting orchestrator's slug.
    #[schema(value_type = schemas::Slug)]
    pub service: String,
    /// `ed25519:<base64>`: the agent's key.
    pub public_key: String,
    /// The agent's id within the service.
    pub agent_id: String,
    /// The agent's display name.
    pub agent_name: String,
    /// Whom the agent acts for, if the service says.
    pub subject: Option<String>,
    /// The agent's address, as the service reports it.
    pub ip_address: String,
    /// Requested permissions; after approval, the granted ones.
    #[schema(value_type = Vec<schemas::Permission>)]
    pub permissions: Vec<String>,
    /// `pending`, `approved`, `rejected`, `revoked` or `expired`.
    #[schema(value_type = schemas::ClaimStatus)]
    pub status: String,
    /// The agent's client ID, once approved.
    #[schema(value_type = Option<schemas::ClientId>)]
    pub client_id: Option<String>,
    /// When a pending claim expires undecided.
    pub pending_expires_at: DateTime<Utc>,
    /// When an approval ends, if limited.
    pub expires_at: Option<DateTime<Utc>>,
    /// `queued` or `recorded`: whether the last approval or revocation is in the ledger.
    pub ledger_status: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
    /// RFC 3339, UTC.
    pub updated_at: DateTime<Utc>,
    /// Only in the data of `claim.submitted` events: the claim's page in the owner's console
    /// (`<public_url>/console/claims/<id>`), where the destination's owner decides.
    #[schema(format = "uri")]
    pub review_url: Option<String>,
}

/// A ledger entry (documentation of the shape `mandate_domain::claims::LedgerEntry`
/// serializes to).
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntryView {
    /// 1, 2, 3… within the organization.
    pub seq: u64,
    /// The organization whose chain this is.
    #[schema(value_type = schemas::OrganizationId)]
    pub organization_id: String,
    /// The claim's destination.
    #[schema(value_type = schemas::DestinationId)]
    pub destination_id: String,
    /// The claim.
    #[schema(value_type = schemas::ClaimId)]
    pub claim_id: String,
    /// `approved`, `revoked` or `expired`.
    pub action: String,
    /// The agent's key.
    pub public_key: String,
    /// RFC 3339, UTC.
    pub at: DateTime<Utc>,
    /// The previous entry's hash (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 of `prev_hash` followed by the canonical entry, hex.
    pub hash: String,
}
