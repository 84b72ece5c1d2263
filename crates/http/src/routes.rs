//! The route table: every route, its operation id, the principal kinds it admits, what it
//! reads by id, and its handler, declared once. Registration, the authentication pipeline and the OpenAPI document
//! (operation ids, security, the headers and statuses the pipeline adds) are all generated
//! from this one table, so a route cannot exist without its admission rule.

use std::sync::LazyLock;

use actix_web::dev::ResourceDef;
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::web;
use mandate_domain::principal::PrincipalKind::{
    self, Admin, Client, Destination, Orchestrator, Platform,
};

use crate::handlers::{
    admin, claims, clients, customers, destinations, health, oauth, orchestrator, organization,
    pay, requests, webhooks,
};
use crate::pipeline::{self, Admits, Reads};

/// One row of the route table.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The path template, as in the OpenAPI document.
    pub path: &'static str,
    /// The OpenAPI `operationId`: unique, stable, lowerCamelCase (`createPaymentRequest`).
    /// Generated clients name their methods after it, so it never changes once published.
    pub operation_id: &'static str,
    /// Who may call it.
    pub admits: Admits,
    /// What it reads by the id in its path, read with the credential.
    pub reads: Reads,
}

const fn kinds(kinds: &'static [PrincipalKind]) -> Admits {
    Admits::Kinds(kinds)
}

const fn signed_by_agent(kinds: &'static [PrincipalKind]) -> Admits {
    Admits::KindsSignedByAgent(kinds)
}

const PUBLIC: Admits = Admits::Public;

/// What a route row declares it reads: `reads Request` or nothing.
macro_rules! reads {
    () => {
        Reads::Nothing
    };
    ($resource:ident) => {
        Reads::$resource
    };
}

macro_rules! route_table {
    ($($method:ident $path:literal $(reads $resource:ident)? as $operation:ident => $admits:expr => $handler:path;)*) => {
        /// Every route of the API.
        pub const ROUTES: &[RouteSpec] = &[
            $(RouteSpec {
                method: stringify!($method),
                path: $path,
                operation_id: stringify!($operation),
                admits: $admits,
                reads: reads!($($resource)?),
            },)*
        ];

        /// Registers every route behind the authentication pipeline.
        pub fn register(config: &mut web::ServiceConfig) {
            $(
                config.route(
                    $path,
                    web::method(Method::$method)
                        .to($handler)
                        .wrap(from_fn(|request, next| {
                            pipeline::authenticate($admits, reads!($($resource)?), request, next)
                        })),
                );
            )*
        }

        /// The OpenAPI document's operations, from the same table.
        #[derive(utoipa::OpenApi)]
        #[openapi(paths($($handler),*))]
        pub struct Operations;
    };
}

/// The methods the route table has for `path` (a request's path), in table order.
pub fn methods_of(path: &str) -> Vec<&'static str> {
    static PATTERNS: LazyLock<Vec<(ResourceDef, &'static str)>> = LazyLock::new(|| {
        ROUTES
            .iter()
            .map(|route| (ResourceDef::new(route.path), route.method))
            .collect()
    });
    let mut methods: Vec<&'static str> = Vec::new();
    for (pattern, method) in PATTERNS.iter() {
        if pattern.is_match(path) && !methods.contains(method) {
            methods.push(method);
        }
    }
    methods
}

