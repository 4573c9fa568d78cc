#!/usr/bin/env bash
# Moving a legacy shop's cards into the vault (docs/migrating.md), end to end:
#
#   tests/scenarios/import-scan.sh build/release/cardvault
#   IMPORT_CARDS=10000 IMPORT_ROWS=50000 tests/scenarios/import-scan.sh ...   (the defaults)
#   make test-import-large                         (IMPORT_ROWS=200000)
#
# On a private PostgreSQL cluster (tests/lib/scenario.sh), beside the vault's
# own database, a second database `legacy` plays the shop: customers,
# payment_methods (card numbers plain and spaced, expiry in three shapes, a
# cvv column), orders (card numbers dashed inside JSON notes next to a "cvv"
# key, base64-encoded card JSON, and decoys: order numbers, phone numbers,
# tracking numbers, ISBNs, 16-digit invoice numbers that fail Luhn, Luhn-valid
# references with no issuer prefix). Files: an application log (card numbers
# plain, URL-encoded, base64; cvv=NNN), a gzip'd old log, a CSV export with a
# cvv column, a pg_dump of the shop, and a log holding only decoys.
#   1. scan finds every planted card number and security code, per column
#      and per file, counted exactly, and nothing in any decoy (false
#      positives measured and reported);
#   2. import from the shop's database (--query): every valid row mapped,
#      duplicates merged by fingerprint, expired rows refused with their row
#      number, the security-code column reported; every token detokenizes
#      (through the running service, detokenize key) to its source card;
#   3. import of IMPORT_ROWS rows from CSV killed with SIGKILL midway, then
#      resumed: every row imported once, the mapping complete, no token row
#      without its mapping; throughput reported;
#   4. malformed CSV (bad quoting, wrong column count, a 1 MiB line, invalid
#      UTF-8) gives errors or refusals with line numbers and keeps what was
#      committed;
#   5. the documented clean-up (tokens into the shop's table from the
#      mapping, card and cvv columns dropped, logs, dump and export deleted)
#      and scan finds nothing (exit 0);
#   6. no full card number appears in any output of import or scan, in the
#      reports, the mapping files or the service log.
# Ends with "import-scan: N passed, N failed" and appends "P F" to
# build/test-results.
SUITE=import-scan
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
export LC_ALL=C
require_tools jq curl psql awk gzip base64 pg_dump
N=${IMPORT_CARDS:-10000}
ROWS=${IMPORT_ROWS:-50000}
T0=$(date +%s)

sc_pin_binary
sc_setup
need "merchant created" sc_merchant legacy-shop
need "service started" sc_start
W=$SC_DIR/work
mkdir -p "$W/shop/logs/archive" "$W/shop/exports" "$W/shop/dump" "$W/out"
chmod 700 "$W"
L() { psql -X -q -At -v ON_ERROR_STOP=1 -d legacy -c "$1"; }

