-- Idempotency records for POST /v1/tokens. The client's Idempotency-Key and
-- the request body are kept only as keyed hashes (HMAC under a subkey of the
-- KEK-wrapped fingerprint key), so neither can be used to guess card data;
-- the stored response is the tokenize answer, which holds no PAN and no CVC.
CREATE TABLE idempotency_keys (
    merchant_id   text NOT NULL REFERENCES merchants (merchant_id),
    key_hash      bytea NOT NULL CHECK (length(key_hash) = 32),
    request_hash  bytea NOT NULL CHECK (length(request_hash) = 32),
    state         text NOT NULL CHECK (state IN ('in_progress', 'done')),
    status_code   integer,
    response_body text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, key_hash),
    CHECK ((state = 'done') = (status_code IS NOT NULL AND response_body IS NOT NULL))
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
