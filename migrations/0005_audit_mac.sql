-- A keyed audit chain. Until now every event carried only
-- hash_n = SHA-256(hash_{n-1} || canonical_n), computed inside PostgreSQL:
-- anyone who can write the database (the schema owner, a DBA, a restore of an
-- edited dump) could rewrite, insert or delete events and recompute a chain
-- that `audit verify` accepts. From this migration on, every event also
-- carries
--     mac_n = HMAC-SHA-256(K_audit, mac_{n-1} || canonical_n)
-- (canonical text as audit_canonical(); mac_{n-1} of the first keyed event is
-- its prev_hash, the SHA-256 tip of the unkeyed events before it, so its MAC
-- covers them as they stood at the upgrade), where K_audit is a random 32-byte key wrapped under the KEK
-- in vault_meta.audit_key_wrapped, exactly like the fingerprint key. The MAC
-- is computed in C by whoever appends; the key is never sent to PostgreSQL,
-- neither in a statement nor as a parameter (log_statement = all logs
-- parameters). Rows written before this migration stay unkeyed (mac NULL):
-- `audit verify` checks their SHA-256 links, reports the seq from which the
-- chain is keyed, and refuses an unkeyed row after it.
--
-- Appending is therefore done by the caller in its own transaction:
--   1. audit_head is locked (SELECT ... FOR UPDATE) and the event time read
--      from the database clock once the lock is held (service/store_audit.c);
--   2. the caller computes seq, hash and mac of each event in C;
--   3. audit_append_rows() inserts the rows and moves the head, in one call.
-- The old in-database appenders are dropped: an instance of the previous
-- version still running would otherwise append unkeyed rows after keyed ones,
-- which verify must refuse; its appends now fail instead (stop old instances
-- before migrating, docs/operations.md).

ALTER TABLE vault_meta ADD COLUMN audit_key_wrapped bytea;
ALTER TABLE audit_events ADD COLUMN mac bytea CHECK (mac IS NULL OR length(mac) = 32);
ALTER TABLE audit_head ADD COLUMN mac bytea CHECK (mac IS NULL OR length(mac) = 32);

DROP FUNCTION audit_append(text, text, text, text, text, text, text);
DROP FUNCTION audit_append_batch(text[], text[], text[], text[], text[], text[], text[]);

-- Step 3 of an append: the rows p_first_seq, p_first_seq + 1, ... with the
-- hashes and MACs the caller computed, all at p_ts, chained onto the head the
-- caller holds locked; then the head moves to the last of them. The caller
-- locked the head in this transaction (step 1), so the check below only
-- guards against a caller that did not. It cannot check a MAC (it has no
-- key): `audit verify` does.
CREATE FUNCTION audit_append_rows(p_first_seq bigint, p_ts timestamptz, p_actor text[],
                                  p_merchant_id text[], p_token text[], p_request_id text[],
                                  p_action text[], p_outcome text[], p_detail text[],
                                  p_hash bytea[], p_mac bytea[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    h_seq  bigint;
    h_hash bytea;
    n      integer := coalesce(array_length(p_actor, 1), 0);
BEGIN
    IF n = 0 THEN
        RETURN 0;
    END IF;
    SELECT seq, hash INTO h_seq, h_hash FROM audit_head WHERE id FOR UPDATE;
    IF h_seq + 1 <> p_first_seq OR coalesce(array_length(p_hash, 1), 0) <> n
       OR coalesce(array_length(p_mac, 1), 0) <> n THEN
        RAISE EXCEPTION 'audit append does not follow the head it locked'
            USING ERRCODE = 'serialization_failure';
    END IF;
    INSERT INTO audit_events (seq, occurred_at, actor, merchant_id, token, request_id,
                              action, outcome, detail, prev_hash, hash, mac)
    SELECT p_first_seq + i - 1, p_ts, p_actor[i], p_merchant_id[i], p_token[i],
           p_request_id[i], p_action[i], p_outcome[i], p_detail[i],
           CASE WHEN i = 1 THEN h_hash ELSE p_hash[i - 1] END, p_hash[i], p_mac[i]
    FROM generate_series(1, n) AS i;
    UPDATE audit_head SET seq = p_first_seq + n - 1, hash = p_hash[n], mac = p_mac[n] WHERE id;
    RETURN n;
END
$$;

-- Once the chain is keyed, an unkeyed row (one written by anything that does
-- not hold K_audit) is refused at once, not only by a later verify. The
-- owner can disable this trigger; the MACs are what he cannot forge.
CREATE FUNCTION audit_events_keyed_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.mac IS NULL AND EXISTS (SELECT 1 FROM audit_head WHERE id AND mac IS NOT NULL) THEN
        RAISE EXCEPTION 'audit_events is keyed: a row without a MAC is refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_keyed_only BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_keyed_only();

-- The tip still only moves forward onto an existing event, now with that
-- event's MAC too, and once keyed it stays keyed.
CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.id IS DISTINCT FROM OLD.id OR NEW.seq <= OLD.seq
           OR (OLD.mac IS NOT NULL AND NEW.mac IS NULL) OR NOT EXISTS (
                SELECT 1 FROM audit_events e WHERE e.seq = NEW.seq AND e.hash = NEW.hash
                AND e.mac IS NOT DISTINCT FROM NEW.mac) THEN
            RAISE EXCEPTION 'audit_head only moves forward onto an existing event'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_head cannot be removed' USING ERRCODE = 'insufficient_privilege';
END
$$;

-- The audit key is set once (by the first process of this version that opens
-- the KEK: serve, or an operator command) and then changes only with a KEK
-- rotation, which re-wraps it in the same statement that records the new
-- check value. So the service's role may fill it in, never replace it.
CREATE FUNCTION vault_meta_audit_key_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.audit_key_wrapped IS NOT NULL
       AND NEW.audit_key_wrapped IS DISTINCT FROM OLD.audit_key_wrapped
       AND NEW.kek_check_value IS NOT DISTINCT FROM OLD.kek_check_value THEN
        RAISE EXCEPTION 'the audit key is only re-wrapped with a KEK rotation'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER vault_meta_audit_key_once BEFORE UPDATE ON vault_meta
    FOR EACH ROW EXECUTE FUNCTION vault_meta_audit_key_guard();

-- The service's role (0004): it appends through audit_append_rows() (INSERT
-- on audit_events and SELECT, UPDATE on audit_head it already holds), and
-- stores the audit key the first time it starts.
GRANT EXECUTE ON FUNCTION audit_append_rows(bigint, timestamptz, text[], text[], text[], text[],
                                            text[], text[], text[], bytea[], bytea[])
    TO cardvault_service;
GRANT UPDATE (audit_key_wrapped) ON vault_meta TO cardvault_service;
