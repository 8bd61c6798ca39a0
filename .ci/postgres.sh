#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on 127.0.0.1 and print its URL on stdout (logs go to stderr).
#   export CDS_TEST_POSTGRES_URL="$(bash .ci/postgres.sh)"
# Installs Debian's postgresql only when it is missing. The server runs as the 'postgres' user
# (PostgreSQL refuses to run as root) from a temporary directory, and is left running.
set -euo pipefail
exec 3>&1 1>&2

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
RUN_AS=postgres
id "$RUN_AS" >/dev/null 2>&1 || RUN_AS=nobody

DIR="$(mktemp -d /tmp/cds-pg.XXXXXX)"
chown "$RUN_AS" "$DIR"
chmod 700 "$DIR"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$RUN_AS" -- "$@"; else "$@"; fi; }

as_pg "$BIN/initdb" -D "$DIR/data" -U cds --auth=trust --encoding=UTF8 --no-sync >/dev/null
as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $PORT -k $DIR -c fsync=off -c max_connections=200" start </dev/null >/dev/null 3>&-
as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U cds cds_test
echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (data in $DIR)"
echo "stop it with: runuser -u $RUN_AS -- $BIN/pg_ctl -D $DIR/data stop"
# For a caller that stops it again (.ci/run does, on exit): where the stop command can find it.
if [ -n "${CDS_PG_STOP_FILE:-}" ]; then
  printf 'runuser -u %s -- %s/pg_ctl -D %s/data stop -m fast\n' "$RUN_AS" "$BIN" "$DIR" > "$CDS_PG_STOP_FILE"
fi
echo "postgresql://cds@127.0.0.1:$PORT/cds_test" >&3
