//! Payment requests, their payments and payment links, with the request's status machine:
//! `open → partially_paid → paid`, `open | partially_paid → cancelled | expired`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::EventType;
use crate::ids::{ClientId, DestinationId, OrganizationId, PaymentId, PaymentLinkId, RequestId};
use crate::values::{Amount, Currency, Permission, Total};

/// Money to be received or paid out by a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Money the destination receives.
    Incoming,
    /// Money the destination pays out.
    Outgoing,
}

impl Direction {
    /// Both directions.
    pub const ALL: [Direction; 2] = [Direction::Incoming, Direction::Outgoing];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }

    /// Parses the API spelling.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|direction| direction.as_str() == value)
    }

    /// The permission a client needs to create requests of this direction.
    pub fn create_permission(self) -> Permission {
        match self {
            Direction::Incoming => Permission::CreateIncoming,
            Direction::Outgoing => Permission::CreateOutgoing,
        }
    }

    /// The permission a client needs to read every request of this direction.
    pub fn read_permission(self) -> Permission {
        match self {
            Direction::Incoming => Permission::ReadIncoming,
            Direction::Outgoing => Permission::ReadOutgoing,
        }
    }
}

/// Where a payment request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Nothing paid yet.
    Open,
    /// Some paid, less than the amount.
    PartiallyPaid,
    /// The amount (or more) paid.
    Paid,
    /// Cancelled before completion.
    Cancelled,
    /// Its `expires_at` passed before completion.
    Expired,
}

impl RequestStatus {
    /// Every status.
    pub const ALL: [RequestStatus; 5] = [
        RequestStatus::Open,
        RequestStatus::PartiallyPaid,
        RequestStatus::Paid,
        RequestStatus::Cancelled,
        RequestStatus::Expired,
    ];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Open => "open",
            RequestStatus::PartiallyPaid => "partially_paid",
            RequestStatus::Paid => "paid",
            RequestStatus::Cancelled => "cancelled",
            RequestStatus::Expired => "expired",
        }
    }

    /// Parses the API spelling.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    /// Whether the request still waits for money (and so may be cancelled or expire).
    pub fn is_pending(self) -> bool {
        matches!(self, RequestStatus::Open | RequestStatus::PartiallyPaid)
    }
}

