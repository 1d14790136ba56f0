#!/bin/sh
# What the official postgres image's entrypoint does on first start, in short: initdb with
# POSTGRES_USER and POSTGRES_PASSWORD, create POSTGRES_DB, then run the server as postgres.
# The password goes to initdb through a file, never on a command line or into the log.
set -eu
if [ "${1:-}" != postgres ]; then
  exec "$@"
fi
if [ "$(id -u)" = 0 ]; then
  install -d -o postgres -g postgres -m 0700 "$PGDATA"
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  exec setpriv --reuid postgres --regid postgres --init-groups "$0" "$@"
fi
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (as for the official postgres image)}"
user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  if [ "$database" != postgres ]; then
    pg_ctl --silent --wait --options="-c listen_addresses=''" start
    psql --quiet --no-psqlrc --set=ON_ERROR_STOP=1 --username="$user" --dbname=postgres \
      --set=database="$database" <<'SQL'
CREATE DATABASE :"database";
SQL
    pg_ctl --silent --wait --mode=fast stop
  fi
  echo "stand-in postgres: initialised $PGDATA for user $user, database $database"
fi
exec "$@"
