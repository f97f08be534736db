#!/bin/sh
# Backs up the Copains database with pg_dump (custom format, compressed, restorable with
# deploy/restore.sh). Safe while Copains runs (pg_dump reads one consistent snapshot).
#   deploy/backup.sh [FILE]      default FILE: backups/copains-<UTC time>.dump
# With DATABASE_URL set it runs the local pg_dump against that URL (same or newer major
# version than the server); otherwise `docker compose exec` runs the pg_dump of the postgres
# container (run it from the folder of docker-compose.yml or below).
# The signing key and attachments live in the copains-data volume: see docs/upgrading.md.
set -eu
cd "$(dirname "$0")/.."
OUT="${1:-backups/copains-$(date -u +%Y%m%dT%H%M%SZ).dump}"
mkdir -p "$(dirname "$OUT")"
umask 077
PART="$OUT.partial"
trap 'rm -f "$PART"' EXIT
if [ -n "${DATABASE_URL:-}" ]; then
  pg_dump --format=custom --no-owner --no-privileges --dbname="$DATABASE_URL" --file="$PART"
else
  docker compose exec -T postgres pg_dump --username=copains --dbname=copains \
    --format=custom --no-owner --no-privileges >"$PART"
fi
# A dump that pg_restore cannot list is no backup.
if [ -n "${DATABASE_URL:-}" ]; then
  pg_restore --list "$PART" >/dev/null
else
  docker compose exec -T postgres pg_restore --list <"$PART" >/dev/null
fi
mv "$PART" "$OUT"
trap - EXIT
echo "wrote $OUT ($(wc -c <"$OUT") bytes)"