/// A payment request; it serializes to its API shape (`object: "payment_request"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "object", rename = "payment_request")]
pub struct PaymentRequest {
    /// `req_…`
    pub id: RequestId,
    /// The destination's organization.
    #[serde(skip)]
    pub organization_id: OrganizationId,
    /// The destination receiving or paying.
    pub destination_id: DestinationId,
    /// Incoming or outgoing.
    pub direction: Direction,
    /// What is asked.
    pub amount: Amount,
    /// In what.
    pub currency: Currency,
    /// What has been reported paid so far (may exceed `amount`).
    pub amount_paid: Total,
    /// Where it stands.
    pub status: RequestStatus,
    /// The payer or payee, from the organization's customer pool.
    pub customer_id: Option<String>,
    /// The payer's reference, ≤ 128 characters.
    pub reference: Option<String>,
    /// Free text, ≤ 1000 characters.
    pub description: Option<String>,
    /// When payment is due (informational).
    pub due_at: Option<DateTime<Utc>>,
    /// When it expires if not completed.
    pub expires_at: Option<DateTime<Utc>>,
    /// ≤ 20 string pairs.
    pub metadata: BTreeMap<String, String>,
    /// The id of the principal that created it (`cli_…`, `dst_…` or `org_…`).
    pub created_by: String,
    /// The client ID it was created through; `None` when an owner created it.
    pub client_id: Option<ClientId>,
    /// Bumped by every change, for optimistic concurrency.
    #[serde(skip)]
    pub version: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Why a payment cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRefused {
    /// The request was cancelled or expired.
    #[error("the request is {0}: it accepts no payments")]
    Closed(&'static str),
    /// The total would leave the representable range.
    #[error("the total paid would be too large")]
    Overflow,
}

/// Why a request cannot be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request is {0}: only open or partially paid requests can be cancelled")]
pub struct NotCancellable(pub &'static str);

impl PaymentRequest {
    fn changed(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = now;
    }

    /// Records a payment: `.partially_paid` while short of the amount, `.paid` once it is
    /// reached (again for every later excess payment).
    pub fn record_payment(
        &mut self,
        amount: Amount,
        now: DateTime<Utc>,
    ) -> Result<EventType, PaymentRefused> {
        if !matches!(
            self.status,
            RequestStatus::Open | RequestStatus::PartiallyPaid | RequestStatus::Paid
        ) {
            return Err(PaymentRefused::Closed(self.status.as_str()));
        }
        self.amount_paid = self
            .amount_paid
            .plus(amount)
            .ok_or(PaymentRefused::Overflow)?;
        let event = if self.amount_paid.covers(self.amount) {
            self.status = RequestStatus::Paid;
            EventType::PaymentRequestPaid
        } else {
            self.status = RequestStatus::PartiallyPaid;
            EventType::PaymentRequestPartiallyPaid
        };
        self.changed(now);
        Ok(event)
    }

    /// Cancels an open or partially paid request.
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<EventType, NotCancellable> {
        if !self.status.is_pending() {
            return Err(NotCancellable(self.status.as_str()));
        }
        self.status = RequestStatus::Cancelled;
        self.changed(now);
        Ok(EventType::PaymentRequestCancelled)
    }

    /// Expires the request when its `expires_at` has passed and it is still pending.
    pub fn expire_if_due(&mut self, now: DateTime<Utc>) -> Option<EventType> {
        let due = self.expires_at.is_some_and(|expires_at| expires_at <= now);
        if !(due && self.status.is_pending()) {
            return None;
        }
        self.status = RequestStatus::Expired;
        self.changed(now);
        Some(EventType::PaymentRequestExpired)
    }
}

/// A reported settlement against a payment request (`object: "payment"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "object", rename = "payment")]
pub struct Payment {
    /// `pay_…`
    pub id: PaymentId,
    /// The request paid.
    pub request_id: RequestId,
    /// The request's organization.
    #[serde(skip)]
    pub organization_id: OrganizationId,
    /// The request's destination.
    pub destination_id: DestinationId,
    /// How much.
    pub amount: Amount,
    /// The settlement's reference (a transaction hash, a bank reference), ≤ 256 characters.
    pub reference: String,
    /// When the money moved, as reported.
    pub paid_at: DateTime<Utc>,
    /// The id of the principal that reported it.
    pub created_by: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// An unguessable, expiring public link to one payment request; only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentLink {
    /// `plink_…`
    pub id: PaymentLinkId,
    /// The request shown.
    pub request_id: RequestId,
    /// The request's organization.
    pub organization_id: OrganizationId,
    /// The request's destination.
    pub destination_id: DestinationId,
    /// Keyed hash of the token.
    pub token_hash: String,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl PaymentLink {
    /// Lifetime when the creator names none: 7 days.
    pub const DEFAULT_LIFETIME_SECONDS: i64 = 7 * 24 * 3600;
    /// Longest lifetime: 30 days.
    pub const MAX_LIFETIME_SECONDS: i64 = 30 * 24 * 3600;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_request(amount: &str) -> PaymentRequest {
        let now = Utc::now();
        PaymentRequest {
            id: RequestId::generate(),
            organization_id: OrganizationId::generate(),
            destination_id: DestinationId::generate(),
            direction: Direction::Incoming,
            amount: Amount::parse(amount).unwrap(),
            currency: Currency::parse("USD").unwrap(),
            amount_paid: Total::ZERO,
            status: RequestStatus::Open,
            customer_id: None,
            reference: None,
            description: None,
            due_at: None,
            expires_at: None,
            metadata: BTreeMap::new(),
            created_by: "dst_x".into(),
            client_id: None,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    fn pay(request: &mut PaymentRequest, amount: &str) -> Result<EventType, PaymentRefused> {
        request.record_payment(Amount::parse(amount).unwrap(), Utc::now())
    }

    #[test]
    fn partial_then_full_then_excess_payments() {
        let mut request = open_request("10");
        assert_eq!(
            pay(&mut request, "4.5"),
            Ok(EventType::PaymentRequestPartiallyPaid)
        );
        assert_eq!(request.status, RequestStatus::PartiallyPaid);
        assert_eq!(pay(&mut request, "5.5"), Ok(EventType::PaymentRequestPaid));
        assert_eq!(
            (request.status, request.amount_paid.to_string()),
            (RequestStatus::Paid, "10".into())
        );
        assert_eq!(pay(&mut request, "0.25"), Ok(EventType::PaymentRequestPaid));
        assert_eq!(request.amount_paid.to_string(), "10.25");
        assert_eq!(request.version, 4);
    }

    #[test]
    fn one_full_payment_emits_only_paid() {
        let mut request = open_request("3");
        assert_eq!(pay(&mut request, "3"), Ok(EventType::PaymentRequestPaid));
    }

    #[test]
    fn closed_requests_take_no_payments_and_cannot_be_cancelled_twice() {
        let mut request = open_request("3");
        assert_eq!(
            request.cancel(Utc::now()),
            Ok(EventType::PaymentRequestCancelled)
        );
        assert_eq!(
            pay(&mut request, "1"),
            Err(PaymentRefused::Closed("cancelled"))
        );
        assert_eq!(request.cancel(Utc::now()), Err(NotCancellable("cancelled")));
        let mut paid = open_request("1");
        pay(&mut paid, "1").unwrap();
        assert!(paid.cancel(Utc::now()).is_err());
    }

    #[test]
    fn expiry_applies_only_to_pending_requests_past_their_time() {
        let now = Utc::now();
        let mut request = open_request("3");
        assert_eq!(request.expire_if_due(now), None);
        request.expires_at = Some(now);
        assert_eq!(
            request.expire_if_due(now - chrono::Duration::seconds(1)),
            None
        );
        assert_eq!(
            request.expire_if_due(now),
            Some(EventType::PaymentRequestExpired)
        );
        assert_eq!(request.status, RequestStatus::Expired);
        assert_eq!(request.expire_if_due(now), None);
        assert_eq!(
            pay(&mut request, "1"),
            Err(PaymentRefused::Closed("expired"))
        );
    }
}
