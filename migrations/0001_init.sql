-- cardvault initial schema.
-- Every tenant-scoped table leads its primary key with merchant_id, so the data
-- is already shaped for distribution by merchant. No table has, or may ever
-- get, a column for card security codes (PCI DSS 3.3.1.2): tests assert it.

-- Singleton row: what proves which KEK this database belongs to, and the
-- fingerprint key wrapped under that KEK.
CREATE TABLE vault_meta (
    id               boolean PRIMARY KEY DEFAULT true CHECK (id),
    kek_provider     text NOT NULL,
    kek_check_value  bytea NOT NULL,
    fingerprint_key_wrapped bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    rewrapped_at     timestamptz
);

CREATE TABLE merchants (
    merchant_id  text PRIMARY KEY CHECK (merchant_id ~ '^mer_[0-9A-Za-z]{20}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- API keys are kept only as SHA-256 of the full key plus a short display prefix.
CREATE TABLE api_keys (
    merchant_id  text NOT NULL REFERENCES merchants (merchant_id),
    key_prefix   text NOT NULL,
    key_hash     bytea NOT NULL CHECK (length(key_hash) = 32),
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    changed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (merchant_id, key_prefix),
    UNIQUE (key_prefix),
    UNIQUE (key_hash)
);
CREATE INDEX api_keys_changed_at ON api_keys (changed_at);

-- Data-encryption keys, wrapped under the KEK (AES-256 key wrap with padding, RFC 5649).
-- use_count is reserved in blocks before encryptions happen so no restart or
-- second instance can push a key past max_uses (NIST SP 800-38D 8.3).
CREATE TABLE data_keys (
    dek_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wrapped_key  bytea,
    state        text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retired', 'destroyed')),
    use_count    bigint NOT NULL DEFAULT 0,
    max_uses     bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    destroyed_at timestamptz,
    CHECK ((state = 'destroyed') = (wrapped_key IS NULL)),
    CHECK (use_count <= max_uses)
);

-- Tokens: ciphertext of (PAN, expiry, cardholder name) under a DEK; only the
-- display data PCI DSS 3.4.1 allows (BIN, last 4, brand) is in the clear.
CREATE TABLE tokens (
    merchant_id    text NOT NULL REFERENCES merchants (merchant_id),
    token          text NOT NULL CHECK (token ~ '^tok_[0-9A-Za-z]{22}$'),
    format_version smallint NOT NULL,
    dek_id         bigint NOT NULL REFERENCES data_keys (dek_id),
    nonce          bytea NOT NULL CHECK (length(nonce) = 12),
    ciphertext     bytea NOT NULL,
    brand          text NOT NULL,
    bin            text NOT NULL CHECK (bin ~ '^[0-9]{6}$'),
    last4          text NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    fingerprint    text NOT NULL CHECK (fingerprint ~ '^fp_[0-9A-Za-z]{22}$'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, token)
);
CREATE INDEX tokens_fingerprint ON tokens (merchant_id, fingerprint);
CREATE INDEX tokens_dek ON tokens (dek_id);

-- Append-only, hash-chained audit trail. Each event's hash is
-- SHA-256(previous hash || canonical text of the event); audit_head holds the
-- chain's tip and its row lock serializes appends, so concurrent writers
-- cannot fork the chain.
CREATE TABLE audit_events (
    seq          bigint PRIMARY KEY,
    occurred_at  timestamptz NOT NULL,
    actor        text NOT NULL,
    merchant_id  text,
    token        text,
    request_id   text,
    action       text NOT NULL,
    outcome      text NOT NULL,
    detail       text,
    prev_hash    bytea NOT NULL,
    hash         bytea NOT NULL
);
CREATE INDEX audit_events_merchant ON audit_events (merchant_id, occurred_at);

CREATE TABLE audit_head (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq   bigint NOT NULL,
    hash  bytea NOT NULL
);
INSERT INTO audit_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- The canonical text an event's hash covers. `cardvault audit verify`
-- recomputes the same bytes; keep both in step.
CREATE FUNCTION audit_canonical(seq bigint, occurred_at timestamptz, actor text,
                                merchant_id text, token text, request_id text,
                                action text, outcome text, detail text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws(E'\x1f', seq::text,
                     to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                     actor, coalesce(merchant_id, ''), coalesce(token, ''),
                     coalesce(request_id, ''), action, outcome, coalesce(detail, ''))
$$;

CREATE FUNCTION audit_append(p_actor text, p_merchant_id text, p_token text,
                             p_request_id text, p_action text, p_outcome text, p_detail text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    h_seq  bigint;
    h_hash bytea;
    ts     timestamptz := date_trunc('microseconds', clock_timestamp());
    n_hash bytea;
BEGIN
    SELECT seq, hash INTO h_seq, h_hash FROM audit_head WHERE id FOR UPDATE;
    h_seq := h_seq + 1;
    n_hash := sha256(h_hash || convert_to(audit_canonical(h_seq, ts, p_actor, p_merchant_id,
                     p_token, p_request_id, p_action, p_outcome, p_detail), 'UTF8'));
    INSERT INTO audit_events (seq, occurred_at, actor, merchant_id, token, request_id,
                              action, outcome, detail, prev_hash, hash)
    VALUES (h_seq, ts, p_actor, p_merchant_id, p_token, p_request_id, p_action, p_outcome,
            p_detail, h_hash, n_hash);
    UPDATE audit_head SET seq = h_seq, hash = n_hash WHERE id;
    RETURN h_seq;
END
$$;

CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