# ------------------------------------------------------- the legacy shop
createdb legacy || exit 1
psql -X -q -v ON_ERROR_STOP=1 -d legacy -v n="$N" >/dev/null <<'SQL' || { echo "fixture failed"; exit 1; }
CREATE FUNCTION luhn_digit(body text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE s int := 0; d int; dbl boolean := true;
BEGIN
  FOR i IN REVERSE length(body)..1 LOOP
    d := substr(body, i, 1)::int;
    IF dbl THEN d := d * 2; IF d > 9 THEN d := d - 9; END IF; END IF;
    s := s + d; dbl := NOT dbl;
  END LOOP;
  RETURN (10 - s % 10) % 10;
END $$;
CREATE FUNCTION luhn_ok(body text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT body || luhn_digit(body)::text $$;
CREATE FUNCTION luhn_bad(body text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT body || ((luhn_digit(body) + 1) % 10)::text $$;
-- Distinct per id: multiplication by an odd number prime to 5 is a
-- bijection modulo a power of ten.
CREATE FUNCTION mid(id bigint, k int) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT lpad(((id * 104729 + 7) % (10::numeric ^ k)::bigint)::text, k, '0') $$;
CREATE FUNCTION card_of(id bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE id % 5
    WHEN 0 THEN luhn_ok('4123' || mid(id, 11))                      -- Visa 16
    WHEN 1 THEN luhn_ok('5' || (1 + id % 5)::text || '12' || mid(id, 11)) -- Mastercard 16
    WHEN 2 THEN luhn_ok('3712' || mid(id, 10))                      -- Amex 15
    WHEN 3 THEN luhn_ok('6011' || mid(id, 11))                      -- Discover 16
    ELSE luhn_ok('3530' || mid(id, 11))                             -- JCB 16
  END $$;

CREATE TABLE customers (id int PRIMARY KEY, name text, email text, phone text);
CREATE TABLE payment_methods (
  id int PRIMARY KEY, customer_id int, card_number text, card_display text,
  exp text, holder text, cvv text, created_at timestamptz DEFAULT now());
CREATE TABLE orders (
  id int PRIMARY KEY, order_number text, invoice_no text, tracking text, phone text,
  isbn text, ref text, notes jsonb, meta text);
CREATE TABLE audit_log (line text);  -- no key: findings are located by ctid

INSERT INTO customers
  SELECT i, 'Customer ' || i, 'c' || i || '@example.com', '+1 (555) 010-' || lpad((i % 10000)::text, 4, '0')
  FROM generate_series(1, :n) i;
-- Every 100th row repeats the card of the row before (a duplicate to merge);
-- rows 7, 507, 1007, ... have expired cards.
INSERT INTO payment_methods (id, customer_id, card_number, exp, holder, cvv)
  SELECT i, i,
    card_of(CASE WHEN i % 100 = 0 THEN i - 1 ELSE i END),
    CASE WHEN i % 500 = 7 THEN '01/20'
         WHEN i % 3 = 0 THEN lpad((1 + i % 12)::text, 2, '0') || '/' || (28 + i % 5)::text
         WHEN i % 3 = 1 THEN lpad((1 + i % 12)::text, 2, '0') || '/' || (2028 + i % 5)::text
         ELSE (2028 + i % 5)::text || '-' || lpad((1 + i % 12)::text, 2, '0') END,
    'Holder ' || i,
    CASE WHEN (CASE WHEN i % 100 = 0 THEN i - 1 ELSE i END) % 5 = 2
         THEN lpad(((i * 7) % 10000)::text, 4, '0') ELSE lpad(((i * 7) % 1000)::text, 3, '0') END
  FROM generate_series(1, :n) i;
UPDATE payment_methods SET card_display = trim(regexp_replace(card_number, '(\d{4})', '\1 ', 'g'))
  WHERE id % 3 = 0;
INSERT INTO orders
  SELECT i,
    'ORD-2024-' || lpad(i::text, 8, '0'),
    luhn_bad('4' || lpad((i * 31)::text, 14, '0')),                       -- 16 digits, Luhn fails
    CASE WHEN i % 2 = 0 THEN '9400 1' || substr(mid(i, 11), 1, 3) || ' ' || substr(mid(i, 11), 4, 4)
                             || ' ' || substr(mid(i, 11), 8, 4) || ' 0000 00'
         ELSE '1Z999AA1' || lpad(i::text, 10, '0') END,                    -- USPS / UPS
    '+44 20 7946 ' || lpad((i % 10000)::text, 4, '0'),
    luhn_ok('978' || lpad(i::text, 9, '0')),                               -- ISBN-13 shaped, Luhn-valid
    luhn_ok(CASE WHEN i % 2 = 0 THEN '1' ELSE '9' END || mid(i, 14)),      -- Luhn-valid, no issuer
    CASE WHEN i % 5 = 0
      THEN jsonb_build_object('pan', regexp_replace(card_of(i), '(\d{4})(?=\d)', '\1-', 'g'),
                              'cvv', lpad(((i * 7) % 1000)::text, 3, '0'), 'note', 'gift wrap')
      ELSE jsonb_build_object('note', 'leave at door', 'phone', '+1 555 010 ' || lpad((i % 10000)::text, 4, '0'),
                              'invoice', luhn_bad('5' || lpad(i::text, 14, '0'))) END,
    CASE WHEN i % 10 = 3
      THEN encode(convert_to('{"card":"' || card_of(i) || '"}', 'UTF8'), 'base64') END
  FROM generate_series(1, :n) i;
INSERT INTO audit_log SELECT 'charged ' || card_of(i) || ' ok' FROM generate_series(1, 50) i;
INSERT INTO audit_log SELECT 'order ORD-2024-' || lpad(i::text, 8, '0') || ' shipped'
  FROM generate_series(1, 50) i;
SQL
ok "legacy shop database: $N payment methods, $N orders"

# Every card of the shop, one a line: the leak checks search for each.
L "SELECT DISTINCT card_of(i) FROM generate_series(1, $N) i" >"$W/all_pans.txt"

# Files: a log with card numbers plain, URL-encoded and base64 and cvv=NNN
# lines; an old gzip'd log; a CSV export with a cvv column; a pg_dump; a log
# of decoys only.
LOG_PLAIN=300 LOG_URL=50 LOG_B64=50 LOG_CVV=100 GZ_LINES=200 EXPORT_ROWS=500
L "SELECT '2026-01-0' || (1 + i % 9) || 'T10:00:00Z INFO payment order=ORD-2024-' || lpad(i::text, 8, '0')
     || ' card=' || card_of(i) || ' amount=' || (i % 300) || '.00 status=ok' FROM generate_series(1, $LOG_PLAIN) i
   UNION ALL
   SELECT '2026-01-02T10:00:00Z DEBUG GET /checkout?card='
     || replace(trim(regexp_replace(card_of(i), '(\d{4})', '\1 ', 'g')), ' ', '%20') || '&ok=1'
     FROM generate_series(1001, 1000 + $LOG_URL) i
   UNION ALL
   SELECT '2026-01-03T10:00:00Z DEBUG payload=' || encode(convert_to('{\"pan\":\"' || card_of(i) || '\"}', 'UTF8'), 'base64')
     FROM generate_series(2001, 2000 + $LOG_B64) i
   UNION ALL
   SELECT '2026-01-04T10:00:00Z DEBUG form retry cvv=' || lpad((i % 1000)::text, 3, '0') || ' order=' || i
     FROM generate_series(1, $LOG_CVV) i
   UNION ALL
   SELECT '2026-01-05T10:00:00Z INFO shipped tracking=' || tracking || ' invoice=' || invoice_no || ' ref=' || ref
     FROM orders WHERE id <= 200" >"$W/shop/logs/app.log"
L "SELECT '2025-06-01 card ' || trim(regexp_replace(card_of(i), '(\d{4})', '\1 ', 'g')) || ' declined'
     FROM generate_series(3001, 3000 + $GZ_LINES) i" | gzip >"$W/shop/logs/archive/app-2025.log.gz"
{
    echo "id,card_number,exp,cvv"
    L "SELECT id || ',' || card_number || ',\"' || exp || '\",' || cvv FROM payment_methods WHERE id <= $EXPORT_ROWS ORDER BY id"
} >"$W/shop/exports/cards-2024.csv"
L "SELECT 'call ' || phone || ' about ' || order_number || ' isbn ' || isbn || ' ref ' || ref
     || ' invoice ' || invoice_no || ' tracking ' || tracking FROM orders" >"$W/shop/logs/decoys.log"
pg_dump -d legacy --no-owner -t payment_methods -t orders >"$W/shop/dump/legacy.sql" || exit 1
ok "shop files: app.log, an old .gz log, a CSV export, a pg_dump, a decoy log"

echo "host=$SC_PGSOCK port=$SC_PGPORT user=postgres dbname=legacy" >"$W/legacy.url"
chmod 600 "$W/legacy.url"

echo "# fixture ready after $(($(date +%s) - T0)) s"
# ---------------------------------------------------------- 1. scan
run_scan() { # run_scan NAME ARGS...: JSON lines in $W/out/NAME.json, exit status in SCAN_RC
    local name=$1
    shift
    "$SC_BIN" scan --json "$@" >"$W/out/$name.json" 2>"$W/out/$name.err"
    SCAN_RC=$?
}
t=$(date +%s.%N)
run_scan before --db --source-url-file "$W/legacy.url" "$W/shop"
scan_secs=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
check "scan exits 1 (card data found)" [ "$SCAN_RC" -eq 1 ]
# found KEY WHERE [COLUMN]: the card_numbers or security_codes of one finding (0 if none)
found() {
    jq -rs --arg k "$1" --arg w "$2" --arg c "${3:-}" \
        '[.[] | select(.finding == true and (.table == $w or .path == $w) and (($c == "" and .column == null) or .column == $c)) | .[$k]] | add // 0' \
        "$W/out/before.json"
}
expect() { # expect LABEL GOT WANT
    if [ "$2" = "$3" ]; then ok "scan: $1 = $3"; else not_ok "scan: $1 = $2, expected $3"; fi
}
D=$W/shop
expect "payment_methods.card_number card numbers" "$(found card_numbers public.payment_methods card_number)" "$N"
expect "payment_methods.card_display (spaced) card numbers" "$(found card_numbers public.payment_methods card_display)" "$((N / 3))"
expect "payment_methods.cvv security codes" "$(found security_codes public.payment_methods cvv)" "$N"
expect "orders.notes (JSON, dashed) card numbers" "$(found card_numbers public.orders notes)" "$((N / 5))"
expect "orders.notes \"cvv\" keys" "$(found security_codes public.orders notes)" "$((N / 5))"
expect "orders.meta (base64) card numbers" "$(found card_numbers public.orders meta)" "$(((N + 7) / 10))"
expect "audit_log (no primary key) card numbers" "$(found card_numbers public.audit_log line)" 50
check "audit_log findings located by ctid" grep -q '"locations":\["ctid=(0,' "$W/out/before.json"
check "payment_methods findings located by primary key" grep -q '"locations":\["id=1"' "$W/out/before.json"
expect "app.log card numbers (plain, URL-encoded, base64)" "$(found card_numbers "$D/logs/app.log")" "$((LOG_PLAIN + LOG_URL + LOG_B64))"
expect "app.log cvv= codes" "$(found security_codes "$D/logs/app.log")" "$LOG_CVV"
expect "app-2025.log.gz card numbers" "$(found card_numbers "$D/logs/archive/app-2025.log.gz")" "$GZ_LINES"
expect "cards-2024.csv card numbers" "$(found card_numbers "$D/exports/cards-2024.csv")" "$EXPORT_ROWS"
expect "cards-2024.csv cvv column codes" "$(found security_codes "$D/exports/cards-2024.csv")" "$EXPORT_ROWS"
expect "legacy.sql card numbers" "$(found card_numbers "$D/dump/legacy.sql")" "$((N + N / 3 + N / 5 + (N + 7) / 10))"
expect "legacy.sql codes (COPY cvv column, JSON keys)" "$(found security_codes "$D/dump/legacy.sql")" "$((N + N / 5))"
# False positives: findings anywhere a decoy lives and nothing was planted.
fp=$(jq -rs '[.[] | select(.finding == true and (
        (.table == "public.orders" and (.column | IN("notes", "meta") | not)) or
        (.table == "public.customers") or
        (.table == "public.payment_methods" and (.column | IN("card_number", "card_display", "cvv") | not)) or
        (.path != null and (.path | endswith("decoys.log"))))) | (.card_numbers + .security_codes)] | add // 0' \
    "$W/out/before.json")
decoys=$(($(wc -l <"$D/logs/decoys.log") * 6 + N * 7 + N * 3))
if [ "$fp" -eq 0 ]; then
    ok "scan: no false positive among about $decoys decoy values (order, phone, tracking, ISBN, invoice, no-issuer numbers)"
else
    not_ok "scan: $fp false positives"
    jq -c 'select(.finding == true)' "$W/out/before.json" | grep -E 'decoys|customers|order_number|invoice|tracking|isbn|"ref"|phone' | head -5 | indent
fi
total=$(jq -rs '.[-1] | "\(.card_numbers) card numbers, \(.security_codes) codes, \(.findings) findings, \(.bytes) bytes of files, \(.rows) rows"' "$W/out/before.json")
ok "scan took ${scan_secs}s: $total"
"$SC_BIN" scan "$D/logs/app.log" >"$W/out/human.txt" 2>&1
check "human output: FOUND lines with masked samples and line numbers" \
    grep -qE '^FOUND file .*app.log: .* card numbers \([0-9]{6}\*+[0-9]{4} ' "$W/out/human.txt"
"$SC_BIN" scan "$W/nonexistent" >/dev/null 2>&1
check "scan of a missing path exits 2" [ $? -eq 2 ]

echo "# scan checks done after $(($(date +%s) - T0)) s"
# ---------------------------------------------- 2. import from the database
tokens_before=$(q "SELECT count(*) FROM tokens")
"$SC_BIN" import --merchant "$M_ID" --job legacy-db --query \
    "SELECT p.id, p.card_number, p.exp, p.holder, p.cvv FROM payment_methods p ORDER BY p.id" \
    --source-url-file "$W/legacy.url" --id-col id --pan-col card_number --exp-col exp --name-col holder \
    --mapping "$W/out/map-db.csv" >"$W/out/import-db.json" 2>"$W/out/import-db.err"
rc=$?
check "import from the shop database exits 0" [ "$rc" -eq 0 ]
R=$W/out/import-db.json
dups=$((N / 100))
expired=$(((N + 493) / 500))
expect_r() { # LABEL JQ WANT
    local got
    got=$(jq -r "$2" "$R")
    if [ "$got" = "$3" ]; then ok "import: $1 = $3"; else not_ok "import: $1 = $got, expected $3"; fi
}
expect_r "rows read" .rows_read "$N"
expect_r "imported" .imported "$((N - dups - expired))"
expect_r "merged by fingerprint" .merged "$dups"
expect_r "refused expired" .refused_by_reason.expired "$expired"
expect_r "first refusal names its row" '.refusals[0] | "\(.row) \(.row_id) \(.reason)"' "7 7 expired"
expect_r "cvv column reported as a finding" '.findings[0] | "\(.kind) \(.column) \(.values)"' "security_code_column cvv $N"
expect_r "mapping rows" .mapping_rows "$((N - expired))"
check "mapping file is mode 0600" [ "$(stat -c %a "$W/out/map-db.csv")" = 600 ]
check "mapping has a header and one line per mapped row" [ "$(wc -l <"$W/out/map-db.csv")" -eq "$((N - expired + 1))" ]
check "vault holds exactly the new tokens" [ "$(q "SELECT count(*) FROM tokens")" -eq "$((tokens_before + N - dups - expired))" ]
db_rate=$(jq -r .rows_per_s "$R")
ok "import from PostgreSQL: $(jq -r .rows_read "$R") rows at $db_rate rows/s"
# Merged rows point at the token of the card they repeat.
merged_ok=$(awk -F, 'NR > 1 { tok[$1] = $2; m[$1] = $7 } END {
    n = 0; for (id in m) if (m[id] == 1 && tok[id] == tok[id - 1]) n++; print n }' "$W/out/map-db.csv")
check "each merged row maps to the token of its duplicate ($merged_ok of $dups)" [ "$merged_ok" -eq "$dups" ]

# Every token detokenizes to its source card (detokenize key, running service).
cut -d, -f1,2 "$W/out/map-db.csv" | tail -n +2 | sort -t, -k2,2 -u >"$W/out/tok.list"
mkdir -p "$W/out/detok"
# One curl -K file (the format of curl_config_entry, written by one awk).
awk -F, -v url="$SC_URL" -v key="$M_DK" -v dir="$W/out/detok" '{
    printf "next\nnoproxy = \"*\"\nurl = \"%s/v1/tokens/%s/detokenize\"\nrequest = \"POST\"\n", url, $2
    printf "header = \"Authorization: Bearer %s\"\noutput = \"%s/%s\"\ndump-header = \"%s/%s.h\"\nsilent\n", key, dir, $1, dir, $1
}' "$W/out/tok.list" >"$W/out/detok.cfg"
t=$(date +%s.%N)
run_curl_config "$W/out/detok.cfg"
detok_secs=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
L "SELECT id || ',' || card_number FROM payment_methods" | sort >"$W/out/truth.csv"
(cd "$W/out/detok" && find . -type f ! -name '*.h' -printf '%f\n' | xargs jq -r '"\(input_filename),\(.pan)"' 2>/dev/null) |
    sort >"$W/out/detok.csv"
