-- Appending a batch of audit events in one call: the chain tip is locked and
-- read once, each event's hash computed in order exactly as audit_append()
-- does (same audit_canonical text), and the tip written once. Group commit
-- (service/store_batch.c) appends many detokenize events per transaction;
-- doing the head lock and update per event made that the bottleneck.
CREATE FUNCTION audit_append_batch(p_actor text[], p_merchant_id text[], p_token text[],
                                   p_request_id text[], p_action text[], p_outcome text[],
                                   p_detail text[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    h_seq  bigint;
    h_hash bytea;
    ts     timestamptz;
    n      integer := coalesce(array_length(p_actor, 1), 0);
BEGIN
    IF n = 0 THEN
        RETURN 0;
    END IF;
    SELECT seq, hash INTO h_seq, h_hash FROM audit_head WHERE id FOR UPDATE;
    FOR i IN 1 .. n LOOP
        h_seq := h_seq + 1;
        ts := date_trunc('microseconds', clock_timestamp());
        INSERT INTO audit_events (seq, occurred_at, actor, merchant_id, token, request_id,
                                  action, outcome, detail, prev_hash, hash)
        VALUES (h_seq, ts, p_actor[i], p_merchant_id[i], p_token[i], p_request_id[i],
                p_action[i], p_outcome[i], p_detail[i], h_hash,
                sha256(h_hash || convert_to(audit_canonical(h_seq, ts, p_actor[i],
                       p_merchant_id[i], p_token[i], p_request_id[i], p_action[i],
                       p_outcome[i], p_detail[i]), 'UTF8')))
        RETURNING hash INTO h_hash;
    END LOOP;
    UPDATE audit_head SET seq = h_seq, hash = h_hash WHERE id;
    RETURN n;
END
$$;
