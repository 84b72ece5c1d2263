//! `OrganizationStore`, and the operator's look-ups over organizations and orchestrators.

use std::sync::Arc;

use mandate_domain::ids::OrganizationId;
use mandate_domain::model::{KeyOwner, Organization};
use mandate_domain::ports::{OrchestratorFilter, OrganizationFilter, PageRequest, Store};

use crate::fixtures::*;

async fn organizations_round_trip(store: Arc<dyn Store>) {
    let organization = organization();
    let platform_key = key(KeyOwner::Platform {
        organization_id: organization.id.clone(),
    });
    store
        .insert_organization(&organization, &platform_key)
        .await
        .unwrap();
    assert_eq!(
        store.organization(&organization.id).await.unwrap(),
        Some(organization)
    );
    assert_eq!(
        store.key_by_hash(&platform_key.hash).await.unwrap(),
        Some(platform_key)
    );
    assert_eq!(
        store
            .organization(&OrganizationId::generate())
            .await
            .unwrap(),
        None
    );
}
case!(organizations_round_trip);

/// The operator's look-ups: every organization or orchestrator, newest first, by page, or
/// those with a name (or an orchestrator's slug).
async fn operator_lookups_filter_and_page_newest_first(store: Arc<dyn Store>) {
    let mut organizations = Vec::new();
    for name in ["Acme", "Beta", "Acme"] {
        let organization = Organization {
            name: name.into(),
            ..organization()
        };
        let platform_key = key(KeyOwner::Platform {
            organization_id: organization.id.clone(),
        });
        store
            .insert_organization(&organization, &platform_key)
            .await
            .unwrap();
        organizations.push(organization);
    }
    organizations.reverse();
    let everything = OrganizationFilter::default();
    let first = store
        .list_organizations(&everything, &first_page(2))
        .await
        .unwrap();
    assert_eq!(
        (first.data.as_slice(), first.has_more),
        (&organizations[..2], true)
    );
    let rest = store
        .list_organizations(
            &everything,
            &PageRequest {
                limit: 2,
                starting_after: Some(organizations[1].id.to_string()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (rest.data.as_slice(), rest.has_more),
        (&organizations[2..], false)
    );
    let acme = OrganizationFilter {
        name: Some("Acme".into()),
    };
    let named = store
        .list_organizations(&acme, &first_page(10))
        .await
        .unwrap();
    assert_eq!(
        named.data,
        vec![organizations[0].clone(), organizations[2].clone()]
    );

    let older = seed_orchestrator(&*store).await;
    let newer = seed_orchestrator(&*store).await;
    let all = store
        .list_orchestrators(&OrchestratorFilter::default(), &first_page(10))
        .await
        .unwrap();
    assert_eq!(all.data, vec![newer.clone(), older.clone()]);
    let by_slug = OrchestratorFilter {
        slug: Some(older.slug.clone()),
        name: None,
    };
    let found = store
        .list_orchestrators(&by_slug, &first_page(10))
        .await
        .unwrap();
    assert_eq!(found.data, vec![older.clone()]);
    let by_name = OrchestratorFilter {
        slug: None,
        name: Some(older.name.clone()),
    };
    let found = store
        .list_orchestrators(&by_name, &first_page(1))
        .await
        .unwrap();
    assert_eq!((found.data, found.has_more), (vec![newer], true));
    let neither = OrchestratorFilter {
        slug: Some(older.slug.clone()),
        name: Some("Someone else".into()),
    };
    let found = store
        .list_orchestrators(&neither, &first_page(10))
        .await
        .unwrap();
    assert!(found.data.is_empty() && !found.has_more);
}
case!(operator_lookups_filter_and_page_newest_first);
