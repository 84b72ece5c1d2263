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

diesel::table! {
    client_ids (id) {
        id -> Text,
        organization_id -> Text,
        destination_id -> Text,
        orchestrator_id -> Text,
        label -> Nullable<Text>,
        permissions -> Text,
        version -> BigInt,
        status -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        agent_public_key -> Nullable<Text>,
    }
}

diesel::table! {
    claims (id) {
        id -> Text,
        organization_id -> Text,
        destination_id -> Text,
        namespace -> Text,
        orchestrator_id -> Text,
        service -> Text,
        public_key -> Text,
        agent_id -> Text,
        agent_name -> Text,
        subject -> Nullable<Text>,
        ip_address -> Text,
        permissions -> Text,
        status -> Text,
        client_id -> Nullable<Text>,
        pending_expires_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        ledger_status -> Nullable<Text>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    claim_nonces (orchestrator_id, nonce) {
        orchestrator_id -> Text,
        nonce -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    signature_nonces (public_key, nonce) {
        public_key -> Text,
        nonce -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    ledger_queue (event_id) {
        event_id -> Text,
        organization_id -> Text,
        destination_id -> Text,
        claim_id -> Text,
        action -> Text,
        public_key -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    ledger_entries (organization_id, seq) {
        organization_id -> Text,
        seq -> BigInt,
        destination_id -> Text,
        claim_id -> Text,
        action -> Text,
        public_key -> Text,
        at -> Timestamp,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    payment_requests (id) {
        id -> Text,
        organization_id -> Text,
        destination_id -> Text,
        direction -> Text,
        amount -> Text,
        currency -> Text,
        amount_paid -> Text,
        status -> Text,
        customer_id -> Nullable<Text>,
        reference -> Nullable<Text>,
        description -> Nullable<Text>,
        due_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        metadata -> Text,
        created_by -> Text,
        client_id -> Nullable<Text>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    payments (id) {
        id -> Text,
        organization_id -> Text,
        destination_id -> Text,
        request_id -> Text,
        amount -> Text,
        reference -> Text,
        paid_at -> Timestamp,
        created_by -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    payment_links (id) {
        id -> Text,
        organization_id -> Text,
        destination_id -> Text,
        request_id -> Text,
        token_hash -> Text,
        expires_at -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::table! {
    events (id) {
        id -> Text,
        organization_id -> Nullable<Text>,
        destination_id -> Nullable<Text>,
        orchestrator_id -> Nullable<Text>,
        client_id -> Nullable<Text>,
        direction -> Nullable<Text>,
        event_type -> Text,
        data -> Text,
        created_at -> Timestamp,
        endpoint_id -> Nullable<Text>,
        family -> Text,
        fanned_out -> Bool,
        fanout_lease_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    customers (id) {
        id -> Text,
        organization_id -> Text,
        email -> Nullable<Text>,
        email_normalized -> Nullable<Text>,
        name -> Nullable<Text>,
        metadata -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    idempotency_keys (scope, key) {
        scope -> Text,
        key -> Text,
        fingerprint -> Text,
        status -> Nullable<Integer>,
        body -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    console_sessions (token_hash) {
        token_hash -> Text,
        key_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Text,
        owner_kind -> Text,
        client_id -> Nullable<Text>,
        orchestrator_id -> Nullable<Text>,
        organization_id -> Nullable<Text>,
        destination_id -> Nullable<Text>,
        url -> Text,
        event_types -> Text,
        description -> Nullable<Text>,
        enabled -> Bool,
        secret -> Text,
        previous_secret -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        scope -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        event_id -> Text,
        endpoint_id -> Text,
        attempt -> Integer,
        status -> Text,
        response_status -> Nullable<Integer>,
        response_body -> Nullable<Text>,
        duration_ms -> Nullable<BigInt>,
        next_attempt_at -> Nullable<Timestamp>,
        first_attempt_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::joinable!(destinations -> organizations (organization_id));
diesel::joinable!(webhook_deliveries -> events (event_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(customers -> organizations (organization_id));

diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    orchestrators,
    destinations,
    api_keys,
    client_ids,
    claims,
    claim_nonces,
    signature_nonces,
    ledger_queue,
    ledger_entries,
    payment_requests,
    payments,
    payment_links,
    events,
    customers,
    idempotency_keys,
    console_sessions,
    webhook_endpoints,
    webhook_deliveries,
);
