#!/usr/bin/env bash
# `make run`: a private PostgreSQL cluster, a KEK and a demo merchant under
# .run/ (created once, reused afterwards), then `cardvault serve` in the
# foreground. Ctrl-C stops the service (it drains and exits 0) and then the
# cluster. Run twice in a row: the second run reuses everything.
# Two database roles, as in production (docs/operations.md): migrate and the
# demo merchant run as the cluster's owner; serve runs as the login role
# cardvault_app, a member of cardvault_service (created by migrate), which
# can neither alter the schema nor touch the audit trail's triggers. Both log
# in without a password over the private Unix socket (trust: local only).
# CARDVAULT_RUN_DIR (default .run/) and CARDVAULT_RUN_BIN (default ./cardvault)
# let a test run it beside a developer's own state.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state=${CARDVAULT_RUN_DIR:-$root/.run}
bin=${CARDVAULT_RUN_BIN:-./cardvault}
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
port=${CARDVAULT_RUN_PGPORT:-5499}
listen=${CARDVAULT_LISTEN:-127.0.0.1:8080}
# The demo shop: another origin (another port) than the vault's.
shop_listen=${CARDVAULT_RUN_SHOP_LISTEN:-127.0.0.1:8081}
mkdir -p "$state"
chmod 700 "$state"

# PostgreSQL refuses to run as root: as root the cluster belongs to `postgres`.
if [ "$(id -u)" -eq 0 ]; then
  pgdata="$state/pg"
  if ! runuser -u postgres -- test -x "$state" 2>/dev/null; then
    # .run/ sits under a folder postgres cannot enter (e.g. /root): keep the
    # cluster in a postgres-owned folder instead.
    # (one per checkout, or per CARDVAULT_RUN_DIR when one is given).
    pgdata="/var/lib/postgresql/cardvault-run-$(echo "${CARDVAULT_RUN_DIR:+$state}${CARDVAULT_RUN_DIR:-$root}" | sha256sum | cut -c1-12)"
  fi
  as_pg() { runuser -u postgres -- "$@"; }
  pguser=postgres
  chmod 711 "$state"
else
  pgdata="$state/pg"
  as_pg() { "$@"; }
  pguser=$(id -un)
fi
sock="$pgdata.sock"

if [ ! -f "$pgdata/PG_VERSION" ]; then
  echo "run: creating a private PostgreSQL cluster in $pgdata"
  mkdir -p "$pgdata" "$sock"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$pgdata" "$sock"
  as_pg "$pgbin/initdb" -D "$pgdata" -A trust -U "$pguser" --no-instructions >/dev/null
fi
mkdir -p "$sock"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$sock"
if ! as_pg "$pgbin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
  # Unix socket only (no TCP), fsync on: this is a durable local vault.
  as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w \
    -o "-c listen_addresses='' -k $sock -p $port" start >/dev/null
fi
stop_pg() { as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true; }

if ! as_pg "$pgbin/psql" -h "$sock" -p "$port" -U "$pguser" -d postgres -Atqc \
     "SELECT 1 FROM pg_database WHERE datname = 'cardvault'" | grep -q 1; then
  as_pg "$pgbin/createdb" -h "$sock" -p "$port" -U "$pguser" cardvault
fi

if [ ! -f "$state/kek" ]; then
  (umask 077 && openssl rand -hex 32 > "$state/kek")
  echo "run: created a KEK in $state/kek (mode 0600). Losing it makes every token unreadable."
fi

export CARDVAULT_DATABASE_URL="host=$sock port=$port user=$pguser dbname=cardvault"
export CARDVAULT_KEK_FILE="$state/kek"
export CARDVAULT_LISTEN="$listen"
# No load balancer in front: Ctrl-C closes the listener at once.
export CARDVAULT_DRAIN_GRACE_MS=${CARDVAULT_DRAIN_GRACE_MS:-0}

"$bin" migrate >/dev/null
if [ ! -s "$state/merchant.json" ]; then
  (umask 077 && "$bin" merchant create "Demo Shop" > "$state/merchant.json.tmp" &&
   mv "$state/merchant.json.tmp" "$state/merchant.json")