route_table! {
    GET "/healthz" as getHealth => PUBLIC => health::healthz;
    GET "/readyz" as getReadiness => PUBLIC => health::readyz;
    GET "/metrics" as getMetrics => PUBLIC => health::metrics;
    GET "/openapi.json" as getOpenApiDocument => PUBLIC => health::openapi;
    GET "/pay/{token}" as getPaymentPage => PUBLIC => pay::page;
    POST "/v1/oauth/token" as createAccessToken => PUBLIC => oauth::token;
    GET "/.well-known/jwks.json" as getJsonWebKeySet => PUBLIC => oauth::jwks;
    GET "/v1/event-types" as listEventTypes => PUBLIC => webhooks::event_types;
    GET "/.well-known/oauth-authorization-server" as getAuthorizationServerMetadata => PUBLIC => oauth::metadata;

    // The payment requests first: actix matches routes in this order, one pattern after the
    // other, and these are the busiest.
    POST "/v1/requests" as createPaymentRequest => kinds(&[Client, Platform, Destination]) => requests::create;
    GET "/v1/requests" as listPaymentRequests => kinds(&[Client, Platform, Destination]) => requests::list;
    GET "/v1/requests/{id}" reads Request as getPaymentRequest => kinds(&[Client, Platform, Destination]) => requests::get;
    POST "/v1/requests/{id}/cancel" as cancelPaymentRequest => kinds(&[Client, Platform, Destination]) => requests::cancel;
    POST "/v1/requests/{id}/payment-links" as createPaymentLink => kinds(&[Client, Platform, Destination]) => requests::create_payment_link;
    POST "/v1/requests/{id}/payments" as reportPayment => kinds(&[Client, Platform, Destination]) => requests::report_payment;

    POST "/v1/admin/organizations" as createOrganization => kinds(&[Admin]) => admin::create_organization;
    POST "/v1/admin/orchestrators" as createOrchestrator => kinds(&[Admin]) => admin::create_orchestrator;
    GET "/v1/admin/organizations" as listOrganizations => kinds(&[Admin]) => admin::list_organizations;
    GET "/v1/admin/orchestrators" as listOrchestrators => kinds(&[Admin]) => admin::list_orchestrators;

    GET "/v1/organization" as getOrganization => kinds(&[Platform]) => organization::get;
    POST "/v1/organization/keys" as createPlatformKey => kinds(&[Platform]) => organization::create_key;
    GET "/v1/organization/keys" as listPlatformKeys => kinds(&[Platform]) => organization::list_keys;
    DELETE "/v1/organization/keys/{key_id}" as revokePlatformKey => kinds(&[Platform]) => organization::revoke_key;

    POST "/v1/destinations" as createDestination => kinds(&[Platform]) => destinations::create;
    GET "/v1/destinations" as listDestinations => kinds(&[Platform, Destination]) => destinations::list;
    GET "/v1/destinations/{id}" as getDestination => kinds(&[Platform, Destination]) => destinations::get;
    PATCH "/v1/destinations/{id}" as updateDestination => kinds(&[Platform, Destination]) => destinations::update;
    POST "/v1/destinations/{id}/keys" as createDestinationKey => kinds(&[Platform, Destination]) => destinations::create_key;
    GET "/v1/destinations/{id}/keys" as listDestinationKeys => kinds(&[Platform, Destination]) => destinations::list_keys;
    DELETE "/v1/destinations/{id}/keys/{key_id}" as revokeDestinationKey => kinds(&[Platform, Destination]) => destinations::revoke_key;

    GET "/v1/orchestrator" as getOrchestrator => kinds(&[Orchestrator]) => orchestrator::get;
    POST "/v1/orchestrator/keys" as createOrchestratorKey => kinds(&[Orchestrator]) => orchestrator::create_key;
    DELETE "/v1/orchestrator/keys/{key_id}" as revokeOrchestratorKey => kinds(&[Orchestrator]) => orchestrator::revoke_key;

    POST "/v1/client-ids" as createClientId => kinds(&[Platform, Destination]) => clients::create;
    GET "/v1/client-ids" as listClientIds => kinds(&[Platform, Destination, Orchestrator]) => clients::list;
    GET "/v1/client-ids/{id}" as getClientId => kinds(&[Platform, Destination, Orchestrator]) => clients::get;
    POST "/v1/client-ids/{id}/permissions" as grantClientIdPermission => kinds(&[Platform, Destination]) => clients::grant;
    DELETE "/v1/client-ids/{id}/permissions/{permission}" as withdrawClientIdPermission => kinds(&[Platform, Destination]) => clients::withdraw;
    POST "/v1/client-ids/{id}/revoke" as revokeClientId => kinds(&[Platform, Destination]) => clients::revoke;

    POST "/v1/claims" as submitClaim => signed_by_agent(&[Orchestrator]) => claims::submit;
    GET "/v1/claims" as listClaims => kinds(&[Platform, Destination, Orchestrator]) => claims::list;
    GET "/v1/claims/{id}" as getClaim => kinds(&[Platform, Destination, Orchestrator]) => claims::get;
    POST "/v1/claims/{id}/approve" as approveClaim => kinds(&[Platform, Destination]) => claims::approve;
    POST "/v1/claims/{id}/reject" as rejectClaim => kinds(&[Platform, Destination]) => claims::reject;
    POST "/v1/claims/{id}/revoke" as revokeClaim => kinds(&[Platform, Destination]) => claims::revoke;
    GET "/v1/ledger" as listLedgerEntries => kinds(&[Platform, Destination]) => claims::ledger;
    GET "/v1/ledger/verify" as verifyLedger => kinds(&[Platform, Destination]) => claims::verify_ledger;

    POST "/v1/customers" as createCustomer => kinds(&[Platform, Destination, Client]) => customers::create;
    GET "/v1/customers" as listCustomers => kinds(&[Platform, Destination, Client]) => customers::list;
    GET "/v1/customers/{id}" as getCustomer => kinds(&[Platform, Destination, Client]) => customers::get;
    PATCH "/v1/customers/{id}" as updateCustomer => kinds(&[Platform, Destination, Client]) => customers::update;
    DELETE "/v1/customers/{id}" as deleteCustomer => kinds(&[Platform, Destination, Client]) => customers::delete;

    POST "/v1/webhook-endpoints" as createWebhookEndpoint => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::create;
    GET "/v1/webhook-endpoints" as listWebhookEndpoints => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::list;
    GET "/v1/webhook-endpoints/{id}" as getWebhookEndpoint => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::get;
    PATCH "/v1/webhook-endpoints/{id}" as updateWebhookEndpoint => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::update;
    DELETE "/v1/webhook-endpoints/{id}" as deleteWebhookEndpoint => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::delete;
    POST "/v1/webhook-endpoints/{id}/rotate-secret" as rotateWebhookEndpointSecret => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::rotate_secret;
    POST "/v1/webhook-endpoints/{id}/test" as testWebhookEndpoint => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::test;
    GET "/v1/webhook-endpoints/{id}/deliveries" as listWebhookDeliveries => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::deliveries;
    POST "/v1/webhook-deliveries/{id}/retry" as retryWebhookDelivery => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::retry;
    GET "/v1/events" as listEvents => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::events;
    GET "/v1/events/{id}" as getEvent => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::event;
}
