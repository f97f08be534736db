# Test-only stand-ins for the images docker-compose.yml pulls (caddy:2, postgres:17, redis:7,
# coturn/coturn:4.6), built from Debian's packages where no registry answers
# (scripts/image-test.sh builds each with --target). Same commands, ports, volumes and
# environment as the official images, as far as docker-compose.yml uses them.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE} AS base
RUN apt-get update

# caddy:2 — Debian's Caddy 2.6; /etc/caddy, /data and /config as in the official image;
# wget for the compose healthcheck (the official image has busybox's).
FROM base AS caddy
# hadolint ignore=DL3008
RUN apt-get install -y --no-install-recommends caddy wget ca-certificates && rm -rf /var/lib/apt/lists/*
ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
EXPOSE 80 443 443/udp
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]

# postgres:17 — Debian's PostgreSQL 15, initialised like the official image from
# POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB into /var/lib/postgresql/data.
FROM base AS postgres
# hadolint ignore=DL3008
RUN apt-get install -y --no-install-recommends postgresql-15 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]

# redis:7 — Debian's Redis 7.0 (redis-server and redis-cli), as the user redis.
FROM base AS redis
# hadolint ignore=DL3008
RUN apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
CMD ["redis-server"]

# coturn/coturn:4.6 — Debian's coturn 4.6; the command's arguments go to turnserver.
FROM base AS coturn
# hadolint ignore=DL3008
RUN apt-get install -y --no-install-recommends coturn && rm -rf /var/lib/apt/lists/*
USER turnserver
ENTRYPOINT ["turnserver"]
