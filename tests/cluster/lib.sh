#!/usr/bin/env bash
# The cluster of `make cluster` and `make test-cluster`, on one machine,
# loopback only. Source it, then:
#   cl_up BINARY      a pg_auto_failover monitor, two PostgreSQL 15 nodes
#                     (primary + synchronous standby), two cardvault
#                     instances (CARDVAULT_INSTANCE_ID a and b) on a
#                     multi-host libpq URI with target_session_attrs=read-write,
#                     HAProxy in front; CL_URL is the one URL to use
#   cl_down           stops everything cl_up started, by process id
#   cl_primary_port   the port of the node that is primary now (monitor's view)
#   cl_psql SQL       psql on the current primary's cardvault database
# PostgreSQL refuses to run as root: as root, the nodes and the monitor run
# as the postgres user (runuser), in a directory it owns.
CL_PGBIN=${CL_PGBIN:-$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null)}
CL_DIR=${CL_DIR:-$(mktemp -d /tmp/cv-cluster.XXXXXX)}
CL_PIDS=()
CL_GROUPS=() # process groups of the nodes and the monitor (cl_spawn)
# Failover in seconds, not the 20 s default (pg_auto_failover's monitor settings).
CL_UNHEALTHY_MS=${CL_UNHEALTHY_MS:-6000}

# pg_autoctl keeps its own files under XDG_CONFIG_HOME and XDG_DATA_HOME: inside CL_DIR.
cl_as_pg() {
    local e=(env PATH="$CL_PGBIN:$PATH" XDG_CONFIG_HOME="$CL_DIR/xdg-config" XDG_DATA_HOME="$CL_DIR/xdg-data")
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "${e[@]}" "$@"; else "${e[@]}" "$@"; fi
}
# cl_spawn NAME CMD...: runs CMD as the postgres user in the background, in
# its own session and process group (so a fault can kill one node's whole
# group); its own process id (not runuser's) goes to CL_DIR/NAME.pid and CL_PIDS.
cl_spawn() {
    local name=$1 e
    shift
    e=(env PATH="$CL_PGBIN:$PATH" XDG_CONFIG_HOME="$CL_DIR/xdg-config" XDG_DATA_HOME="$CL_DIR/xdg-data")
    [ "$(id -u)" -eq 0 ] && e=(runuser -u postgres -- "${e[@]}")
    rm -f "$CL_DIR/$name.pid"
    setsid "${e[@]}" sh -c 'echo $$ > "$0"; exec "$@"' "$CL_DIR/$name.pid" "$@" >>"$CL_DIR/$name.log" 2>&1 &
    for _ in $(seq 1 50); do [ -s "$CL_DIR/$name.pid" ] && break; sleep 0.1; done
    CL_PIDS+=("$(cat "$CL_DIR/$name.pid")")
    # setsid made the process a group leader: its group id is its own pid
    # (runuser's, the parent of the pid above, as root)
    CL_GROUPS+=("$(ps -o pgid= -p "$(cat "$CL_DIR/$name.pid")" | tr -d ' ')")
}

# cl_pgid NAME: the process group of a node started by cl_spawn (runuser leads it).
cl_pgid() { ps -o pgid= -p "$(cat "$CL_DIR/$1.pid")" | tr -d ' '; }

cl_free_port() { # below the ephemeral range, nobody listening
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! grep -qw "$p" "$CL_DIR/ports" 2>/dev/null; then
            echo "$p" >>"$CL_DIR/ports"
            echo "$p"
            return 0
        fi
    done
    return 1
}

cl_log() { echo "cluster: $*" >&2; }

cl_monitor_uri() { echo "postgres://autoctl_node@127.0.0.1:$CL_MON_PORT/pg_auto_failover?sslmode=disable"; }

# cl_node_state NAME: the node's current state as the monitor reports it.
cl_state() {
    cl_as_pg pg_autoctl show state --pgdata "$CL_DIR/monitor" --json 2>/dev/null
}

# cl_primary_port: the port of the node the monitor assigns the primary role
# (primary, wait_primary or single) and that answers as a primary (not in
# recovery; 2 s connect timeout, so a stopped node does not hang us); empty
# when none. The monitor's *reported* state of a dead node stays "primary".
cl_primary_port() {
    local port r
    for port in $(cl_state | jq -r '.[] | select(.assigned_group_state == "primary" or
            .assigned_group_state == "wait_primary" or .assigned_group_state == "single") | .nodeport' 2>/dev/null); do
        r=$(PGCONNECT_TIMEOUT=2 timeout 4 psql -X -q -At "host=127.0.0.1 port=$port user=postgres dbname=postgres" \
            -c "SELECT pg_is_in_recovery()" 2>/dev/null)
        [ "$r" = f ] && { echo "$port"; return 0; }
    done
    return 0
}

cl_psql() {
    local port
    port=$(cl_primary_port)
    psql -X -q -At -v ON_ERROR_STOP=1 "host=127.0.0.1 port=${port:-$CL_PG1_PORT} user=postgres dbname=cardvault" -c "$1"
}

