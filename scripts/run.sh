#!/usr/bin/env bash
# Runs Copains: every role in one process, the web app, and (when DATABASE_URL is unset)
# a private PostgreSQL under ./data. Installs what is missing (Debian, as root).
#   COPAINS_BUILD_PROFILE=release|dev   (default release)
#   every COPAINS_* setting of `copains --help` applies.
source "$(dirname "$0")/lib/common.sh"

ensure_rust
command -v curl >/dev/null || apt_install curl ca-certificates
[ -n "${DATABASE_URL:-}" ] || ensure_postgres_programs
build_frontend

PROFILE="${COPAINS_BUILD_PROFILE:-release}"
log "building copains ($PROFILE)"
cargo build --locked --profile "$PROFILE" --bin copains
DIR=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

log "starting: http://${COPAINS_HTTP_ADDR:-127.0.0.1:8080}"
exec "$TARGET/$DIR/copains" serve "$@"
