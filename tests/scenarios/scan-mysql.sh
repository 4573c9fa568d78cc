#!/usr/bin/env bash
# `cardvault scan` on a MySQL/MariaDB database (docs/migrating.md), end to end:
#
#   tests/scenarios/scan-mysql.sh build/release/cardvault
#
# Starts a throwaway MariaDB server (mariadb-install-db + mariadbd on a temp
# directory, a unix socket and a free loopback port; no network), creates a
# login with a password and SELECT on one database `shop`, and loads a small
# legacy shop: payment_methods (card numbers in a VARCHAR, a cvv column, card
# numbers inside a TEXT note), orders (a string primary key; card numbers and
# "cvv" keys inside a JSON column; decoys: order numbers, phone numbers,
# 16-digit invoice numbers that fail Luhn, Luhn-valid BIGINT references with
# no issuer prefix, tracking numbers), raw_log (no primary key; card numbers
# in a BLOB, plain and UTF-16), customers (decoys only), and a table and a
# column whose names hold a backtick and a space. Then:
#   1. a password in --mysql-url (the command line) is refused, unread;
#   2. the scan (URL and password in an owner-only file) finds exactly the
#      planted card numbers and codes, per table and column, located by
#      primary key (or row position), and nothing in any decoy; text and
#      JSON output; the same through --mysql-url and MYSQL_PWD;
#   3. --sample N reads at most N rows per table;
#   4. a wrong password is an error (exit 2) that does not show it;
#   5. after the purge the scan is clean (exit 0);
#   6. no full card number in any output.
# Ends with "scan-mysql: N passed, N failed" and appends "P F" to
# build/test-results.
SUITE=scan-mysql
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
export LC_ALL=C
require_tools jq awk mariadb mariadb-install-db
MYSQLD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
[ -x "$MYSQLD" ] || { echo "$SUITE: mariadbd is required (Debian package mariadb-server)" >&2; exit 2; }
sc_pin_binary
okif() { # okif STATUS NAME: ok when STATUS is 0 (a compound test's $?)
    if [ "$1" -eq 0 ]; then ok "$2"; else not_ok "$2"; fi
}

MY=$SC_DIR/my
MYSOCK=$MY/sock
MYPORT=$(free_port 15000 15000)
MYPID=""
my_cleanup() {
    if [ -n "$MYPID" ]; then
        kill -TERM "$MYPID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$MYPID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MYPID" 2>/dev/null
    fi
    sc_cleanup
}
trap my_cleanup EXIT
mkdir -p "$MY"
as_user=()
[ "$(id -u)" -eq 0 ] && as_user=(--user=root)
mariadb-install-db --no-defaults "${as_user[@]}" --datadir="$MY/data" --skip-test-db \
    --auth-root-authentication-method=socket >"$MY/install.log" 2>&1 ||
    { tail -n 5 "$MY/install.log"; need "mariadb-install-db" false; }
"$MYSQLD" --no-defaults "${as_user[@]}" --datadir="$MY/data" --socket="$MYSOCK" \
    --port="$MYPORT" --bind-address=127.0.0.1 --skip-name-resolve --innodb-buffer-pool-size=32M \
    --pid-file="$MY/pid" --log-error="$MY/error.log" >/dev/null 2>&1 &
