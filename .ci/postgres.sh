#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, on 127.0.0.1 and a free port.
#
#   eval "$(bash .ci/postgres.sh)"     # exports ABSTRACTRUNTIME_TEST_POSTGRES_DSN
#   bash .ci/postgres.sh stop          # stops it and removes its directory
#
# Installs Debian's `postgresql` when no initdb is found (root only), initialises a cluster in
# $ABSTRACTRUNTIME_PG_DIR (default /tmp/abstractruntime-ci-postgres) as the `postgres` OS user when run as root
# (initdb refuses root), starts it with durability off (a test server), waits until it accepts connections, and
# creates the role and database `abstractruntime` (CREATEDB: the tests create one database per test). The server
# loads pg_stat_statements (the extension is created in template1; the role may read every statistic) for
# benchmarks/pg_statements.py and the statement-count tests.
# Idempotent: a server this script started that still answers is reused. Only the export line goes to stdout.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # runuser, useradd

DIR="${ABSTRACTRUNTIME_PG_DIR:-/tmp/abstractruntime-ci-postgres}"
ROLE=abstractruntime
log() { echo "postgres.sh: $*" >&2; }

find_bin() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

BIN="$(find_bin || true)"
if [ -z "$BIN" ]; then
    if [ "$(id -u)" != 0 ]; then
        log "no PostgreSQL server binaries found (initdb); install Debian's 'postgresql' package"
        exit 1
    fi
    log "installing PostgreSQL from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # no default 'main' cluster: we run our own
    apt-get install -y -qq postgresql-common >&2
    if [ -f /etc/postgresql-common/createcluster.conf ]; then
        sed -ri 's/^#?\s*create_main_cluster\s*=.*$/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
    fi
    apt-get install -y -qq postgresql >&2
    BIN="$(find_bin)"
fi

# Run a server command as the cluster's owner: the `postgres` OS user when we are root.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            useradd --system --home-dir "$DIR" --shell /bin/sh postgres
        fi
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

dsn_for() { echo "postgresql://$ROLE@127.0.0.1:$1/$ROLE"; }

if [ "${1:-}" = "stop" ]; then
    if [ -f "$DIR/data/PG_VERSION" ]; then
        as_owner "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >&2 || true
    fi
    rm -rf "$DIR"
    exit 0
fi

# Reuse a running server started by this script.
if [ -f "$DIR/port" ] && [ -f "$DIR/data/postmaster.pid" ]; then
    PORT="$(cat "$DIR/port")"
    if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2 \
        && "$BIN/psql" -qAt -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$ROLE" -c "SELECT 1" >/dev/null 2>&1; then
        log "reusing the server on 127.0.0.1:$PORT"
        echo "export ABSTRACTRUNTIME_TEST_POSTGRES_DSN=$(dsn_for "$PORT")"
        exit 0
    fi
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
fi

rm -rf "$DIR"
mkdir -p "$DIR"
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$DIR" --shell /bin/sh postgres
    chown postgres: "$DIR"
fi
chmod 700 "$DIR"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
echo "$PORT" > "$DIR/port.tmp"

as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 -N >"$DIR/initdb.log" 2>&1 \
    || as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust --encoding=UTF8 --locale=C -N >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }

as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off \
        -c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB \
        -c shared_preload_libraries=pg_stat_statements" \
    start >&2 || { cat "$DIR/server.log" >&2; exit 1; }

for _ in $(seq 1 100); do
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 1 && break
    sleep 0.1
done

"$BIN/psql" -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres >&2 <<SQL
CREATE ROLE $ROLE LOGIN CREATEDB;
GRANT pg_read_all_stats TO $ROLE;
CREATE DATABASE $ROLE OWNER $ROLE;
SQL
# pg_stat_statements in every database created from now on (the tests' and benchmarks/pg_statements.py's)
"$BIN/psql" -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d template1 >&2 \
    -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"

mv "$DIR/port.tmp" "$DIR/port"
log "PostgreSQL $("$BIN/postgres" -V | awk '{print $3}') on 127.0.0.1:$PORT (data in $DIR/data)"
echo "export ABSTRACTRUNTIME_TEST_POSTGRES_DSN=$(dsn_for "$PORT")"
