//! The organization's shared customer pool.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use mandate_domain::ids::CustomerId;
use mandate_domain::usecases::{CustomerChanges, NewCustomer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::input::{Json, Query, list_params, path_id};
use crate::pipeline::Authenticated;
use crate::schemas;
use crate::state::State;
use crate::views::{ListBody, list_schema};

/// Body of `POST /v1/customers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// Unique in the organization, compared without regard to case.
    pub email: Option<String>,
    /// ≤ 200 characters.
    pub name: Option<String>,
    /// ≤ 20 string pairs.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Body of `PATCH /v1/customers/{id}`: only the fields sent change; `null` clears.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    /// New email; `null` clears it.
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    /// New name; `null` clears it.
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    /// Replaces the metadata.
    pub metadata: Option<BTreeMap<String, String>>,
}

list_params! {
    /// `?email=` on top of the list parameters.
    pub struct CustomerListParams {
        /// Only the customer with this email (compared without regard to case).
        pub email: Option<String>,
    }
}

/// A customer (documentation of the shape `mandate_domain::customers::Customer` serializes to).
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerView {
    /// `cus_…`
    #[schema(value_type = schemas::CustomerId)]
    pub id: String,
    /// Always `customer`.
    pub object: String,
    /// Unique in the organization.
    pub email: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// String pairs.
    pub metadata: BTreeMap<String, String>,
    /// The id of the principal that created it.
    pub created_by: String,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
    /// RFC 3339, UTC.
    pub updated_at: DateTime<Utc>,
}

list_schema!(
    /// A page of customers.
    CustomerList,
    CustomerView
);

fn customer_id(text: &str) -> Result<CustomerId, ApiError> {
    path_id(text, CustomerId::parse)
}

/// Adds a customer to the organization's pool; 409 with `details.existing_id` when the email
/// is taken.
#[utoipa::path(post, path = "/v1/customers", tag = "customers", request_body = CreateCustomer,
    responses((status = 201, body = CustomerView),
        (status = 409, description = "email taken; details.existing_id names the customer", body = ErrorEnvelope)))]
pub async fn create(
    state: State,
    Authenticated(principal): Authenticated,
    body: Json<CreateCustomer>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let input = NewCustomer {
        email: body.email,
        name: body.name,
        metadata: body.metadata,
    };
    let customer = state
        .mandate
        .create_customer(&principal, input, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Created().json(&customer))
}

/// Lists the organization's customers, newest first.
#[utoipa::path(get, path = "/v1/customers", tag = "customers", params(CustomerListParams),
    responses((status = 200, body = CustomerList)))]
pub async fn list(
    state: State,
    Authenticated(principal): Authenticated,
    params: Query<CustomerListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let page = params.page(CustomerId::parse)?;
    let customers = state
        .mandate
        .list_customers(&principal, params.email.as_deref(), &page)
        .await?;
    Ok(HttpResponse::Ok().json(ListBody::new(customers, |customer| customer.id.to_string())))
}

/// Reads one customer.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "cus_…")),
    responses((status = 200, body = CustomerView)))]
pub async fn get(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let customer = state
        .mandate
        .customer(&principal, &customer_id(&id)?)
        .await?;
    Ok(HttpResponse::Ok().json(&customer))
}

/// Changes a customer.
#[utoipa::path(patch, path = "/v1/customers/{id}", tag = "customers", request_body = UpdateCustomer,
    params(("id" = String, Path, description = "cus_…")),
    responses((status = 200, body = CustomerView), (status = 409, body = ErrorEnvelope)))]
pub async fn update(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    body: Json<UpdateCustomer>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let changes = CustomerChanges {
        email: body.email,
        name: body.name,
        metadata: body.metadata,
    };
    let customer = state
        .mandate
        .update_customer(
            &principal,
            &customer_id(&id)?,
            changes,
            mandate_domain::now(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(&customer))
}

/// Deletes a customer; requests that named it keep its id.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "cus_…")),
    responses((status = 200, body = CustomerView)))]
pub async fn delete(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let customer = state
        .mandate
        .delete_customer(&principal, &customer_id(&id)?, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Ok().json(&customer))
}
