# vecload as a container: the RAG API's one-off reindex or backfill, run as
# an ECS task or a Kubernetes Job (deploy/). Build:
#
#   docker build -t vecload .
#
# Build stage: the toolchain the project is tested with. The registry and
# target caches are BuildKit cache mounts, so a rebuild after a source edit
# compiles only vecload.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vecload \
 && strip -o /vecload target/release/vecload

# Runtime: glibc, libgcc and nothing else (no shell, no package manager, no
# build tools); the same Debian release as the build stage, so the libc the
# binary was linked against is the one it runs on. TLS roots are compiled
# into vecload (webpki-roots); the RDS CA bundle is added for PostgreSQL on
# RDS with --pg-sslmode verify-full.
FROM gcr.io/distroless/cc-debian12:nonroot
ADD --chmod=0644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
COPY --from=build /vecload /usr/local/bin/vecload
# distroless's nonroot user (65532); state and spool under its home unless
# --state names a mounted volume.
USER 65532:65532
ENV HOME=/home/nonroot
WORKDIR /home/nonroot
ENTRYPOINT ["/usr/local/bin/vecload"]
CMD ["--help"]