rm -rf "$W/out/detok" # the answers held card numbers
matched=$(join -t, "$W/out/truth.csv" "$W/out/detok.csv" | awk -F, '$2 == $3' | wc -l)
ntok=$(wc -l <"$W/out/tok.list")
check "all $ntok tokens detokenize to their source card ($matched matched, ${detok_secs}s)" [ "$matched" -eq "$ntok" ]
rm -f "$W/out/detok.csv" "$W/out/truth.csv"
check "import audited (start and finish)" \
    [ "$(q "SELECT count(*) FROM audit_events WHERE action IN ('import.start', 'import.finish') AND merchant_id = '$M_ID'")" -eq 2 ]
check "audit chain verifies" "$SC_BIN" audit verify >/dev/null 2>&1

echo "# database import checks done after $(($(date +%s) - T0)) s"
# --------------------------------------- 3. a large CSV, killed and resumed
CSV=$W/big.csv
{
    echo "customer_ref,pan,exp_month,exp_year,security_code"
    gen_pans "$ROWS" 4242 | awk '{ printf "C%07d,%s,%d,%d,%03d\n", NR, $1, 1 + NR % 12, 2029 + NR % 4, NR % 1000 }'
} >"$CSV"
cut -d, -f2 "$CSV" | tail -n +2 >>"$W/all_pans.txt"
job_rows() { q "SELECT count(*) FROM import_rows WHERE merchant_id = '$M_ID' AND job_id = 'big'"; }
tokens_before=$(q "SELECT count(*) FROM tokens")
BIG=(import --merchant "$M_ID" --job big --csv "$CSV" --id-col customer_ref --pan-col pan
    --exp-month-col exp_month --exp-year-col exp_year --mapping "$W/out/map-big.csv")
