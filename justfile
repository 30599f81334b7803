# authgraph tasks. `just` is optional: each recipe is a plain command you can copy.

default:
    @just --list

# Start the machine's PostgreSQL if it is down.
db-up:
    pg_isready -h 127.0.0.1 -p 5432 -q || pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start

# Drop and recreate the development database.
db-reset: db-up
    psql -h 127.0.0.1 -U postgres -c 'drop database if exists authgraph with (force)'
    cargo run -- migrate

# Apply pending migrations.
migrate:
    cargo run -- migrate

# Run the service with GraphiQL at http://127.0.0.1:8080/graphiql.
run:
    cargo run

# Regenerate schema.graphql from the code.
schema:
    cargo run -q -- print-schema > schema.graphql

fmt:
    cargo fmt

lint:
    cargo clippy --workspace --all-targets -- -D warnings

test: db-up
    cargo test

# The Node end-to-end suites alone (audit, gateways, GraphiQL in Chromium); `cargo test` runs
# them too, but installs no browser: this installs Debian's Chromium first (as root, without
# recommended packages) when /usr/bin/chromium is missing.
e2e: db-up chromium
    cd tests/e2e && npm ci --no-audit --no-fund
    cargo test --test api e2e

# Debian's Chromium for the GraphiQL suite: `apt-get install -y --no-install-recommends chromium`.
chromium:
    test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)

# Everything CI runs.
ci:
    bash .ci/run

# The benchmark: release build, then authgraph vs its ceiling and the argon2 limit.
# Plain commands: cargo build --release --workspace && ./target/release/authgraph-bench
bench: db-up
    cargo build --release --workspace
    ./target/release/authgraph-bench

# A pg_auto_failover formation (monitor 5440, nodes 5441 and 5442) under /tmp/authgraph-ha,
# as the `postgres` user; prints the two-host DATABASE_URL. `just ha-down` removes it.
ha dir="/tmp/authgraph-ha":
    bash scripts/ha.sh up {{dir}} 5440 5441 5442

ha-down dir="/tmp/authgraph-ha":
    bash scripts/ha.sh down {{dir}}

# Switchover and SIGKILL failover under load: seconds of SERVICE_UNAVAILABLE, requests
# failed, acknowledged writes missing, refresh chains broken (AUTHGRAPH_BIN=path runs
# another build of the binary, e.g. target/release/authgraph).
ha-bench: db-up
    bash -o pipefail -c "cargo test --test api ha:: -- --nocapture 2>&1 | grep -E '^ha:|test result|panicked'"

# `me` p99 while the retention job prunes a million ended sessions, vs with them present.
bench-retention: db-up
    cargo build --release --workspace
    ./target/release/authgraph-bench --only retention
