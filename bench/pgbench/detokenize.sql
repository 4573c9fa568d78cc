\set i random(1, :nrows)
SELECT t.merchant_id, t.token, t.format_version, t.dek_id, t.nonce, t.ciphertext, t.brand, t.bin, t.last4, t.fingerprint, to_char(t.created_at AT TIME ZONE 'UTC', E'YYYY-MM-DD"T"HH24\072MI\072SS"Z"'), d.state = 'destroyed' FROM tokens t JOIN data_keys d USING (dek_id) WHERE t.merchant_id = :merchant_id AND t.token = 'tok_' || lpad(:i::text, 22, '0');
BEGIN;
SELECT seq, hash, mac, (extract(epoch FROM date_trunc('microseconds', clock_timestamp())) * 1000000)::bigint FROM (SELECT seq, hash, mac FROM audit_head WHERE id FOR UPDATE) h \gset
SELECT audit_append_rows((:seq + 1)::bigint, timestamptz 'epoch' + :int8::bigint * interval '1 microsecond', ARRAY[:actor]::text[], ARRAY[:merchant_id]::text[], ARRAY['tok_' || lpad(:i::text, 22, '0')]::text[], ARRAY[:request_id]::text[], ARRAY[:action]::text[], ARRAY[:outcome]::text[], ARRAY[NULL]::text[], ARRAY[sha256(:hash::bytea || convert_to(:request_id, 'UTF8'))]::bytea[], ARRAY[sha256(:mac::bytea || :hash::bytea)]::bytea[]);
COMMIT;
