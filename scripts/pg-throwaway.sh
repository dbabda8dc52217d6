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
    port=$(( 20000 + RANDOM % 20000 ))
    as_user "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1
    as_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=300" start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_user "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: pg-throwaway.sh start|stop DIR" >&2; exit 2 ;;
esac
