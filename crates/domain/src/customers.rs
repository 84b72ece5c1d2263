//! Customers: one shared pool per organization (the provider), usable by the requests of any
//! of its destinations (the processors).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{CustomerId, OrganizationId};
use crate::values::InvalidValue;

/// A payer or payee record; it serializes to its API shape (`object: "customer"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "object", rename = "customer")]
pub struct Customer {
    /// `cus_…`
    pub id: CustomerId,
    /// The organization whose pool holds it.
    #[serde(skip)]
    pub organization_id: OrganizationId,
    /// Unique in the organization, compared without regard to case.
    pub email: Option<Email>,
    /// Display name, ≤ 200 characters.
    pub name: Option<String>,
    /// ≤ 20 string pairs.
    pub metadata: BTreeMap<String, String>,
    /// The id of the principal that created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// An email address as given, with its case-insensitive key for uniqueness.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct Email(String);

impl Email {
    /// A light syntactic check (`local@domain`, ≤ 254 characters, no spaces): deliverability
    /// is the mail system's business.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        const RULE: InvalidValue = InvalidValue("must be an email address like name@example.com");
        let value = value.trim();
        let valid = value.len() <= 254
            && !value.chars().any(char::is_whitespace)
            && !value.chars().any(crate::usecases::is_unsafe_text_char)
            && matches!(value.split_once('@'), Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@')
                    && !domain.starts_with('.') && !domain.ends_with('.'));
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(RULE)
        }
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key uniqueness is decided on: the address in lower case.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, InvalidValue> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(email: Email) -> String {
        email.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_compare_without_case_and_bad_ones_are_refused() {
        let one = Email::parse("Ada@Example.com").unwrap();
        let two = Email::parse(" ada@example.COM ").unwrap();
        assert_eq!(one.normalized(), two.normalized());
        assert_eq!(one.as_str(), "Ada@Example.com");
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "a b@example.com",
            "a@b@c",
            "ada@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
