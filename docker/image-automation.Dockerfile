# image-automation-controller. Build from the repository root:
#   docker build -f docker/image-automation.Dockerfile -t image-automation:dev .
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
    cargo build --release --locked -p image-automation \
 && install -D -m 0755 target/release/image-automation /out/image-automation

# The controller shells out to git (clone, push) and ssh (SSH remotes).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/image-automation /usr/local/bin/image-automation
# 65534 (nobody) has no home: git and ssh keep their state in /tmp (an emptyDir in the chart).
ENV HOME=/tmp
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/image-automation"]
CMD ["serve", "--http-addr=0.0.0.0:8080", "--storage-path=/data"]
