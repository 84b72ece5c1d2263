//! The customer pool of an organization: shared by its platform key, its destinations' keys,
//! and clients holding `customers:read` / `customers:write`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::requests::check_metadata;
use super::{InvalidField, Mandate, principal_id};
use crate::customers::{Customer, Email};
use crate::events::{Audience, Event, EventType};
use crate::ids::{CustomerId, OrganizationId};
use crate::policy::{Action, Decision, Resource, authorize};
use crate::ports::{Page, PageRequest, StoreError};
use crate::principal::Principal;
use crate::values::Permission;

/// Input of [`Mandate::create_customer`].
#[derive(Debug, Clone, Default)]
pub struct NewCustomer {
    /// Unique in the organization, compared without regard to case.
    pub email: Option<String>,
    /// ≤ 200 characters.
    pub name: Option<String>,
    /// ≤ 20 pairs.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Input of [`Mandate::update_customer`]: only the fields present change; `Some(None)` clears.
#[derive(Debug, Clone, Default)]
pub struct CustomerChanges {
    /// New email, or `Some(None)` to clear it.
    pub email: Option<Option<String>>,
    /// New name, or `Some(None)` to clear it.
    pub name: Option<Option<String>>,
    /// New metadata (replaces the old).
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Errors of the customer use cases.
#[derive(Debug, thiserror::Error)]
pub enum CustomerError {
    /// No such customer in the caller's organization.
    #[error("not found")]
    NotFound,
    /// The credential has no customer pool.
    #[error("this credential has no customer pool")]
    Forbidden,
    /// The caller (a client ID) lacks the permission.
    #[error("this client ID lacks the {0} permission")]
    MissingPermission(Permission),
    /// Another customer of the organization has this email.
    #[error("a customer with this email already exists")]
    Duplicate {
        /// That customer.
        existing_id: CustomerId,
    },
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn email_field(value: &str) -> Result<Email, InvalidField> {
    Email::parse(value).map_err(|invalid| InvalidField {
        field: "email",
        reason: invalid.0,
    })
}

fn name_field(value: &str) -> Result<String, InvalidField> {
    super::text_field("name", value, 200, "must be 1-200 characters")
}

fn audience(customer: &Customer) -> Audience {
    Audience {
        organization_id: Some(customer.organization_id.clone()),
        ..Audience::default()
    }
}

impl Mandate {
    /// The caller's organization, once `action` on its pool is allowed.
    fn pool_of(principal: &Principal, action: Action) -> Result<&OrganizationId, CustomerError> {
        let organization_id = principal
            .organization_id()
            .ok_or(CustomerError::Forbidden)?;
        match authorize(principal, action, Resource::Organization(organization_id)) {
            Decision::Allow => Ok(organization_id),
            Decision::NotFound => Err(CustomerError::NotFound),
            Decision::Lacks(permission) => Err(CustomerError::MissingPermission(permission)),
            Decision::Forbidden => Err(CustomerError::Forbidden),
        }
    }

    /// A customer of the caller's organization, for `action`: a customer the caller may not
    /// read is not found; one it may read but not change is forbidden.
    async fn pool_customer(
        &self,
        principal: &Principal,
        id: &CustomerId,
        action: Action,
    ) -> Result<Customer, CustomerError> {
        let organization_id = match Self::pool_of(principal, Action::ReadCustomers) {
            Ok(organization_id) => organization_id,
            Err(CustomerError::Forbidden | CustomerError::MissingPermission(_)) => {
                return Err(CustomerError::NotFound);
            }
            Err(error) => return Err(error),
        };
        let customer = self
            .store
            .customer(id)
            .await?
            .ok_or(CustomerError::NotFound)?;
        if &customer.organization_id != organization_id {
            return Err(CustomerError::NotFound);
        }
        Self::pool_of(principal, action)?;
        Ok(customer)
    }