MYPID=$!
up() {
    for _ in $(seq 1 150); do
        mariadb --no-defaults -S "$MYSOCK" -uroot -e 'SELECT 1' >/dev/null 2>&1 && return 0
        kill -0 "$MYPID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
need "MariaDB server started (port $MYPORT)" up
M() { mariadb --no-defaults -S "$MYSOCK" -uroot --batch --skip-column-names "$@"; }
PW="s3cret:p@ss/word%"
M -e "CREATE DATABASE shop; CREATE USER 'auditor'@'127.0.0.1' IDENTIFIED BY '$PW';
      GRANT SELECT ON shop.* TO 'auditor'@'127.0.0.1';" || need "auditor login created" false

# ------------------------------------------------------------ the shop
N=200
W=$SC_DIR/work
mkdir -p "$W/out"
chmod 700 "$W"
gen_pans $((N + 100)) 4711 >"$W/pans.txt"
pan() { sed -n "${1}p" "$W/pans.txt"; }
{
    cat <<'SQL'
USE shop;
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(80), phone VARCHAR(32), email TEXT,
                        born DATE);
CREATE TABLE payment_methods (id INT PRIMARY KEY, customer_id INT, card_number VARCHAR(19),
                              exp VARCHAR(7), cvv CHAR(4), note TEXT, created_at DATETIME);
CREATE TABLE orders (order_no VARCHAR(32) PRIMARY KEY, details JSON, invoice VARCHAR(20),
                     tracking VARCHAR(40), ref BIGINT UNSIGNED, total DECIMAL(10,2));
CREATE TABLE raw_log (line BLOB);
CREATE TABLE `we``ird tbl` (k INT PRIMARY KEY, `card``no` VARCHAR(40));
SQL
    # One a line: PAN, a Luhn-bad twin, a Luhn-valid number without issuer prefix.
    for i in $(seq 1 "$N"); do
        p=$(pan "$i")
        b=$(luhn_pan 4123 $((i + 5000)))
        bad=${b:0:15}$(((${b:15:1} + 1) % 10))
        noiss=$(luhn_pan 9000 "$i")
        printf "INSERT INTO customers VALUES (%d, 'Customer %d', '+1 (555) 010-%04d', 'c%d@example.com', '1980-01-01');\n" "$i" "$i" "$i" "$i"
        note=NULL
        ((i % 10 == 0)) && note="'customer called, card ${p:0:4} ${p:4:4} ${p:8:4} ${p:12} confirmed'"
        printf "INSERT INTO payment_methods VALUES (%d, %d, '%s', '12/29', '%03d', %s, NOW());\n" "$i" "$i" "$p" $((i * 7 % 1000)) "$note"
        if ((i % 5 == 0)); then
            details="{\"pan\": \"$p\", \"cvv\": \"$(printf %03d $((i % 1000)))\", \"note\": \"gift wrap\"}"
        else
            details="{\"phone\": \"+44 20 7946 $(printf %04d "$i")\", \"invoice\": \"$bad\"}"
        fi
        printf "INSERT INTO orders VALUES ('ORD-2024-%08d', '%s', '%s', '1Z999AA1%010d', %s, %d.99);\n" "$i" "$details" "$bad" "$i" "$noiss" "$i"
    done
    for i in $(seq 1 10); do
        printf "INSERT INTO raw_log VALUES (CAST(CONVERT('refund %s' USING utf16le) AS BINARY));\n" "$(pan $((N + i)))"
    done
    for i in $(seq 11 30); do
        printf "INSERT INTO raw_log VALUES ('charged %s ok');\n" "$(pan $((N + i)))"
    done
    for i in $(seq 1 20); do
        printf "INSERT INTO raw_log VALUES ('order ORD-2024-%08d shipped, call +1 555 010 %04d');\n" "$i" "$i"
    done
    for i in $(seq 1 5); do
        printf "INSERT INTO \`we\`\`ird tbl\` VALUES (%d, 'x %s');\n" "$i" "$(pan $((N + 30 + i)))"
    done
} >"$W/fixture.sql"
need "fixture loaded: $N payment methods and orders, 50 log lines, a table with a backtick" \
    M <"$W/fixture.sql"
rm -f "$W/fixture.sql"
head -n $((N + 35)) "$W/pans.txt" >"$W/planted.txt"

(umask 077 && printf 'mysql://auditor:%s@127.0.0.1:%s/shop\n' \
    "$(jq -rn --arg p "$PW" '$p | @uri')" "$MYPORT" >"$W/shop.url")
URL_NOPW="mysql://auditor@127.0.0.1:$MYPORT/shop"

# ----------------------------------------------- 1. no password on argv
"$SC_BIN" scan --mysql-url "mysql://auditor:hunter2@127.0.0.1:$MYPORT/shop" >"$W/out/argv.out" 2>"$W/out/argv.err"
rc=$?
{ [ "$rc" -eq 2 ] && grep -q 'must not hold a password' "$W/out/argv.err" && [ ! -s "$W/out/argv.out" ]; }
okif $? "a password in --mysql-url is a usage error (exit 2, nothing read)"
check "the refusal does not repeat the password" bash -c "! grep -q hunter2 '$W/out/argv.err'"

