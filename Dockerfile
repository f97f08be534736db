# The Copains image: one `copains` binary (every role) and the built web app.
#   docker build -t copains .
#   docker run --rm copains --help
# No `# syntax=` line: BuildKit would fetch that frontend from a registry before anything else;
# the frontend built into the engine reads every instruction below (cache mounts included).
# The base images are build arguments with the official defaults, so a machine without a
# registry can build from local ones (scripts/image-test.sh does): --build-arg
# RUST_IMAGE=… NODE_IMAGE=… DEBIAN_IMAGE=…
# The command picks the role: `serve` (default: every role), `api`, `gateway`, `sfu`, `migrate`,
# `admin …`. docker-compose.yml runs `api`, `gateway` and `sfu` behind Caddy (docs/deployment.md).

ARG RUST_IMAGE=rust:1-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim
ARG DEBIAN_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------- Node.js (web app, wasm-opt)
FROM ${NODE_IMAGE} AS node

# ---------------------------------------------------------------- Rust toolchain
FROM ${RUST_IMAGE} AS rust
# rust-src: the wasm build rebuilds std for size (crypto/scripts/build-wasm.sh).
RUN rustup target add wasm32-unknown-unknown && rustup component add rust-src
WORKDIR /src
# wasm-bindgen-cli at exactly the lockfile's wasm-bindgen version (the generated glue and the
# library must match); like crypto/scripts/build-wasm.sh, without --locked if a locked
# dependency of the CLI has left the registry.
COPY Cargo.lock ./
RUN --mount=type=cache,target=/usr/local/cargo/registry,id=copains-cargo-registry \
    WB="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)" \
 && { cargo install wasm-bindgen-cli --version "$WB" --locked \
      || cargo install wasm-bindgen-cli --version "$WB"; }

# ---------------------------------------------------------------- the crypto wasm package
FROM rust AS wasm
# build-wasm.sh installs binaryen's wasm-opt with npm and checks the size with node.
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
# The Rust workspace only: an edit of the web app, the docs or the scripts rebuilds no Rust.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY wire wire
COPY api api
COPY signaling signaling
COPY sfu sfu
COPY crypto crypto
COPY client client
COPY postgres postgres
# Each stage that runs cargo has its own registry cache: the wasm and build stages run at
# the same time, and cargo's lock on that folder lives outside the mount (in CARGO_HOME), so
# one shared cache would let two cargos unpack into it at once (the likely cause of a wasm
# build that failed once with exit 101 on a cold cache; its log was not kept).
RUN --mount=type=cache,target=/usr/local/cargo/registry,id=copains-cargo-registry-wasm \
    --mount=type=cache,target=/src/target,id=copains-target-wasm \
    crypto/scripts/build-wasm.sh

# ---------------------------------------------------------------- the web app
FROM node AS web
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund --loglevel=error
COPY frontend/ ./
COPY --from=wasm /src/crypto/pkg /src/crypto/pkg
RUN npm run build

# ---------------------------------------------------------------- the binary
FROM rust AS build
# The Rust workspace only: an edit of the web app, the docs or the scripts rebuilds no Rust.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY wire wire
COPY api api
COPY signaling signaling
COPY sfu sfu
COPY crypto crypto
COPY client client
COPY postgres postgres
# The target dir is a cache mount (kept between builds), so the binary is copied out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry,id=copains-cargo-registry \
    --mount=type=cache,target=/src/target,id=copains-target-release \
    cargo build --release --locked --bin copains \
 && cp target/release/copains /usr/local/bin/copains

# ---------------------------------------------------------------- runtime
FROM ${DEBIAN_IMAGE}
# The release this image is (docker image inspect; the upgrade test builds two of one tree).
ARG COPAINS_IMAGE_VERSION=dev
LABEL org.opencontainers.image.title="Copains" \
      org.opencontainers.image.version="${COPAINS_IMAGE_VERSION}" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"
# ca-certificates: SMTP over TLS; busybox: `wget` for the healthcheck (1 MB, no curl).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates busybox \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 copains \
 && useradd --system --uid 10001 --gid copains --home-dir /data --shell /usr/sbin/nologin copains \
 && mkdir -p /data /srv/web \
 && chown copains:copains /data /srv/web
COPY --from=build /usr/local/bin/copains /usr/local/bin/copains
COPY --from=web /src/frontend/build /usr/share/copains/web
ENV COPAINS_HTTP_ADDR=0.0.0.0:8080 \
    COPAINS_DATA_DIR=/data \
    COPAINS_WEB_DIR=/usr/share/copains/web \
    COPAINS_LOG=info
# The user copains, by number (runAsNonRoot checks need a numeric id).
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# On the port of COPAINS_HTTP_ADDR, whatever it is set to.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD busybox wget -q -O /dev/null "http://127.0.0.1:${COPAINS_HTTP_ADDR##*:}/healthz" || exit 1
ENTRYPOINT ["copains"]
CMD ["serve"]
