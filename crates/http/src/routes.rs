//! The route table: every route, the principal kinds it admits, and its handler, declared
//! once. Registration, the authentication pipeline and the OpenAPI document are all generated
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
use crate::pipeline::{self, Admits};

/// One row of the route table.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The path template, as in the OpenAPI document.
    pub path: &'static str,
    /// Who may call it.
    pub admits: Admits,
}

const fn kinds(kinds: &'static [PrincipalKind]) -> Admits {
    Admits::Kinds(kinds)
}

const fn signed_by_agent(kinds: &'static [PrincipalKind]) -> Admits {
    Admits::KindsSignedByAgent(kinds)
}

const PUBLIC: Admits = Admits::Public;

macro_rules! route_table {
    ($($method:ident $path:literal => $admits:expr => $handler:path;)*) => {
        /// Every route of the API.
        pub const ROUTES: &[RouteSpec] = &[
            $(RouteSpec { method: stringify!($method), path: $path, admits: $admits },)*
        ];

        /// Registers every route behind the authentication pipeline.
        pub fn register(config: &mut web::ServiceConfig) {
            $(
                config.route(
                    $path,
                    web::method(Method::$method)
                        .to($handler)
                        .wrap(from_fn(|request, next| {
                            pipeline::authenticate($admits, request, next)
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
    GET "/healthz" => PUBLIC => health::healthz;
    GET "/readyz" => PUBLIC => health::readyz;
    GET "/metrics" => PUBLIC => health::metrics;
    GET "/openapi.json" => PUBLIC => health::openapi;
    GET "/pay/{token}" => PUBLIC => pay::page;
    POST "/v1/oauth/token" => PUBLIC => oauth::token;
    GET "/.well-known/jwks.json" => PUBLIC => oauth::jwks;
    GET "/.well-known/oauth-authorization-server" => PUBLIC => oauth::metadata;

    // The payment requests first: actix matches routes in this order, one pattern after the
    // other, and these are the busiest.
    POST "/v1/requests" => kinds(&[Client, Platform, Destination]) => requests::create;
    GET "/v1/requests" => kinds(&[Client, Platform, Destination]) => requests::list;
    GET "/v1/requests/{id}" => kinds(&[Client, Platform, Destination]) => requests::get;
    POST "/v1/requests/{id}/cancel" => kinds(&[Client, Platform, Destination]) => requests::cancel;
    POST "/v1/requests/{id}/payment-links" => kinds(&[Client, Platform, Destination]) => requests::create_payment_link;
    POST "/v1/requests/{id}/payments" => kinds(&[Client, Platform, Destination]) => requests::report_payment;

    POST "/v1/admin/organizations" => kinds(&[Admin]) => admin::create_organization;
    POST "/v1/admin/orchestrators" => kinds(&[Admin]) => admin::create_orchestrator;
    GET "/v1/admin/organizations" => kinds(&[Admin]) => admin::list_organizations;
    GET "/v1/admin/orchestrators" => kinds(&[Admin]) => admin::list_orchestrators;

    GET "/v1/organization" => kinds(&[Platform]) => organization::get;
    POST "/v1/organization/keys" => kinds(&[Platform]) => organization::create_key;
    GET "/v1/organization/keys" => kinds(&[Platform]) => organization::list_keys;
    DELETE "/v1/organization/keys/{key_id}" => kinds(&[Platform]) => organization::revoke_key;

    POST "/v1/destinations" => kinds(&[Platform]) => destinations::create;
    GET "/v1/destinations" => kinds(&[Platform, Destination]) => destinations::list;
    GET "/v1/destinations/{id}" => kinds(&[Platform, Destination]) => destinations::get;
    PATCH "/v1/destinations/{id}" => kinds(&[Platform, Destination]) => destinations::update;
    POST "/v1/destinations/{id}/keys" => kinds(&[Platform, Destination]) => destinations::create_key;
    GET "/v1/destinations/{id}/keys" => kinds(&[Platform, Destination]) => destinations::list_keys;
    DELETE "/v1/destinations/{id}/keys/{key_id}" => kinds(&[Platform, Destination]) => destinations::revoke_key;

    GET "/v1/orchestrator" => kinds(&[Orchestrator]) => orchestrator::get;
    POST "/v1/orchestrator/keys" => kinds(&[Orchestrator]) => orchestrator::create_key;
    DELETE "/v1/orchestrator/keys/{key_id}" => kinds(&[Orchestrator]) => orchestrator::revoke_key;

    POST "/v1/client-ids" => kinds(&[Platform, Destination]) => clients::create;
    GET "/v1/client-ids" => kinds(&[Platform, Destination, Orchestrator]) => clients::list;
    GET "/v1/client-ids/{id}" => kinds(&[Platform, Destination, Orchestrator]) => clients::get;
    POST "/v1/client-ids/{id}/permissions" => kinds(&[Platform, Destination]) => clients::grant;
    DELETE "/v1/client-ids/{id}/permissions/{permission}" => kinds(&[Platform, Destination]) => clients::withdraw;
    POST "/v1/client-ids/{id}/revoke" => kinds(&[Platform, Destination]) => clients::revoke;

    POST "/v1/claims" => signed_by_agent(&[Orchestrator]) => claims::submit;
    GET "/v1/claims" => kinds(&[Platform, Destination, Orchestrator]) => claims::list;
    GET "/v1/claims/{id}" => kinds(&[Platform, Destination, Orchestrator]) => claims::get;
    POST "/v1/claims/{id}/approve" => kinds(&[Platform, Destination]) => claims::approve;
    POST "/v1/claims/{id}/reject" => kinds(&[Platform, Destination]) => claims::reject;
    POST "/v1/claims/{id}/revoke" => kinds(&[Platform, Destination]) => claims::revoke;
    GET "/v1/ledger" => kinds(&[Platform, Destination]) => claims::ledger;
    GET "/v1/ledger/verify" => kinds(&[Platform, Destination]) => claims::verify_ledger;

    POST "/v1/customers" => kinds(&[Platform, Destination, Client]) => customers::create;
    GET "/v1/customers" => kinds(&[Platform, Destination, Client]) => customers::list;
    GET "/v1/customers/{id}" => kinds(&[Platform, Destination, Client]) => customers::get;
    PATCH "/v1/customers/{id}" => kinds(&[Platform, Destination, Client]) => customers::update;
    DELETE "/v1/customers/{id}" => kinds(&[Platform, Destination, Client]) => customers::delete;

    POST "/v1/webhook-endpoints" => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::create;
    GET "/v1/webhook-endpoints" => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::list;
    GET "/v1/webhook-endpoints/{id}" => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::get;
    PATCH "/v1/webhook-endpoints/{id}" => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::update;
    DELETE "/v1/webhook-endpoints/{id}" => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::delete;
    POST "/v1/webhook-endpoints/{id}/rotate-secret" => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::rotate_secret;
    POST "/v1/webhook-endpoints/{id}/test" => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::test;
    GET "/v1/webhook-endpoints/{id}/deliveries" => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::deliveries;
    POST "/v1/webhook-deliveries/{id}/retry" => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::retry;
    GET "/v1/events" => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::events;
    GET "/v1/events/{id}" => kinds(&[Client, Orchestrator, Platform, Destination]) => webhooks::event;
}
