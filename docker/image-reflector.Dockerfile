# image-reflector-controller. Build from the repository root:
#   docker build -f docker/image-reflector.Dockerfile -t image-reflector:dev .
# `make images` builds it on the project's own engine (see docs/install.md); keep it minimal.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# BuildKit cache mounts (Docker >= 18.09 with BuildKit, the default builder since 23.0) keep
# crates.io downloads and compiled dependencies between builds; both Dockerfiles share the ids,
# so the second image reuses the first one's dependencies. The binary is copied out of the
# cached target directory in the same step.
RUN --mount=type=cache,id=image-automation-rs-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=image-automation-rs-cargo-target,target=/src/target \
    cargo build --release --locked -p image-reflector \
 && install -D -m 0755 target/release/image-reflector /out/image-reflector

# glibc + libgcc, no shell; the build stage is Debian bookworm too, so the glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/image-reflector /usr/local/bin/image-reflector
# 65534 (nobody), as the chart's securityContext expects.
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/image-reflector"]
CMD ["serve", "--http-addr=0.0.0.0:8080", "--storage-path=/data"]
