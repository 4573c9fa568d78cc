-- Token metadata, token lifetimes, and the list order.
--
-- metadata: a few small string pairs an integrator keeps with a token (its
-- own customer id, an order reference). Plain jsonb, in the clear: it is not
-- card data and may never hold any. The service refuses a value that reads
-- as a card number (pan_scan.c) and a key named like a security code before
-- it gets here; the CHECKs below only bound the shape (an object, at most
-- 20 keys, at most 16 KiB of text) so that no other writer can park bulk
-- data in it.
--
-- expires_at: when the token stops existing for the API (NULL: never). An
-- expired token answers exactly like a missing one; the housekeeping thread
-- deletes expired rows in small batches (docs/storage-policy.md says what
-- PostgreSQL and backups keep after that).
CREATE FUNCTION token_metadata_ok(m jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(m) = 'object'
       AND (SELECT count(*) FROM jsonb_object_keys(m)) <= 20
       AND octet_length(m::text) <= 16384
$$;

ALTER TABLE tokens
    ADD COLUMN metadata   jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (token_metadata_ok(metadata)),
    ADD COLUMN expires_at timestamptz;

-- GET /v1/tokens: newest first, by (created_at, token), per merchant.
CREATE INDEX tokens_list ON tokens (merchant_id, created_at, token);
-- The purge: only rows that have a lifetime.
CREATE INDEX tokens_expires ON tokens (expires_at) WHERE expires_at IS NOT NULL;

-- PATCH /v1/tokens/{token}: the card re-sealed under the current data key
-- (new expiry or cardholder name, same PAN, same token), its metadata and its
-- lifetime. The clear columns (bin, last4, brand, fingerprint), the token and
-- the merchant stay as they are: the service may not rewrite them.
GRANT UPDATE (format_version, dek_id, nonce, ciphertext, metadata, expires_at) ON tokens
    TO cardvault_service;
GRANT EXECUTE ON FUNCTION token_metadata_ok(jsonb) TO cardvault_service;
