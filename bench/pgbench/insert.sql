\set ta random(0, 99999999999)
\set tb random(0, 99999999999)
\set fa random(0, 99999999999)
\set fb random(0, 99999999999)
INSERT INTO tokens (merchant_id, token, format_version, dek_id, nonce, ciphertext, brand, bin, last4, fingerprint, created_at, metadata, expires_at) SELECT :merchant_id, 'tok_' || lpad(:ta::text, 11, '0') || lpad(:tb::text, 11, '0'), :format_version, :dek_id, :nonce, :ciphertext, :brand, :bin, :last4, 'fp_' || lpad(:fa::text, 11, '0') || lpad(:fb::text, 11, '0'), :created_at, '{}'::jsonb, NULLIF('', '')::timestamptz FROM data_keys WHERE dek_id = :dek_id::bigint AND state <> 'destroyed' FOR KEY SHARE;
