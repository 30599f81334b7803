#!/usr/bin/env bash
# A pg_auto_failover formation on this machine: a monitor and two nodes (a primary and a
# synchronous secondary), each with its own port and data directory under DIR, run as
# the `postgres` user (the server refuses root). Used by `just ha`, `just ha-bench` and
# tests/api/ha.rs.
#
#   scripts/ha.sh up DIR [MONITOR_PORT NODE1_PORT NODE2_PORT]   create and start; prints DATABASE_URL
#   scripts/ha.sh state DIR                                     pg_autoctl show state
#   scripts/ha.sh primary-port DIR                              port of the current primary
#   scripts/ha.sh switchover DIR                                planned switchover (waits for it)
#   scripts/ha.sh kill-primary DIR                              SIGKILL the primary's keeper and postmaster
#   scripts/ha.sh wait-healthy DIR                              until there is a primary and a secondary
#   scripts/ha.sh down DIR                                      stop everything, remove DIR
set -euo pipefail

cmd=${1:?usage: scripts/ha.sh up|state|primary-port|switchover|kill-primary|wait-healthy|down DIR}
dir=${2:?DIR}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

if ! command -v pg_autoctl >/dev/null || [ ! -e "$("$PG_BIN/pg_config" --pkglibdir)/pgautofailover.so" ]; then
    echo "pg_auto_failover is not installed: apt-get install -y --no-install-recommends postgresql-15-auto-failover pg-auto-failover-cli" >&2
    exit 3
fi

# pg_autoctl keeps its own state under XDG directories; keeping them in DIR makes the
# formation disposable.
as_pg() {
    local env=(env "XDG_CONFIG_HOME=$dir/xdg/config" "XDG_DATA_HOME=$dir/xdg/data"
        "XDG_RUNTIME_DIR=$dir/xdg/run" "PG_CONFIG=$PG_BIN/pg_config" "PATH=$PG_BIN:$PATH"
        "PG_AUTOCTL_DEBUG=")
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "${env[@]}" "$@"
    else
        "${env[@]}" "$@"
    fi
}

monitor_uri() {
    echo "postgres://autoctl_node@127.0.0.1:$(cat "$dir/monitor.port")/pg_auto_failover?sslmode=disable"
}

# Runs `pg_autoctl run` for one data directory in the background; its pid in DIR/NAME.pid.
run_keeper() {
    local name=$1
    as_pg bash -c 'nohup pg_autoctl run --pgdata "$1" >"$2" 2>&1 & echo $! >"$3"' _ \
        "$dir/$name" "$dir/$name.log" "$dir/$name.pid"
}

state() {
    as_pg pg_autoctl show state --pgdata "$dir/monitor" "$@"
}

# Current primary's port (empty while there is none).
primary_port() {
    as_pg psql -XAtq -h 127.0.0.1 -p "$(cat "$dir/monitor.port")" -U autoctl_node pg_auto_failover -c \
        "select nodeport from pgautofailover.node
         where reportedstate = goalstate and reportedstate in ('single', 'wait_primary', 'primary')" 2>/dev/null || true
}

wait_healthy() {
    local limit=${1:-120}
    for _ in $(seq 1 $((limit * 2))); do
        local n
        n=$(as_pg psql -XAtq -h 127.0.0.1 -p "$(cat "$dir/monitor.port")" -U autoctl_node pg_auto_failover -c \
            "select count(*) from pgautofailover.node where reportedstate = goalstate and reportedstate in ('primary', 'secondary')" 2>/dev/null || echo 0)
        [ "$n" = 2 ] && return 0
        sleep 0.5
    done
    echo "the formation did not become primary + secondary within ${limit}s" >&2
    state >&2 || true
    return 1
}

