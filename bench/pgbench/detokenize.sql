\set i random(1, :nrows)
\set detail NULL
SELECT t.merchant_id, t.token, t.format_version, t.dek_id, t.nonce, t.ciphertext, t.brand, t.bin, t.last4, t.fingerprint, to_char(t.created_at AT TIME ZONE 'UTC', E'YYYY-MM-DD"T"HH24\072MI\072SS"Z"'), d.state = 'destroyed' FROM tokens t JOIN data_keys d USING (dek_id) WHERE t.merchant_id = :merchant_id AND t.token = 'tok_' || lpad(:i::text, 22, '0');
SELECT audit_append(:actor, :merchant_id, 'tok_' || lpad(:i::text, 22, '0'), :request_id, :action, :outcome, :detail);
