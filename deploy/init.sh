#!/bin/sh
# Writes the .env of a Copains deployment: the domain and fresh random secrets.
#   deploy/init.sh --domain chat.example.org [--public-ip IP] [--image ghcr.io/OWNER/copains:TAG]
#                  [--env-file PATH] [--force]
# --public-ip: the address clients reach for voice (the SFU announces it); default: this
# machine's address on its default route (wrong behind NAT: give the public one).
# PATH defaults to the .env next to docker-compose.yml (the folder above deploy/). An
# existing file is kept unless --force (new secrets would lock you out of your own database).
set -eu

usage() { echo "usage: $0 --domain NAME [--public-ip IP] [--image IMAGE] [--env-file PATH] [--force]" >&2; exit 2; }
DOMAIN="" PUBLIC_IP="" IMAGE="ghcr.io/copains/copains:latest" FORCE=0
ENV_FILE="$(cd "$(dirname "$0")/.." && pwd)/.env"
while [ $# -gt 0 ]; do
  case "$1" in
    --domain) [ $# -ge 2 ] || usage; DOMAIN="$2"; shift 2 ;;
    --public-ip) [ $# -ge 2 ] || usage; PUBLIC_IP="$2"; shift 2 ;;
    --image) [ $# -ge 2 ] || usage; IMAGE="$2"; shift 2 ;;
    --env-file) [ $# -ge 2 ] || usage; ENV_FILE="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
[ -n "$DOMAIN" ] || usage
# A DNS name (letters, digits, hyphens, dots), no scheme, port or path.
if ! printf '%s' "$DOMAIN" | grep -Eq '^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$'; then
  echo "error: --domain must be a DNS name like chat.example.org, got: $DOMAIN" >&2; exit 2
fi
if [ -z "$PUBLIC_IP" ] && command -v ip >/dev/null 2>&1; then
  PUBLIC_IP="$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)"
  [ -z "$PUBLIC_IP" ] || echo "note: announcing $PUBLIC_IP for voice (use --public-ip if clients reach this machine elsewhere)" >&2
fi
[ -n "$PUBLIC_IP" ] || { echo "error: cannot find this machine's address: give --public-ip" >&2; exit 2; }
if ! printf '%s' "$PUBLIC_IP" | grep -Eq '^([0-9]{1,3}\.){3}[0-9]{1,3}$|^[0-9A-Fa-f:]*:[0-9A-Fa-f:]+$'; then
  echo "error: --public-ip must be an IPv4 or IPv6 address, got: $PUBLIC_IP" >&2; exit 2
fi
if [ -e "$ENV_FILE" ] && [ "$FORCE" != 1 ]; then
  echo "error: $ENV_FILE exists; keeping it (use --force to replace it and its secrets)" >&2; exit 1
fi

# 32 random bytes as hex: URL-safe in DATABASE_URL and COPAINS_REDIS_URL.
secret() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

umask 077
TMP="$ENV_FILE.tmp.$$"
cat >"$TMP" <<ENV
# Copains deployment settings, written by deploy/init.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ).
# Keep this file secret (mode 0600) and back it up with the database.
COPAINS_DOMAIN=$DOMAIN
COPAINS_PUBLIC_IP=$PUBLIC_IP
COPAINS_IMAGE=$IMAGE
POSTGRES_PASSWORD=$(secret)
REDIS_PASSWORD=$(secret)
TURN_SECRET=$(secret)
# Any COPAINS_* setting of \`copains --help\` added here reaches the copains containers,
# e.g. COPAINS_SMTP_URL=smtps://user:pass@mail.example.org for password-reset mail.
ENV
mv "$TMP" "$ENV_FILE"
echo "wrote $ENV_FILE for https://$DOMAIN"
echo "next: point the DNS of $DOMAIN at $PUBLIC_IP, open the ports of docs/deployment.md, then: docker compose up -d"
