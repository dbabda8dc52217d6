#!/usr/bin/env bash
# Starts (or stops) a throwaway PostgreSQL cluster from Debian's binaries for
# the test suite. PostgreSQL refuses to run as root, so as root the cluster
# runs as the unprivileged `postgres` user (or `nobody`).
#
#   scripts/pg-throwaway.sh start DIR   # prints the admin URL on stdout;
#                                       # DIR and its parents must be traversable
#                                       # by that user (e.g. under /tmp)
#   scripts/pg-throwaway.sh stop DIR
set -euo pipefail
cmd=${1:?usage: pg-throwaway.sh start|stop DIR}
dir=${2:?usage: pg-throwaway.sh start|stop DIR}
dir=$(realpath -m "$dir")

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "pg-throwaway: no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 1
fi

as_user() {
  if [ "$(id -u)" = 0 ]; then
    local u=postgres
    id -u "$u" >/dev/null 2>&1 || u=nobody
    runuser -u "$u" -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then
      u=postgres; id -u "$u" >/dev/null 2>&1 || u=nobody
      chown "$u" "$dir"
    fi
    # The cluster's user may not be allowed into our working directory.
    cd "$dir"
    as_user "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1
    # A random port below Linux's ephemeral range (32768-60999); if it is
    # taken after all (another cluster, a test server), try another one.
    for attempt in 1 2 3 4 5; do
      port=$(( 20000 + RANDOM % 12000 ))
      if as_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
          -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=300" start >/dev/null; then
        echo "postgres://postgres@127.0.0.1:$port/postgres"
        exit 0
      fi
      echo "pg-throwaway: start on port $port failed (attempt $attempt); server log:" >&2
      tail -n 5 "$dir/server.log" >&2 || true
    done
    exit 1
    ;;
  stop)
    cd "$dir" 2>/dev/null || true
    as_user "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: pg-throwaway.sh start|stop DIR" >&2; exit 2 ;;
esac