# ---------------------------------------------------------- 2. scan
run_scan() { # run_scan NAME ARGS...: JSON lines in $W/out/NAME.json, exit status in SCAN_RC
    local name=$1
    shift
    "$SC_BIN" scan --json "$@" >"$W/out/$name.json" 2>"$W/out/$name.err"
    SCAN_RC=$?
}
run_scan before --mysql-url-file "$W/shop.url"
check "scan exits 1 (card data found)" [ "$SCAN_RC" -eq 1 ]
[ "$SCAN_RC" -eq 1 ] || { head -n 5 "$W/out/before.json" "$W/out/before.err" | indent; }
found() { # found FILE KEY TABLE COLUMN: the card_numbers or security_codes of one finding
    jq -rs --arg k "$2" --arg t "$3" --arg c "$4" \
        '[.[] | select(.finding == true and .source == "mysql" and .table == $t and .column == $c) | .[$k]] | add // 0' "$1"
}
expect() { # expect LABEL GOT WANT
    if [ "$2" = "$3" ]; then ok "$1 = $3"; else not_ok "$1 = $2, expected $3"; fi
}
B=$W/out/before.json
expect "payment_methods.card_number (VARCHAR) card numbers" "$(found "$B" card_numbers shop.payment_methods card_number)" "$N"
expect "payment_methods.cvv security codes" "$(found "$B" security_codes shop.payment_methods cvv)" "$N"
expect "payment_methods.note (TEXT, spaced) card numbers" "$(found "$B" card_numbers shop.payment_methods note)" "$((N / 10))"
expect "orders.details (JSON) card numbers" "$(found "$B" card_numbers shop.orders details)" "$((N / 5))"
expect "orders.details \"cvv\" keys" "$(found "$B" security_codes shop.orders details)" "$((N / 5))"
expect "raw_log.line (BLOB, plain and UTF-16) card numbers" "$(found "$B" card_numbers shop.raw_log line)" 30
expect "\`we\`\`ird tbl\`.\`card\`\`no\` card numbers" "$(found "$B" card_numbers 'shop.we`ird tbl' 'card`no')" 5
findings=$(jq -rs '[.[] | select(.finding == true)] | length' "$B")
expect "findings (exactly the 6 planted columns)" "$findings" 6
expect "summary: card numbers" "$(jq -rs '.[-1].card_numbers' "$B")" "$((N + N / 10 + N / 5 + 35))"
expect "summary: security codes" "$(jq -rs '.[-1].security_codes' "$B")" "$((N + N / 5))"
expect "summary: tables read" "$(jq -rs '.[-1].tables' "$B")" 5
expect "summary: rows read" "$(jq -rs '.[-1].rows' "$B")" "$((N + N + N + 50 + 5))"
fp=$(jq -rs '[.[] | select(.finding == true and (
        (.table == "shop.customers") or
        (.table == "shop.orders" and .column != "details") or
        (.table == "shop.payment_methods" and (.column | IN("card_number", "cvv", "note") | not))))] | length' "$B")
decoys=$((N * 9 + 20 * 2))
expect "false positives among about $decoys decoy values (order, phone, invoice, tracking, no-issuer numbers)" "$fp" 0
loc() { jq -rs --arg t "$1" --arg c "$2" '.[] | select(.finding == true and .table == $t and .column == $c) | .'"$3"' | join("; ")' "$B"; }
expect "payment_methods rows named by primary key" "$(loc shop.payment_methods card_number locations)" "id=1; id=2; id=3; id=4; id=5"
expect "payment_methods cvv rows named by primary key" "$(loc shop.payment_methods cvv security_code_locations | cut -d';' -f1)" "id=1"
expect "orders rows named by the string primary key" "$(loc shop.orders details locations | cut -d';' -f1)" "order_no=ORD-2024-00000005"
expect "raw_log (no primary key) rows named by position" "$(loc shop.raw_log line locations | cut -d';' -f1-2)" "row=1; row=2"
expect "samples are masked (BIN and last 4)" \
    "$(jq -rs '[.[] | select(.finding == true) | .samples[] | test("^[0-9]{4,6}\\*+[0-9]{4}$")] | all' "$B")" true
