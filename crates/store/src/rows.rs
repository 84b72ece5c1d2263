//! What every aggregate's rows share: conversions of column values to and from the domain's
//! types. Reading a row that breaks a domain rule (a malformed id or slug, an unknown key kind)
//! is an error, never a panic; the tests below show it for the rows of several aggregates.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

use crate::errors::Error;

/// UTC without a zone, cut to microseconds: PostgreSQL keeps no more, so SQLite keeps the same.
pub(crate) fn to_naive(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc().trunc_subsecs(6)
}

pub(crate) fn to_utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

pub(crate) fn parsed<T, E: std::fmt::Display>(
    what: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, Error> {
    parse(value)
        .map_err(|error| Error::Data(format!("stored {what} {value:?} is invalid: {error}")))
}

pub(crate) fn to_i32(what: &str, value: u32) -> Result<i32, Error> {
    i32::try_from(value).map_err(|_| Error::Data(format!("{what} {value} is out of range")))
}

pub(crate) fn to_u32(what: &str, value: i32) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| Error::Data(format!("stored {what} {value} is out of range")))
}

pub(crate) fn to_i64(what: &str, value: u64) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::Data(format!("{what} {value} is out of range")))
}

pub(crate) fn to_u64(what: &str, value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Data(format!("stored {what} {value} is out of range")))
}

pub(crate) fn optional<T, E: std::fmt::Display>(
    what: &str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, Error> {
    value.map(|value| parsed(what, value, parse)).transpose()
}

/// Enum columns: parsing returns `None` for an unknown spelling.
pub(crate) fn known<T>(
    what: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, Error> {
    parse(value).ok_or_else(|| Error::Data(format!("stored {what} {value:?} is unknown")))
}

#[cfg(test)]
mod tests {
    use mandate_domain::events::Event;
    use mandate_domain::ids::{
        ClientId, DestinationId, EventId, KeyId, OrchestratorId, OrganizationId, RequestId,
    };
    use mandate_domain::model::{ApiKey, Client, Orchestrator};
    use mandate_domain::payments::PaymentRequest;
    use mandate_domain::values::{Permission, PermissionSet};

    use super::*;
    use crate::clients::{ClientRow, permission_set, permissions_text};
    use crate::events::EventRow;
    use crate::orchestrators::OrchestratorRow;
    use crate::organizations::KeyRow;
    use crate::requests::RequestRow;

    #[test]
    fn rows_that_break_domain_rules_are_errors() {
        let row = KeyRow {
            id: KeyId::generate().to_string(),
            kind: "admin".into(),
            organization_id: None,
            destination_id: None,
            orchestrator_id: None,
            key_hash: "h".into(),
            prefix: "p".into(),
            created_at: to_naive(Utc::now()),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
        };
        assert!(matches!(ApiKey::try_from(row), Err(Error::Data(_))));
        let row = OrchestratorRow {
            id: OrchestratorId::generate().to_string(),
            slug: "Not A Slug".into(),
            name: "n".into(),
            created_at: to_naive(Utc::now()),
        };
        assert!(matches!(Orchestrator::try_from(row), Err(Error::Data(_))));
    }

    fn request_row() -> RequestRow {
        let at = to_naive(Utc::now());
        RequestRow {
            id: RequestId::generate().to_string(),
            organization_id: OrganizationId::generate().to_string(),
            destination_id: DestinationId::generate().to_string(),
            direction: "incoming".into(),
            amount: "12.5".into(),
            currency: "USD".into(),
            amount_paid: "0".into(),
            status: "open".into(),
            customer_id: None,
            reference: None,
            description: None,
            due_at: None,
            expires_at: None,
            metadata: "{}".into(),
            created_by: "dst_x".into(),
            client_id: None,
            version: 1,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn payment_rows_that_break_domain_rules_are_errors() {
        assert!(PaymentRequest::try_from(request_row()).is_ok());
        let broken: [fn(&mut RequestRow); 6] = [
            |row| row.amount = "12.5e0".into(),
            |row| row.amount_paid = "-1".into(),
            |row| row.status = "refunded".into(),
            |row| row.direction = "sideways".into(),
            |row| row.metadata = "[1]".into(),
            |row| row.version = -1,
        ];
        for breakage in broken {
            let mut row = request_row();
            breakage(&mut row);
            assert!(matches!(PaymentRequest::try_from(row), Err(Error::Data(_))));
        }
        let at = to_naive(Utc::now());
        let client = ClientRow {
            id: ClientId::generate().to_string(),
            organization_id: OrganizationId::generate().to_string(),
            destination_id: DestinationId::generate().to_string(),
            orchestrator_id: OrchestratorId::generate().to_string(),
            label: None,
            permissions: "create:incoming read:everything".into(),
            version: 1,
            status: "active".into(),
            created_at: at,
            updated_at: at,
            agent_public_key: None,
        };
        assert!(matches!(Client::try_from(client), Err(Error::Data(_))));
        let event = EventRow {
            id: EventId::generate().to_string(),
            organization_id: None,
            destination_id: None,
            orchestrator_id: None,
            client_id: None,
            direction: None,
            event_type: "payment_request.refunded".into(),
            data: "{}".into(),
            created_at: at,
            endpoint_id: None,
            family: "payment_request".into(),
            fanned_out: false,
        };
        assert!(matches!(Event::try_from(event), Err(Error::Data(_))));
    }

    #[test]
    fn permissions_are_stored_sorted_and_read_back() {
        let set: PermissionSet = [Permission::ReadOutgoing, Permission::CreateIncoming]
            .into_iter()
            .collect();
        assert_eq!(permissions_text(&set), "create:incoming read:outgoing");
        assert_eq!(
            permission_set("read:outgoing create:incoming").ok(),
            Some(set)
        );
        assert_eq!(permission_set("").ok(), Some(PermissionSet::default()));
    }

    /// The endpoint list of a narrowed credential matches stored scopes with `LIKE`: that is
    /// exact only while no permission's name is part of another's.
    #[test]
    fn no_permission_name_is_part_of_another() {
        for one in Permission::ALL {
            for other in Permission::ALL {
                assert!(one == other || !other.as_str().contains(one.as_str()));
            }
        }
    }
}
