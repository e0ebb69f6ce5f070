# image-reflector-controller. Build from the repository root:
#   docker build -f docker/image-reflector.Dockerfile -t image-reflector:dev .
# Not built in CI (no container engine there); keep it minimal and obvious.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p image-reflector \
 && install -D -m 0755 target/release/image-reflector /out/image-reflector

# glibc + libgcc, no shell; the build stage is Debian bookworm too, so the glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/image-reflector /usr/local/bin/image-reflector
# 65534 (nobody), as the chart's securityContext expects.
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/image-reflector"]
CMD ["serve", "--http-addr=0.0.0.0:8080", "--storage-path=/data"]
