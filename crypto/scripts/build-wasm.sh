#!/usr/bin/env bash
# Build the copains-crypto wasm package into crypto/pkg (gitignored).
#
#   crypto/scripts/build-wasm.sh
#
# 1. installs wasm-bindgen-cli at exactly the lockfile's wasm-bindgen version if needed,
# 2. builds the crate for wasm32-unknown-unknown with the `wasm` feature at opt-level "s"
#    (a [profile] cannot live in a member crate, hence the env override),
# 3. runs `wasm-bindgen --target web --out-dir crypto/pkg`,
# 4. prints the raw and gzip sizes of the .wasm.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$WB_VERSION" ]; then
  echo "build-wasm: wasm-bindgen not found in Cargo.lock" >&2
  exit 1
fi
HAVE="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$HAVE" != "$WB_VERSION" ]; then
  echo "build-wasm: installing wasm-bindgen-cli $WB_VERSION (have: ${HAVE:-none})"
  # --locked first, as asked; fall back to a fresh resolution when a locked dependency
  # is missing from the registry (seen here: webpki-roots 1.0.11).
  cargo install wasm-bindgen-cli --version "$WB_VERSION" --locked \
    || cargo install wasm-bindgen-cli --version "$WB_VERSION"
fi

export CARGO_PROFILE_RELEASE_OPT_LEVEL=s
# Thin LTO from the workspace profile is kept; one codegen unit gives a smaller module.
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_DEBUG=false
cargo rustc -p copains-crypto --lib --release --target wasm32-unknown-unknown \
  --features wasm --crate-type cdylib

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
WASM="$TARGET_DIR/wasm32-unknown-unknown/release/copains_crypto.wasm"
rm -rf crypto/pkg
wasm-bindgen --target web --remove-name-section --remove-producers-section --out-dir crypto/pkg "$WASM"

OUT=crypto/pkg/copains_crypto_bg.wasm
# No wasm-opt pass: Debian's binaryen 108 breaks wasm-bindgen's externref table (the
# browser test caught it) and did not shrink the gzip size.
RAW=$(wc -c < "$OUT")
GZ=$(gzip -9 -c "$OUT" | wc -c)
echo "build-wasm: $OUT raw ${RAW} bytes, gzip ${GZ} bytes ($((GZ / 1024)) KiB)"
