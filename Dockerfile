# ptpchat-relay container image.
#
#   docker build -t ptpchat-relay .
#   docker run -d --name relay -p 9001:9001 -p 127.0.0.1:9002:9002 \
#       -v ptpchat-data:/var/lib/ptpchat-relay ptpchat-relay [--name paris1 ...]
#
# Extra arguments go to `ptpchat-relay serve`. Settings: environment variables (RELAY_NAME=paris1,
# MESH_KEY=...) or your own file mounted over /etc/ptpchat-relay/relay.yaml (docs/configuration.md).
# STATS_LISTEN is set below so that the stats endpoint is reachable through -p and by the health
# check; it beats stats.listen in the file (set -e STATS_LISTEN=... to move it).
# The relay gives connections timeouts.shutdown (10 s) at SIGTERM: stop it with `docker stop -t 15`
# (compose: stop_grace_period: 15s).

# --- build: Swift 6.3 on Debian 12, Swift runtime linked statically ---------------------------
FROM swift:6.3-bookworm AS build
# The system SQLite (GRDB) and libsystemd (sd_notify, socket activation); the upstream versions
# are those of Debian 12, the Debian revision floats with security updates.
RUN apt-get update \
    && apt-get install -y --no-install-recommends 'libsqlite3-dev=3.40.1-*' 'libsystemd-dev=252.*' \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first: this layer is reused as long as the manifest does not change.
COPY Package.swift Package.resolved* ./
RUN swift package resolve
# The manifest names the test targets too, so their folders must exist; only the relay is built.
COPY Sources ./Sources
COPY Tests ./Tests
# As scripts/swift-build-release builds it: no dynamic exclusivity checks (why: that script).
RUN swift build -c release -Xswiftc -enforce-exclusivity=unchecked --product ptpchat-relay --static-swift-stdlib \
    && mkdir -p /staging \
    && cp "$(swift build -c release --show-bin-path)/ptpchat-relay" /staging/ \
    && strip --strip-debug /staging/ptpchat-relay

# --- runtime: Debian 12 slim with the shared libraries the binary needs -----------------------
# ldd of the binary: libsqlite3.so.0, libsystemd.so.0, libstdc++.so.6, libgcc_s.so.1, libm, libc.
# Only libsqlite3-0 is missing from bookworm-slim; the others are listed to keep them if the base
# image ever drops them. No TLS client or HTTP client in the binary: no ca-certificates needed.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        'libsqlite3-0=3.40.1-*' 'libsystemd0=252.*' 'libstdc++6=12.*' 'libgcc-s1=12.*' \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/ptpchat-relay --no-create-home \
        --shell /usr/sbin/nologin ptpchat \
    && mkdir -p /var/lib/ptpchat-relay /etc/ptpchat-relay \
    && chown ptpchat:ptpchat /var/lib/ptpchat-relay \
    && chmod 0700 /var/lib/ptpchat-relay

COPY --from=build /staging/ptpchat-relay /usr/local/bin/ptpchat-relay
COPY deploy/relay.yaml /etc/ptpchat-relay/relay.yaml

ENV STATS_LISTEN=0.0.0.0:9002
# 9001: clients and peer relays (relay.listen); 9002: /stats, /metrics, /healthz, /readyz.
EXPOSE 9001 9002
# The message store and the relay's node id.
VOLUME /var/lib/ptpchat-relay
WORKDIR /var/lib/ptpchat-relay
USER 10001:10001

# No curl in the image: bash's /dev/tcp sends the request and checks the status line.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9002 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && read -r status <&3 && [[ $status == HTTP/1.?' 200'* ]]"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ptpchat-relay", "serve", "--config", "/etc/ptpchat-relay/relay.yaml", "--data-dir", "/var/lib/ptpchat-relay"]
