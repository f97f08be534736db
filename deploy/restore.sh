#!/bin/sh
# Restores a deploy/backup.sh dump, replacing the database's contents.
#   deploy/restore.sh --yes FILE
# With DATABASE_URL set it runs the local pg_restore into that database (it may be empty or
# an older copy: existing objects are dropped first). Otherwise it stops the api, gateway and sfu
# containers, restores through `docker compose exec` into the postgres container, and starts
# them again (they apply any newer migrations at start).
# Everything happens in one transaction: a failed restore leaves the database as it was.
set -eu
cd "$(dirname "$0")/.."
[ "${1:-}" = "--yes" ] && [ -n "${2:-}" ] || {
  echo "usage: $0 --yes FILE   (replaces the whole database with FILE)" >&2; exit 2; }
FILE="$2"
[ -r "$FILE" ] || { echo "error: cannot read $FILE" >&2; exit 1; }
if [ -n "${DATABASE_URL:-}" ]; then
  pg_restore --clean --if-exists --no-owner --no-privileges --exit-on-error --single-transaction \
    --dbname="$DATABASE_URL" "$FILE"
else
  docker compose stop api gateway sfu
  docker compose exec -T postgres pg_restore --username=copains --dbname=copains \
    --clean --if-exists --no-owner --no-privileges --exit-on-error --single-transaction <"$FILE"
  docker compose up -d
fi
echo "restored $FILE"
