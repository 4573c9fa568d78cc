-- Publishable keys bound to web origins: the card frame (/elements/card,
-- /elements/cvc) is served for a key only to a parent page whose origin is
-- on that key's list. Each item is a normalized origin (origin.c: lower-case
-- scheme://host[:port], default port dropped); the list is empty for every
-- key that exists today, so no key frames anywhere until an operator binds
-- it (`cardvault key origins PREFIX --set ...`). Only a key whose scopes are
-- exactly {tokenize} may have origins: a key that can read, delete or
-- detokenize must never be put on a page.
ALTER TABLE api_keys
    ADD COLUMN allowed_origins text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(allowed_origins) <= 8
               AND array_position(allowed_origins, NULL) IS NULL
               AND (cardinality(allowed_origins) = 0 OR scopes = ARRAY['tokenize']));

-- cardvault_service reads api_keys through its table-wide SELECT
-- (0004_service_role.sql), which covers this column too; it is granted again
-- here so the intent is written beside the column. The service never writes
-- api_keys: origins change only through the operator command.
GRANT SELECT ON api_keys TO cardvault_service;