expect "UTF-16 in a BLOB is found as such" "$(jq -rs '[.[] | select(.table == "shop.raw_log") | .encodings[]] | unique | join(" ")' "$B")" utf16le

"$SC_BIN" scan --mysql-url-file "$W/shop.url" >"$W/out/human.txt" 2>&1
rc=$?
{ [ "$rc" -eq 1 ] && grep -qE '^FOUND mysql shop.payment_methods column card_number: 200 card numbers \([0-9]{6}\*+[0-9]{4} ' "$W/out/human.txt" &&
    grep -q '^  card numbers at id=1; id=2' "$W/out/human.txt" &&
    grep -qE '^FOUND: 6 findings \(295 card numbers, 240 security codes\) in 5 tables' "$W/out/human.txt"; }
okif $? "text output: FOUND lines with table, column, masked samples and keys (exit $rc)"
[ "$rc" -eq 1 ] || head -n 3 "$W/out/human.txt" | indent

MYSQL_PWD=$PW run_scan pwd-env --mysql-url "$URL_NOPW"
{ [ "$SCAN_RC" -eq 1 ] && [ "$(jq -rs '.[-1] | "\(.findings) \(.card_numbers) \(.security_codes)"' "$W/out/pwd-env.json")" = "6 295 240" ]; }
okif $? "--mysql-url without a password, the password from MYSQL_PWD: same findings"
CARDVAULT_SCAN_MYSQL_URL=$(cat "$W/shop.url") run_scan env-url --mysql
{ [ "$SCAN_RC" -eq 1 ] && [ "$(jq -rs '.[-1].findings' "$W/out/env-url.json")" = 6 ]; }
okif $? "--mysql with CARDVAULT_SCAN_MYSQL_URL: same findings"
chmod 644 "$W/shop.url"
run_scan loose-file --mysql-url-file "$W/shop.url"
{ [ "$SCAN_RC" -eq 2 ] && grep -q '"error":"configuration"' "$W/out/loose-file.json"; }
okif $? "a URL file others can read is refused (exit 2)"
chmod 600 "$W/shop.url"

# ---------------------------------------------------------- 3. --sample
run_scan sample --mysql-url-file "$W/shop.url" --sample 10
{ [ "$(jq -rs '.[-1].rows' "$W/out/sample.json")" -eq 45 ] &&
    [ "$(found "$W/out/sample.json" card_numbers shop.payment_methods card_number)" -eq 10 ]; }
okif $? "--sample 10: at most 10 rows per table (45 rows), 10 card numbers in card_number"

# ---------------------------------------------- 4. wrong password
MYSQL_PWD=wrong-one run_scan badpw --mysql-url "$URL_NOPW"
{ [ "$SCAN_RC" -eq 2 ] && grep -q '"error":"cannot connect"' "$W/out/badpw.json"; }
okif $? "a wrong password: exit 2, a connection error"
check "no password in any output" bash -c "! grep -rqF -e '$PW' -e wrong-one -e hunter2 '$W/out'"

# ------------------------------------------------------ 5. purge, scan again
M shop <<'SQL' || not_ok "purge SQL failed"
ALTER TABLE payment_methods DROP COLUMN card_number, DROP COLUMN cvv;
UPDATE payment_methods SET note = NULL WHERE note LIKE 'customer called, card%';
UPDATE orders SET details = JSON_REMOVE(details, '$.pan', '$.cvv') WHERE JSON_EXISTS(details, '$.pan');
DELETE FROM raw_log WHERE line NOT LIKE 'order ORD-%';
DROP TABLE `we``ird tbl`;
SQL
run_scan after --mysql-url-file "$W/shop.url"
{ [ "$SCAN_RC" -eq 0 ] && [ "$(jq -rs '.[-1] | "\(.findings) \(.tables) \(.errors)"' "$W/out/after.json")" = "0 4 0" ]; }
okif $? "after the purge the scan is clean (exit 0, 0 findings, 4 tables)"

# ------------------------------------------------ 6. no card number anywhere
leaks=$(grep -F -l -f "$W/planted.txt" "$W"/out/* 2>/dev/null | wc -l)
check "no full card number ($(wc -l <"$W/planted.txt") searched) in $(ls "$W/out" | wc -l) outputs" [ "$leaks" -eq 0 ]
sc_finish