    async fn duplicate_of(&self, organization_id: &OrganizationId, email: &Email) -> CustomerError {
        match self.store.customer_by_email(organization_id, email).await {
            Ok(Some(existing)) => CustomerError::Duplicate {
                existing_id: existing.id,
            },
            Ok(None) => {
                CustomerError::Store(StoreError::Other("a conflicting customer vanished".into()))
            }
            Err(error) => CustomerError::Store(error),
        }
    }

    /// Adds a customer to the caller's organization's pool.
    pub async fn create_customer(
        &self,
        principal: &Principal,
        input: NewCustomer,
        now: DateTime<Utc>,
    ) -> Result<Customer, CustomerError> {
        let organization_id = Self::pool_of(principal, Action::WriteCustomers)?.clone();
        let customer = Customer {
            id: CustomerId::generate(),
            organization_id,
            email: input.email.as_deref().map(email_field).transpose()?,
            name: input.name.as_deref().map(name_field).transpose()?,
            metadata: check_metadata(input.metadata)?,
            created_by: principal_id(principal),
            created_at: now,
            updated_at: now,
        };
        let event = Event::new(
            EventType::CustomerCreated,
            audience(&customer),
            &customer,
            now,
        );
        match self.store.insert_customer(&customer, &event).await {
            Ok(()) => Ok(customer),
            Err(StoreError::Duplicate) => match &customer.email {
                Some(email) => Err(self.duplicate_of(&customer.organization_id, email).await),
                None => Err(StoreError::Duplicate.into()),
            },
            Err(error) => Err(error.into()),
        }
    }

    /// One customer of the caller's organization.
    pub async fn customer(
        &self,
        principal: &Principal,
        id: &CustomerId,
    ) -> Result<Customer, CustomerError> {
        self.pool_customer(principal, id, Action::ReadCustomers)
            .await
    }

    /// The caller's organization's customers, optionally only the one with `email`.
    pub async fn list_customers(
        &self,
        principal: &Principal,
        email: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Customer>, CustomerError> {
        let organization_id = Self::pool_of(principal, Action::ReadCustomers)?;
        let email = email.map(email_field).transpose()?;
        Ok(self
            .store
            .list_customers(organization_id, email.as_ref(), page)
            .await?)
    }

    /// Changes a customer.
    pub async fn update_customer(
        &self,
        principal: &Principal,
        id: &CustomerId,
        changes: CustomerChanges,
        now: DateTime<Utc>,
    ) -> Result<Customer, CustomerError> {
        let mut customer = self
            .pool_customer(principal, id, Action::WriteCustomers)
            .await?;
        if let Some(email) = changes.email {
            customer.email = email.as_deref().map(email_field).transpose()?;
        }
        if let Some(name) = changes.name {
            customer.name = name.as_deref().map(name_field).transpose()?;
        }
        if let Some(metadata) = changes.metadata {
            customer.metadata = check_metadata(Some(metadata))?;
        }
        customer.updated_at = now;
        let event = Event::new(
            EventType::CustomerUpdated,
            audience(&customer),
            &customer,
            now,
        );
        match self.store.update_customer(&customer, &event).await {
            Ok(()) => Ok(customer),
            Err(StoreError::Duplicate) => match &customer.email {
                Some(email) => Err(self.duplicate_of(&customer.organization_id, email).await),
                None => Err(StoreError::Duplicate.into()),
            },
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes a customer; requests that named it keep its id.
    pub async fn delete_customer(
        &self,
        principal: &Principal,
        id: &CustomerId,
        now: DateTime<Utc>,
    ) -> Result<Customer, CustomerError> {
        let customer = self
            .pool_customer(principal, id, Action::WriteCustomers)
            .await?;
        let event = Event::new(
            EventType::CustomerDeleted,
            audience(&customer),
            &customer,
            now,
        );
        if self.store.delete_customer(id, &event).await? {
            Ok(customer)
        } else {
            Err(CustomerError::NotFound)
        }
    }
}
