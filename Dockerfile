# syntax=docker/dockerfile:1
# The Copains image: one `copains` binary (every role) and the built web app.
#   docker build -t copains .
#   docker run --rm copains --help
# The command picks the role: `serve` (default: every role), `api`, `gateway`, `sfu`, `migrate`,
# `admin …`. docker-compose.yml runs `api`, `gateway` and `sfu` behind Caddy (docs/deployment.md).

# ---------------------------------------------------------------- Rust toolchain
FROM rust:1-bookworm AS rust
RUN rustup target add wasm32-unknown-unknown
WORKDIR /src
# wasm-bindgen-cli at exactly the lockfile's wasm-bindgen version (the generated glue and the
# library must match); like crypto/scripts/build-wasm.sh, without --locked if a locked
# dependency of the CLI has left the registry.
COPY Cargo.lock ./
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    WB="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)" \
 && { cargo install wasm-bindgen-cli --version "$WB" --locked \
      || cargo install wasm-bindgen-cli --version "$WB"; }

# ---------------------------------------------------------------- the crypto wasm package
FROM rust AS wasm
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=copains-target-wasm \
    crypto/scripts/build-wasm.sh

# ---------------------------------------------------------------- the web app
FROM node:22-bookworm-slim AS web
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund --loglevel=error
COPY frontend/ ./
COPY --from=wasm /src/crypto/pkg /src/crypto/pkg
RUN npm run build

# ---------------------------------------------------------------- the binary
FROM rust AS build
COPY . .
# The target dir is a cache mount (kept between builds), so the binary is copied out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=copains-target-release \
    cargo build --release --locked --bin copains \
 && cp target/release/copains /usr/local/bin/copains

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim
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
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["copains"]
CMD ["serve"]
