//! `authorize()` per call, on the decisions the hot paths make: a client reading and creating
//! a payment request, and a destination key reading one. `cargo xtask bench` runs this and
//! folds the medians into `docs/benchmarks.md`.

#![allow(clippy::unwrap_used)] // a benchmark: a failed setup should stop it loudly

use std::collections::BTreeMap;
use std::hint::black_box;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use mandate_domain::ids::{
    ClientId, DestinationId, KeyId, OrchestratorId, OrganizationId, RequestId,
};
use mandate_domain::payments::{Direction, PaymentRequest, RequestStatus};
use mandate_domain::policy::{Action, Decision, Resource, authorize};
use mandate_domain::principal::{ClientPrincipal, Principal};
use mandate_domain::values::{Amount, Currency, Permission, PermissionSet, Total};

fn request(
    organization: &OrganizationId,
    destination: &DestinationId,
    client: &ClientId,
) -> PaymentRequest {
    let now = Utc::now();
    PaymentRequest {
        id: RequestId::generate(),
        organization_id: organization.clone(),
        destination_id: destination.clone(),
        direction: Direction::Incoming,
        amount: Amount::parse("42.50").unwrap(),
        currency: Currency::parse("USDC-base").unwrap(),
        amount_paid: Total::ZERO,
        status: RequestStatus::Open,
        customer_id: None,
        reference: Some("INV-7".into()),
        description: None,
        due_at: None,
        expires_at: None,
        metadata: BTreeMap::new(),
        created_by: client.to_string(),
        client_id: Some(client.clone()),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

fn bench(c: &mut Criterion) {
    let organization = OrganizationId::generate();
    let destination = DestinationId::generate();
    let client_id = ClientId::generate();
    let client = Principal::Client(ClientPrincipal {
        client_id: client_id.clone(),
        orchestrator_id: OrchestratorId::generate(),
        organization_id: organization.clone(),
        destination_id: destination.clone(),
        permissions: [
            Permission::CreateIncoming,
            Permission::CreateOutgoing,
            Permission::ReadIncoming,
        ]
        .into_iter()
        .collect::<PermissionSet>(),
        scope: None,
    });
    let owner = Principal::Destination {
        organization_id: organization.clone(),
        destination_id: destination.clone(),
        key_id: KeyId::generate(),
    };
    let payment_request = request(&organization, &destination, &client_id);
    let destination_resource = Resource::Destination {
        id: &destination,
        organization_id: &organization,
    };
    // The decisions measured are the ones the hot paths get.
    for (principal, action, resource) in [
        (
            &client,
            Action::ReadRequest,
            Resource::Request(&payment_request),
        ),
        (
            &client,
            Action::CreateRequest(Direction::Incoming),
            destination_resource,
        ),
        (
            &owner,
            Action::ReadRequest,
            Resource::Request(&payment_request),
        ),
    ] {
        assert_eq!(authorize(principal, action, resource), Decision::Allow);
    }

    let mut group = c.benchmark_group("authorize");
    group.bench_function("client_reads_request", |b| {
        b.iter(|| {
            authorize(
                black_box(&client),
                black_box(Action::ReadRequest),
                black_box(Resource::Request(&payment_request)),
            )
        })
    });
    group.bench_function("client_creates_request", |b| {
        b.iter(|| {
            authorize(
                black_box(&client),
                black_box(Action::CreateRequest(Direction::Incoming)),
                black_box(destination_resource),
            )
        })
    });
    group.bench_function("destination_reads_request", |b| {
        b.iter(|| {
            authorize(
                black_box(&owner),
                black_box(Action::ReadRequest),
                black_box(Resource::Request(&payment_request)),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