# cl_wait_states N TIMEOUT_S: until N nodes are primary/secondary (a healthy pair).
cl_wait_healthy() {
    local t=${1:-120}
    for _ in $(seq 1 $((t * 2))); do
        if [ "$(cl_state | jq '[.[] | select(.current_group_state == .assigned_group_state and
                (.current_group_state == "primary" or .current_group_state == "secondary"))] | length' 2>/dev/null)" = 2 ]; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

cl_start_node() { # cl_start_node NAME PORT
    cl_spawn "$1" pg_autoctl create postgres --pgdata "$CL_DIR/$1" --pgport "$2" --pgctl "$CL_PGBIN/pg_ctl" \
        --hostname 127.0.0.1 --name "$1" --dbname cardvault --monitor "$(cl_monitor_uri)" \
        --auth trust --no-ssl --run
}

cl_start_vault() { # cl_start_vault ID PORT OPS_PORT
    env CARDVAULT_DATABASE_URL="$CL_APP_URL" CARDVAULT_LISTEN="127.0.0.1:$2" \
        CARDVAULT_OPS_LISTEN="127.0.0.1:$3" CARDVAULT_INSTANCE_ID="$1" \
        CARDVAULT_KEK_FILE="$CL_DIR/kek" CARDVAULT_TRUSTED_PROXIES=127.0.0.1 \
        CARDVAULT_MAX_CONNECTIONS_PER_IP=512 CARDVAULT_RATE_LIMIT_RPS=0 \
        CARDVAULT_DRAIN_GRACE_MS=1000 CARDVAULT_EXPECT_SYNC_STANDBY=1 \
        "$CL_BIN" serve >>"$CL_DIR/vault-$1.log" 2>&1 &
    eval "CL_VAULT_${1^^}_PID=$!"
    CL_PIDS+=($!)
}

cl_haproxy_cfg() {
    printf 'HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nRetry-After: 2\r\nConnection: close\r\n\r\n{"error":{"type":"api_error","code":"service_unavailable","message":"The vault is temporarily unavailable; retry later."}}\n' >"$CL_DIR/503.http"
    cat >"$CL_DIR/haproxy.cfg" <<EOF
# Written by tests/cluster/lib.sh: docker/cluster/haproxy.cfg is the same for real hosts.
global
    maxconn 2048
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option forwardfor
    # A request is sent again only when the connection to a vault failed
    # before it was sent: never a POST that reached a vault.
    retries 2
    option redispatch
    # No vault ready (no writable primary during a failover): the API's
    # error shape and a Retry-After, like the vaults' own 503.
    errorfile 503 $CL_DIR/503.http
frontend vault
    bind 127.0.0.1:$CL_PORT
    default_backend vaults
backend vaults
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
    # A CVC hold lives in the memory of the instance that made it.
    use-server a if { req.hdr(CardVault-Hold) -m beg hold_a_ }
    use-server b if { req.hdr(CardVault-Hold) -m beg hold_b_ }
    server a 127.0.0.1:$CL_VAULT_A_PORT check port $CL_OPS_A_PORT
    server b 127.0.0.1:$CL_VAULT_B_PORT check port $CL_OPS_B_PORT
EOF
}

