#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on 127.0.0.1:54329 for the tests that run the runtime on it.
# Prints the URL to use as BGAGENTS_TEST_POSTGRES_URL, or nothing when PostgreSQL cannot be had here.
set -u
port=54329
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >/dev/null 2>&1
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
[ -n "$bin" ] || exit 0
data=$(mktemp -d /tmp/bgagents-pg.XXXXXX)
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$data"
run "$bin/initdb -D $data -A trust -U postgres" >/dev/null 2>&1 || exit 0
run "$bin/pg_ctl -D $data -o '-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=600' -l $data/log -w start" \
  >/dev/null 2>&1 || exit 0
echo "$data" > /tmp/bgagents-pg.dir
echo "postgresql://postgres@127.0.0.1:$port"
