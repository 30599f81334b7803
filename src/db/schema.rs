// @generated automatically by Diesel CLI.

diesel::table! {
    audit_events (created_at, id) {
        id -> Uuid,
        created_at -> Timestamptz,
        #[sql_name = "type"]
        type_ -> Text,
        user_id -> Nullable<Uuid>,
        actor_id -> Nullable<Uuid>,
        session_id -> Nullable<Uuid>,
        client_address -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        request_id -> Nullable<Text>,
        details -> Jsonb,
    }
}

diesel::table! {
    email_tokens (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        purpose -> Text,
        email -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    identities (id) {
        id -> Uuid,
        user_id -> Uuid,
        provider -> Text,
        subject -> Text,
        email -> Nullable<Text>,
        linked_at -> Timestamptz,
    }
}

diesel::table! {
    mfa_challenges (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        amr -> Array<Nullable<Text>>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    mfa_factors (id) {
        id -> Uuid,
        user_id -> Uuid,
        kind -> Text,
        secret_sealed -> Bytea,
        created_at -> Timestamptz,
        confirmed_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        last_used_step -> Nullable<Int8>,
    }
}

diesel::table! {
    oauth_states (state_hash) {
        state_hash -> Bytea,
        provider -> Text,
        redirect_uri -> Text,
        client_challenge -> Text,
        pkce_verifier -> Text,
        nonce -> Text,
        link_user_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Uuid,
        user_id -> Nullable<Uuid>,
        kind -> Text,
        recipient -> Text,
        subject -> Text,
        body_text -> Nullable<Text>,
        body_html -> Nullable<Text>,
        message_id -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        claimed_by -> Nullable<Uuid>,
        claimed_until -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    passkey_ceremonies (id) {
        id -> Uuid,
        kind -> Text,
        user_id -> Nullable<Uuid>,
        email_bound -> Bool,
        state -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Uuid,
        user_id -> Uuid,
        credential_id -> Bytea,
        credential -> Text,
        name -> Nullable<Text>,
        sign_count -> Int8,
        backup_eligible -> Bool,
        backed_up -> Bool,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    recovery_codes (user_id, code_hash) {
        user_id -> Uuid,
        code_hash -> Bytea,
        created_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    refresh_token_successors (session_id, rotated_at, parent_hash) {
        session_id -> Uuid,
        rotated_at -> Timestamptz,
        parent_hash -> Bytea,
        sealed -> Bytea,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        session_id -> Uuid,
        issued_at -> Timestamptz,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
        successor_sealed -> Nullable<Bytea>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        user_agent -> Nullable<Text>,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        absolute_expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
        amr -> Array<Nullable<Text>>,
        acr -> Text,
        auth_time -> Timestamptz,
        expires_hour -> Timestamptz,
    }
}

diesel::table! {
    throttle_counters (key) {
        key -> Text,
        attempts -> Int4,
        window_ends_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Nullable<Text>,
        password_hash -> Nullable<Text>,
        display_name -> Nullable<Text>,
        role -> Text,
        email_verified_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        disabled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        event_id -> Text,
        endpoint -> Text,
        kind -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        claimed_by -> Nullable<Uuid>,
        claimed_until -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(email_tokens -> users (user_id));
diesel::joinable!(identities -> users (user_id));
diesel::joinable!(mfa_challenges -> users (user_id));
diesel::joinable!(mfa_factors -> users (user_id));
diesel::joinable!(oauth_states -> users (link_user_id));
diesel::joinable!(outbox -> users (user_id));
diesel::joinable!(passkey_ceremonies -> users (user_id));
diesel::joinable!(passkeys -> users (user_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(refresh_token_successors -> sessions (session_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    email_tokens,
    identities,
    mfa_challenges,
    mfa_factors,
    oauth_states,
    outbox,
    passkey_ceremonies,
    passkeys,
    recovery_codes,
    refresh_token_successors,
    refresh_tokens,
    sessions,
    throttle_counters,
    users,
    webhook_deliveries,
);