imp_big() { "$SC_BIN" "${BIG[@]}" "$@"; }
"$SC_BIN" "${BIG[@]}" >"$W/out/big1.json" 2>"$W/out/big1.err" & # the import itself: kill -9 hits it
pid=$!
for _ in $(seq 1 600); do
    [ "$(job_rows)" -ge $((ROWS / 4)) ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
at_kill=$(job_rows)
check "import killed midway (SIGKILL at $at_kill of $ROWS rows)" [ "$at_kill" -gt 0 ] && [ "$at_kill" -lt "$ROWS" ]
check "after the kill: every token row has its mapping row (whole batches only)" \
    [ "$(q "SELECT count(*) FROM tokens")" -eq "$((tokens_before + at_kill))" ]
imp_big >"$W/out/big-again.json" 2>&1
check "a rerun without --resume is refused (the mapping file or the job exists)" [ $? -ne 0 ]
t=$(date +%s.%N)
imp_big --resume >"$W/out/big2.json" 2>"$W/out/big2.err"
rc=$?
big_secs=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
check "resumed import exits 0" [ "$rc" -eq 0 ]
R=$W/out/big2.json
expect_r "resume skipped the rows committed before the kill" .skipped "$at_kill"
expect_r "resume imported the rest" .imported "$((ROWS - at_kill))"
expect_r "security_code column reported" '.findings[0].column' security_code
check "every row imported once: $ROWS mapping rows in the database" [ "$(job_rows)" -eq "$ROWS" ]
check "every row imported once: $ROWS new tokens" [ "$(q "SELECT count(*) FROM tokens")" -eq "$((tokens_before + ROWS))" ]
check "mapping file complete ($ROWS rows, each source id once)" \
    [ "$(tail -n +2 "$W/out/map-big.csv" | cut -d, -f1 | sort -u | wc -l)" -eq "$ROWS" ]
check "mapping ids are exactly the source ids" \
    cmp -s <(tail -n +2 "$CSV" | cut -d, -f1 | sort) <(tail -n +2 "$W/out/map-big.csv" | cut -d, -f1 | sort)
big_rate=$(jq -r .rows_per_s "$R")
ok "CSV import after resume: $((ROWS - at_kill)) rows in ${big_secs}s ($big_rate rows/s by its report)"
THROUGHPUT="database $db_rate rows/s; CSV $big_rate rows/s"

echo "# large import done after $(($(date +%s) - T0)) s"
# --------------------------------------------------- 4. malformed CSV
bad() { # bad NAME: runs an import of $W/NAME.csv into job NAME; JSON in $W/out/NAME.json
    "$SC_BIN" import --merchant "$M_ID" --job "$1" --csv "$W/$1.csv" --id-col id --pan-col pan \
        --exp-col exp --mapping "$W/out/map-$1.csv" >"$W/out/$1.json" 2>"$W/out/$1.err"
    BAD_RC=$?
}
gen_pans 200 7777 >"$W/fresh.txt" # cards the vault has not seen
cat "$W/fresh.txt" >>"$W/all_pans.txt"
p() { sed -n "${1}p" "$W/fresh.txt"; }
printf 'id,pan,exp\nq1,%s,12/30\nq2,%s,12/30\nq3,"%s"x,12/30\nq4,%s,12/30\n' "$(p 101)" "$(p 102)" "$(p 103)" "$(p 104)" >"$W/quote.csv"
bad quote
check "bad quoting: exit 1, error names line 4" [ "$BAD_RC" -eq 1 ] && grep -q 'line 4: text after the closing quote' "$W/out/quote.err"
check "bad quoting: the 2 rows before it stay imported and mapped" [ "$(jq -r .mapping_rows "$W/out/quote.json")" -eq 2 ]
printf 'id,pan,exp\nc1,%s,12/30\nc2,%s,12/30,extra\nc3,%s,12/30\n' "$(p 111)" "$(p 112)" "$(p 113)" >"$W/cols.csv"
bad cols
check "wrong column count: refused with its line, the rest imported" \
    [ "$BAD_RC" -eq 0 ] && [ "$(jq -r '.refusals[0] | "\(.line) \(.reason)"' "$W/out/cols.json")" = "3 wrong_column_count" ] && \
    [ "$(jq -r .imported "$W/out/cols.json")" -eq 2 ]
{
    printf 'id,pan,exp\nl1,%s,12/30\nl2,"' "$(p 121)"
    head -c 1100000 /dev/zero | tr '\0' 'a'
    printf '",12/30\nl3,%s,12/30\n' "$(p 122)"
} >"$W/long.csv"
bad long
check "a 1 MiB line: exit 1, error names line 3, the row before it imported" \
    [ "$BAD_RC" -eq 1 ] && grep -q 'line 3: the record is longer than the 1 MiB limit' "$W/out/long.err" && \
    [ "$(jq -r .imported "$W/out/long.json")" -eq 1 ]
printf 'id,pan,exp,name\nu1,%s,12/30,ok\nu2,%s,12/30,\xff\xfe\nu3,%s,12/30,ok\n' "$(p 131)" "$(p 132)" "$(p 133)" >"$W/utf8.csv"
bad utf8
check "invalid UTF-8: refused with its line, the rest imported" \
    [ "$(jq -r '.refusals[0] | "\(.line) \(.reason)"' "$W/out/utf8.json")" = "3 invalid_utf8" ] && \
    [ "$(jq -r .imported "$W/out/utf8.json")" -eq 2 ]
printf 'id,pan,exp\nv1,%s,12/30\nv2,4111111111111112,12/30\nv3,41111111111111111111,12/30\nv4,4111-x,12/30\nv5,%s,13/30\n' "$(p 141)" "$(p 142)" >"$W/invalid.csv"
bad invalid
check "invalid rows refused by reason: luhn, too_long, invalid_pan, invalid_expiry" \
    [ "$(jq -cS .refused_by_reason "$W/out/invalid.json")" = '{"invalid_expiry":1,"invalid_pan":1,"luhn":1,"too_long":1}' ]

# ------------------------------------------- 5. clean up as documented, scan again
L "CREATE TABLE vault_map (row_id text, token text, brand text, last4 text, exp_month int,
                         exp_year int, merged int)"