case $cmd in
up)
    pm=${3:-5440} p1=${4:-5441} p2=${5:-5442}
    mkdir -p "$dir/xdg/run"
    chmod 700 "$dir/xdg/run"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
    echo "$pm" >"$dir/monitor.port"
    common=(--pgctl "$PG_BIN/pg_ctl" --hostname 127.0.0.1 --auth trust --no-ssl)
    as_pg pg_autoctl create monitor --pgdata "$dir/monitor" --pgport "$pm" "${common[@]}" >"$dir/create.log" 2>&1
    # Fast failure detection (defaults: 5 s health checks, 20 s unhealthy, 30 s demote
    # timeout, so 20-30 s of downtime): check every second, call a node unhealthy after
    # 3 s without a report, and give an unreachable primary 5 s to demote itself (more
    # than the keepers' network_partition_timeout below, so the old primary has stopped
    # taking writes before the secondary is promoted).
    cat >>"$dir/monitor/postgresql.conf" <<CONF
pgautofailover.health_check_period = 1000
pgautofailover.health_check_timeout = 1000
pgautofailover.health_check_max_retries = 1
pgautofailover.health_check_retry_delay = 500
pgautofailover.node_considered_unhealthy_timeout = 3000
pgautofailover.primary_demote_timeout = 5000
pgautofailover.startup_grace_period = 2000
CONF
    run_keeper monitor
    for _ in $(seq 1 120); do
        as_pg pg_isready -q -h 127.0.0.1 -p "$pm" && break
        sleep 0.5
    done
    uri=$(monitor_uri)
    node=0
    for port in "$p1" "$p2"; do
        node=$((node + 1))
        echo "$port" >"$dir/node$node.port"
        as_pg pg_autoctl create postgres --pgdata "$dir/node$node" --pgport "$port" --name "node$node" \
            --monitor "$uri" --dbname authgraph "${common[@]}" >>"$dir/create.log" 2>&1
        as_pg pg_autoctl config set --pgdata "$dir/node$node" timeout.network_partition_timeout 3 >/dev/null
        as_pg pg_autoctl config set --pgdata "$dir/node$node" timeout.prepare_promotion_walreceiver 1 >/dev/null
        # Sized for a test: the machine's shared server keeps the big allowance.
        cat >>"$dir/node$node/postgresql.conf" <<CONF
max_connections = 40
shared_buffers = 32MB
CONF
        run_keeper "node$node"
        if [ $node = 1 ]; then
            for _ in $(seq 1 120); do
                [ "$(primary_port)" = "$p1" ] && break
                sleep 0.5
            done
        fi
    done
    wait_healthy 120
    echo "postgres://postgres@127.0.0.1:$p1,127.0.0.1:$p2/authgraph?target_session_attrs=read-write"
    ;;
state)
    state
    ;;
primary-port)
    primary_port
    ;;
wait-healthy)
    wait_healthy "${3:-120}"
    ;;
switchover)
    as_pg pg_autoctl perform switchover --pgdata "$dir/monitor" --wait 60
    ;;
kill-primary)
    port=$(primary_port)
    [ -n "$port" ] || { echo "no primary" >&2; exit 1; }
    for n in node1 node2; do
        if [ "$(cat "$dir/$n.port")" = "$port" ]; then
            keeper=$(cat "$dir/$n.pid")
            postmaster=$(head -1 "$dir/$n/postmaster.pid")
            # The whole keeper tree (supervisor, its node-active and postgres
            # services) and the postmaster, at once: a keeper left alive restarts a
            # postmaster killed alone, which is no failover.
            kill -KILL $(pgrep -P "$keeper") "$keeper" "$postmaster" 2>/dev/null || true
            echo "$n"
            exit 0
        fi
    done
    echo "no node on port $port" >&2
    exit 1
    ;;
down)
    for n in node1 node2 monitor; do
        if [ -f "$dir/$n.pid" ]; then
            pid=$(cat "$dir/$n.pid")
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    sleep 1
    for n in node1 node2 monitor; do
        if [ -f "$dir/$n/postmaster.pid" ]; then
            as_pg "$PG_BIN/pg_ctl" -D "$dir/$n" -m immediate stop >/dev/null 2>&1 || true
        fi
        if [ -f "$dir/$n.pid" ]; then
            pid=$(cat "$dir/$n.pid")
            kill -KILL $(pgrep -P "$pid" 2>/dev/null) "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$dir"
    ;;
*)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
