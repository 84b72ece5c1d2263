//! The tables, written once for both backends: text ids, UTC timestamps without a zone.

diesel::table! {
    organizations (id) {
        id -> Text,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    orchestrators (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    destinations (id) {
        id -> Text,
        organization_id -> Text,
        slug -> Text,
        display_name -> Text,
        payment_address -> Nullable<Text>,
        max_agents -> Integer,
        pending_claim_ttl_seconds -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        kind -> Text,
        organization_id -> Nullable<Text>,
        destination_id -> Nullable<Text>,
        orchestrator_id -> Nullable<Text>,
        key_hash -> Text,
        prefix -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(destinations -> organizations (organization_id));

diesel::allow_tables_to_appear_in_same_query!(organizations, orchestrators, destinations, api_keys);