psql -X -q -v ON_ERROR_STOP=1 -d legacy \
    -c "\\copy vault_map FROM '$W/out/map-db.csv' WITH (FORMAT csv, HEADER true)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d legacy >/dev/null <<'SQL' || not_ok "clean-up SQL failed"
ALTER TABLE payment_methods ADD COLUMN card_token text, ADD COLUMN card_last4 text;
UPDATE payment_methods p SET card_token = m.token, card_last4 = m.last4
  FROM vault_map m WHERE m.row_id = p.id::text;
ALTER TABLE payment_methods DROP COLUMN card_number, DROP COLUMN card_display, DROP COLUMN cvv;
UPDATE orders SET notes = notes - 'pan' - 'cvv', meta = NULL;
DROP TABLE vault_map;
TRUNCATE audit_log;
VACUUM FULL payment_methods;
VACUUM FULL orders;
SQL
check "shop table holds tokens now ($((N - expired)) rows)" \
    [ "$(L "SELECT count(*) FROM payment_methods WHERE card_token LIKE 'tok_%'")" -eq "$((N - expired))" ]
rm -rf "$D/logs/app.log" "$D/logs/archive" "$D/exports" "$D/dump"
run_scan after --db --source-url-file "$W/legacy.url" "$D"
check "after the purge scan is clean (exit 0)" [ "$SCAN_RC" -eq 0 ]
check "after the purge: 0 findings, the decoy log still scanned" \
    [ "$(jq -rs '.[-1] | "\(.findings) \(.files)"' "$W/out/after.json")" = "0 1" ]

# ------------------------------------------------ 6. no card number anywhere
sort -u "$W/all_pans.txt" -o "$W/all_pans.txt"
places=("$W"/out/* "$SC_SERVICE_LOG")
leaks=$(grep -F -l -f "$W/all_pans.txt" "${places[@]}" 2>/dev/null | wc -l)
check "no full card number ($(wc -l <"$W/all_pans.txt") searched) in ${#places[@]} outputs, reports, mappings or the service log" \
    [ "$leaks" -eq 0 ]
[ "$leaks" -eq 0 ] || grep -F -l -f "$W/all_pans.txt" "${places[@]}" | indent

echo "# throughput: $THROUGHPUT; total $(($(date +%s) - T0)) s"
sc_finish
