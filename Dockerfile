# Multi-stage build of the `herald` daemon; runs as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herald-engine --bin herald

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin herald
COPY --from=build /src/target/release/herald /usr/local/bin/herald
COPY config/herald.toml /etc/herald/herald.toml
USER 10001:10001
EXPOSE 8080 50051
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["serve", "--config", "/etc/herald/herald.toml"]