fi
# The demo shop's publishable key, bound to the shop's origin (created once;
# its origin is set again on every run, in case the shop's port changed).
shop_origin="http://$shop_listen"
if [ ! -s "$state/shop.json" ]; then
  mid=$(sed -n 's/.*"merchant_id":"\([^"]*\)".*/\1/p' "$state/merchant.json")
  (umask 077 && "$bin" key create --merchant "$mid" --scopes tokenize \
     --allowed-origin "$shop_origin" > "$state/shop.json.tmp" && mv "$state/shop.json.tmp" "$state/shop.json")
fi
shop_pk=$(sed -n 's/.*"key":"\([^"]*\)".*/\1/p' "$state/shop.json")
"$bin" key origins "${shop_pk:0:12}" --set "$shop_origin" >/dev/null
sri=$("$bin" elements-sri)

# The service's login role (idempotent).
as_pg "$pgbin/psql" -h "$sock" -p "$port" -U "$pguser" -d cardvault -X -q -v ON_ERROR_STOP=1 -c \
  "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cardvault_app') THEN
     CREATE ROLE cardvault_app LOGIN IN ROLE cardvault_service; END IF; END \$\$" >/dev/null
app_url="host=$sock port=$port user=cardvault_app dbname=cardvault"
get() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$state/merchant.json"; }

cat <<MSG

cardvault is starting on http://$listen  (Ctrl-C to stop)
  database roles:  serve as cardvault_app (member of cardvault_service);
                   migrate, merchant, key, keys and audit commands as $pguser
  merchant:        $(get merchant_id)
  publishable key: $(get publishable_key)   (tokenize)
  secret key:      $(get secret_key)   (tokenize, read, delete)
  detokenize key:  $(get detokenize_key)   (detokenize only)
  relay key:       $(get relay_key)   (relay only: docs/relay.md)
  (saved in $state/merchant.json, mode 0600)

Try:
  curl -s -X POST http://$listen/v1/tokens \\
    -H 'Authorization: Bearer $(get publishable_key)' \\
    -H 'Content-Type: application/json' \\
    -d '{"pan":"4242 4242 4242 4242","exp_month":12,"exp_year":2030,"cvc":"123"}'
  curl -s http://$listen/v1/tokens/TOKEN -H 'Authorization: Bearer $(get secret_key)'
  curl -s -X POST http://$listen/v1/tokens/TOKEN/detokenize -H 'Authorization: Bearer $(get detokenize_key)'
  curl -s http://${CARDVAULT_OPS_LISTEN:-127.0.0.1:9090}/readyz     (health and metrics: the ops listener)

Card fields (docs/elements.md):
  demo shop:       $shop_origin/   (another origin; its server receives tokens only)
  shop's pk_ key:  $shop_pk   (tokenize; allowed origin $shop_origin)
  snippet for a checkout page on $shop_origin:
    <script src="http://$listen/elements.js"
            integrity="$sri" crossorigin="anonymous"></script>
    <div id="card"></div>
    <script>
      const card = CardVault({ key: '$shop_pk' }).mount('#card', { title: 'Card details' });
      // const { token } = await card.tokenize();   then send the token to your server
    </script>

MSG

# The service handles SIGINT itself (drain, exit 0); the script just waits
# for it, then stops the cluster.
trap ':' INT TERM
set +e
CARDVAULT_DATABASE_URL="$app_url" "$bin" serve &
svc=$!
shop=""
if command -v node >/dev/null; then
  SHOP_LISTEN="$shop_listen" VAULT_ORIGIN="http://$listen" SHOP_PK="$shop_pk" SHOP_SRI="$sri" \
    node docker/demo-shop/serve.js &
  shop=$!
else
  echo "run: node not found: the demo shop is not served (the vault runs as usual)"
fi
wait "$svc"; rc=$?
if kill -0 "$svc" 2>/dev/null; then wait "$svc"; rc=$?; fi
if [ -n "$shop" ]; then kill -TERM "$shop" 2>/dev/null; wait "$shop" 2>/dev/null; fi
set -e
stop_pg
echo "run: stopped (service exit code $rc)"
exit "$rc"