cl_up() {
    CL_BIN=$1
    [ -x "$CL_BIN" ] || { cl_log "no binary $CL_BIN"; return 1; }
    command -v pg_autoctl >/dev/null || [ -x "$CL_PGBIN/pg_autoctl" ] ||
        { cl_log "pg_autoctl missing: run make deps"; return 1; }
    command -v haproxy >/dev/null || { cl_log "haproxy missing: run make deps"; return 1; }
    [ "$(id -u)" -eq 0 ] && chown postgres "$CL_DIR"
    CL_MON_PORT=$(cl_free_port) CL_PG1_PORT=$(cl_free_port) CL_PG2_PORT=$(cl_free_port)
    CL_VAULT_A_PORT=$(cl_free_port) CL_OPS_A_PORT=$(cl_free_port)
    CL_VAULT_B_PORT=$(cl_free_port) CL_OPS_B_PORT=$(cl_free_port) CL_PORT=$(cl_free_port)
    export PGHOST=127.0.0.1 PGUSER=postgres
    cl_log "monitor on 127.0.0.1:$CL_MON_PORT"
    cl_spawn monitor pg_autoctl create monitor --pgdata "$CL_DIR/monitor" --pgport "$CL_MON_PORT" \
        --pgctl "$CL_PGBIN/pg_ctl" --hostname 127.0.0.1 --auth trust --no-ssl --run
    for _ in $(seq 1 120); do
        psql -X -q -At -h 127.0.0.1 -p "$CL_MON_PORT" -U autoctl_node -d pg_auto_failover -c 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.5
    done
    # Faster failure detection than the defaults (20 s), for the faults test.
    psql -X -q -h 127.0.0.1 -p "$CL_MON_PORT" -U postgres -d pg_auto_failover \
        -c "ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = $CL_UNHEALTHY_MS" \
        -c "ALTER SYSTEM SET pgautofailover.health_check_period = 1000" \
        -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || cl_log "could not tune the monitor"
    cl_log "node1 on 127.0.0.1:$CL_PG1_PORT"
    cl_start_node node1 "$CL_PG1_PORT"
    for _ in $(seq 1 240); do
        [ -n "$(cl_primary_port)" ] && break
        sleep 0.5
    done
    [ -n "$(cl_primary_port)" ] || { cl_log "node1 did not become primary (see $CL_DIR/node1.log)"; return 1; }
    cl_log "node2 on 127.0.0.1:$CL_PG2_PORT"
    cl_start_node node2 "$CL_PG2_PORT"
    # pg_basebackup of the standby waits for a spread checkpoint (minutes):
    # an immediate one on the primary hurries it.
    for _ in 1 2 3 4 5 6; do
        sleep 2
        psql -X -q -h 127.0.0.1 -p "$CL_PG1_PORT" -U postgres -d postgres -c CHECKPOINT >/dev/null 2>&1
    done
    cl_wait_healthy 240 || { cl_log "no primary + secondary pair (see $CL_DIR/node*.log)"; return 1; }
    cl_log "primary + synchronous standby up: $(cl_psql "SHOW synchronous_standby_names")"
    export CL_DB_URL="postgresql://postgres@127.0.0.1:$CL_PG1_PORT,127.0.0.1:$CL_PG2_PORT/cardvault?target_session_attrs=read-write&connect_timeout=2"
    CL_APP_URL="postgresql://cardvault_app@127.0.0.1:$CL_PG1_PORT,127.0.0.1:$CL_PG2_PORT/cardvault?target_session_attrs=read-write&connect_timeout=2"
    (umask 077 && openssl rand -hex 32 >"$CL_DIR/kek")
    export CARDVAULT_KEK_FILE="$CL_DIR/kek"
    (cd "$SC_ROOT_DIR" && CARDVAULT_DATABASE_URL="$CL_DB_URL" "$CL_BIN" migrate >/dev/null) ||
        { cl_log "migrate failed"; return 1; }
    cl_psql "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cardvault_app') THEN
              CREATE ROLE cardvault_app LOGIN IN ROLE cardvault_service; END IF; END \$\$" ||
        { cl_log "cannot create cardvault_app"; return 1; }
    cl_start_vault a "$CL_VAULT_A_PORT" "$CL_OPS_A_PORT"
    cl_start_vault b "$CL_VAULT_B_PORT" "$CL_OPS_B_PORT"
    for id in a b; do
        local ops
        ops=$([ $id = a ] && echo "$CL_OPS_A_PORT" || echo "$CL_OPS_B_PORT")
        for _ in $(seq 1 100); do
            curl -sf "http://127.0.0.1:$ops/readyz" >/dev/null 2>&1 && break
            sleep 0.2
        done
        curl -sf "http://127.0.0.1:$ops/readyz" >/dev/null 2>&1 ||
            { cl_log "vault $id not ready (see $CL_DIR/vault-$id.log)"; return 1; }
    done
    cl_haproxy_cfg
    haproxy -W -db -f "$CL_DIR/haproxy.cfg" >>"$CL_DIR/haproxy.log" 2>&1 &
    CL_HAPROXY_PID=$!
    CL_PIDS+=($!)
    export CL_URL="http://127.0.0.1:$CL_PORT"
    for _ in $(seq 1 50); do
        curl -s -o /dev/null "$CL_URL/v1/tokens" 2>/dev/null && return 0
        sleep 0.2
    done
    cl_log "haproxy does not answer (see $CL_DIR/haproxy.log)"
    return 1
}

cl_down() {
    local i g
    # A fault may have stopped a node's group (SIGSTOP) when we are
    # interrupted: continue every group first, or its runuser stays behind,
    # stopped, with its child a zombie.
    for g in "${CL_GROUPS[@]}"; do
        [ -n "$g" ] && kill -CONT -- "-$g" 2>/dev/null
    done
    # the front first, then the vaults, then the database nodes, the monitor last
    for ((i = ${#CL_PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${CL_PIDS[$i]}" 2>/dev/null
    done
    for ((i = ${#CL_PIDS[@]} - 1; i >= 0; i--)); do
        for _ in $(seq 1 200); do kill -0 "${CL_PIDS[$i]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${CL_PIDS[$i]}" 2>/dev/null
    done
    # pg_autoctl stops its PostgreSQL when it stops; a node whose supervisor
    # was killed leaves its postmaster: stop those by their data directory.
    for d in node1 node2 monitor; do
        [ -f "$CL_DIR/$d/postmaster.pid" ] && cl_as_pg "$CL_PGBIN/pg_ctl" -D "$CL_DIR/$d" -m immediate -w stop >/dev/null 2>&1
    done
    # whatever is left in those groups (runuser, a pg_autoctl child)
    for g in "${CL_GROUPS[@]}"; do
        [ -n "$g" ] && kill -KILL -- "-$g" 2>/dev/null
    done
    CL_PIDS=()
    CL_GROUPS=()
}
