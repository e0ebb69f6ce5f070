#!/usr/bin/env bash
# e2e/images.sh: container images on the project's Docker engine (e2e/docker-engine.sh).
#
#   bash e2e/images.sh base    make the base images the Dockerfiles name, locally (nothing is pulled)
#   bash e2e/images.sh build   base, then both controller images from docker/*.Dockerfile (make images)
#   bash e2e/images.sh tags    print the two image references the charts use by default
#
# Base images (made only when missing from the engine, or when the pinned base changed):
#   debian:bookworm-slim   a `debootstrap --variant=minbase bookworm` root file system from the
#                          Debian mirror apt is configured with. The tarball is cached under
#                          $CACHE/images, named after the Release it came from (point release and
#                          date), and that Release is pinned in $CACHE/images/debian-bookworm.pin:
#                          later runs reuse it until the pin file is deleted. (snapshot.debian.org
#                          would pin it for good, but is not reachable from these machines.)
#   rust:1.95-bookworm     that base + gcc/libc6-dev/pkg-config/make + the host's rustup toolchain
#                          (the Rust version the Dockerfiles name; documentation left out), laid
#                          out as the official image does (RUSTUP_HOME=/usr/local/rustup,
#                          CARGO_HOME=/usr/local/cargo, cargo's bin directory first on PATH).
#   gcr.io/distroless/cc-debian12:nonroot
#                          a minimal equivalent: glibc, libgcc-s1, the CA bundle, /etc/passwd with
#                          nonroot (65532) and nobody (65534), /tmp, no shell, USER 65532.
#
# Controller images: `<values.yaml image.repository>:<Chart.yaml appVersion>` of each chart,
# built with BuildKit and `--network host` (cargo fetches crates from crates.io).
#
# Environment: IMAGE_AUTOMATION_CACHE (default $HOME/.cache/image-automation-rs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${IMAGE_AUTOMATION_CACHE:-$HOME/.cache/image-automation-rs}"
IMAGES_DIR="$CACHE/images"
PIN_FILE="$IMAGES_DIR/debian-bookworm.pin"
ENGINE="$ROOT/e2e/docker-engine.sh"
DOCKER_BIN=/usr/bin/docker
SUITE=bookworm

SLIM_TAG=debian:bookworm-slim
DISTROLESS_TAG=gcr.io/distroless/cc-debian12:nonroot
# Label that ties every base image to the pinned root file system it was made from.
BASE_LABEL=io.image-automation-rs.base

log() { printf 'images: %s\n' "$*" >&2; }
die() { printf 'images: ERROR: %s\n' "$*" >&2; exit 1; }

TMP=""
cleanup() {
  [[ -n $TMP && -d $TMP ]] || return 0
  # An interrupted debootstrap leaves /proc (and maybe /sys) mounted in the target.
  local m
  awk -v t="$TMP/" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" || true
  done
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT

docker_cli() { DOCKER_HOST="$DOCKER_HOST" "$DOCKER_BIN" "$@"; }

# The label value of a local image, empty when the image is missing.
image_label() {
  docker_cli image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# --------------------------------------------------------------------------
# Chart defaults.
# --------------------------------------------------------------------------
chart_image() {
  local chart="$ROOT/charts/$1" repo version
  repo="$(awk '/^image:/ {in_image = 1; next} /^[^ #]/ {in_image = 0}
               in_image && $1 == "repository:" {print $2; exit}' "$chart/values.yaml")"
  version="$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2; exit}' "$chart/Chart.yaml")"
  [[ -n $repo && -n $version ]] || die "no image.repository or appVersion in charts/$1"
  echo "$repo:$version"
}

do_tags() {
  echo "image-reflector $(chart_image image-reflector-controller)"
  echo "image-automation $(chart_image image-automation-controller)"
}

# --------------------------------------------------------------------------
# Pinned Debian root file system.
# --------------------------------------------------------------------------
# The Debian archive apt uses for bookworm itself (not -updates or -security).
debian_mirror() {
  apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null \
    | awk -v s="$SUITE" '$1 == s {print $2; exit}'
}

# The apt sources of the images: the host's bookworm archives (main, -updates, -security).
deb822_sources() {
  local uris
  apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null \
    | awk -v s="$SUITE" '$1 ~ "^" s "(-updates|-security)?$"' | sort -u \
    | while read -r suite uri; do
        printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n' \
          "$uri" "$suite"
      done
}

# Debootstrap the base once and pin it; prints the pinned tarball's path.
pinned_rootfs() {
  if [[ -f $PIN_FILE ]]; then
    local tarball
    tarball="$(awk -F= '$1 == "TARBALL" {print $2}' "$PIN_FILE")"
    if [[ -f $IMAGES_DIR/$tarball ]]; then
      echo "$IMAGES_DIR/$tarball"
      return 0
    fi
    log "pinned tarball $tarball is missing: making it again"
  fi
  command -v debootstrap >/dev/null || die "debootstrap is missing (run: make setup)"
  local mirror
  mirror="$(debian_mirror)"
  [[ -n $mirror ]] || die "apt has no $SUITE archive configured (is this Debian bookworm?)"

  TMP="$(mktemp -d "$IMAGES_DIR/rootfs.XXXXXX")"
  log "debootstrap --variant=minbase $SUITE from $mirror (about a minute)"
  timeout 1200 debootstrap --variant=minbase "$SUITE" "$TMP/root" "$mirror" >"$TMP/debootstrap.log" 2>&1 \
    || { tail -n 20 "$TMP/debootstrap.log" >&2; die "debootstrap failed"; }
  # The Release file debootstrap verified and installed from names the snapshot.
  local release date version key
  release="$(find "$TMP/root/var/lib/apt/lists" -maxdepth 1 -name "*_dists_${SUITE}_*Release" | head -n1)"
  [[ -n $release ]] || die "debootstrap left no Release file in var/lib/apt/lists"
  date="$(awk -F': ' '$1 == "Date" {print $2; exit}' "$release")"
  version="$(awk -F': ' '$1 == "Version" {print $2; exit}' "$release")"
  [[ -n $date && -n $version ]] || die "no Date or Version in $release"
  key="$SUITE-$version-$(date -u -d "$date" +%Y%m%dT%H%M%SZ)"

  local r="$TMP/root"
  # Slim, as Debian's own bookworm-slim image: no docs, man pages or locales now or later.
  mkdir -p "$r/etc/dpkg/dpkg.cfg.d"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
    >"$r/etc/dpkg/dpkg.cfg.d/docker-slim"
  find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/*
  find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -f "$r/etc/apt/sources.list"
  deb822_sources >"$r/etc/apt/sources.list.d/debian.sources"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
    "$r"/var/log/* "$r"/tmp/* "$r/etc/hostname" "$r/etc/resolv.conf"
  : >"$r/etc/machine-id"

  local tarball="debian-$key-minbase.tar"
  tar --numeric-owner -C "$r" -cf "$IMAGES_DIR/$tarball.tmp" .
  mv -f "$IMAGES_DIR/$tarball.tmp" "$IMAGES_DIR/$tarball"
  printf 'KEY=%s\nTARBALL=%s\nRELEASE_DATE=%s\nRELEASE_VERSION=%s\nMIRROR=%s\n' \
    "$key" "$tarball" "$date" "$version" "$mirror" >"$PIN_FILE.tmp"
  mv -f "$PIN_FILE.tmp" "$PIN_FILE"
  rm -rf "$TMP"; TMP=""
  log "pinned $SUITE $version (Release of $date) in $PIN_FILE"
  echo "$IMAGES_DIR/$tarball"
}

pin_key() { awk -F= '$1 == "KEY" {print $2}' "$PIN_FILE"; }

# --------------------------------------------------------------------------
# Base images.
# --------------------------------------------------------------------------
import_slim() {
  local tarball="$1" key
  key="$(pin_key)"
  if [[ "$(image_label "$SLIM_TAG" "$BASE_LABEL")" == "$key" ]]; then
    log "$SLIM_TAG: present ($key)"
    return 0
  fi
  log "$SLIM_TAG: importing $(basename "$tarball")"
  docker_cli import \
    --change "LABEL $BASE_LABEL=$key" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    "$tarball" "$SLIM_TAG" >/dev/null
}

# rust:<major.minor>-bookworm as named by the Dockerfiles.
rust_tag() {
  local tag
  tag="$(awk '$1 == "FROM" && $2 ~ /^rust:/ {print $2; exit}' "$ROOT/docker/image-reflector.Dockerfile")"
  [[ $tag =~ ^rust:[0-9]+\.[0-9]+-$SUITE$ ]] || die "unexpected build image '$tag' in docker/image-reflector.Dockerfile"
  echo "$tag"
}

build_rust() {
  local tag key want toolchain_dir version
  tag="$(rust_tag)"; key="$(pin_key)"
  want="${tag#rust:}"; want="${want%-"$SUITE"}"
  local rustup_home="${RUSTUP_HOME:-$HOME/.rustup}" cargo_home="${CARGO_HOME:-$HOME/.cargo}"
  toolchain_dir="$rustup_home/toolchains/stable-x86_64-unknown-linux-gnu"
  [[ -x $toolchain_dir/bin/rustc && -x $toolchain_dir/bin/cargo ]] \
    || die "no stable rustup toolchain at $toolchain_dir (the build image copies it)"
  version="$("$toolchain_dir/bin/rustc" --version | awk '{print $2}')"
  [[ $version == "$want".* ]] || die "host stable toolchain is $version; the Dockerfiles want $tag"
  # The host's own extra CAs (/usr/local/share/ca-certificates, e.g. a TLS-inspecting egress
  # proxy's) go into this build-only image, so cargo inside reaches crates.io as it does on
  # the host. The runtime images keep Debian's bundle only.
  local local_ca=/usr/local/share/ca-certificates ca_sum
  ca_sum="$(find "$local_ca" -name '*.crt' -type f -print0 2>/dev/null | sort -z | xargs -0r cat | sha256sum | cut -c1-12)"
  local label="$key/rust-$version/ca-$ca_sum"
  if [[ "$(image_label "$tag" "$BASE_LABEL")" == "$label" ]]; then
    log "$tag: present ($label)"
    return 0
  fi
  log "$tag: base + build tools + host toolchain $version"
  TMP="$(mktemp -d "$IMAGES_DIR/rust.XXXXXX")"
  local toolchain="$version-x86_64-unknown-linux-gnu"
  mkdir -p "$TMP/rustup/toolchains" "$TMP/cargo/bin"
  # Hard links when the cache shares the toolchain's file system (no copy); else a copy.
  cp -al "$toolchain_dir" "$TMP/rustup/toolchains/$toolchain" 2>/dev/null \
    || cp -a "$toolchain_dir" "$TMP/rustup/toolchains/$toolchain"
  rm -rf "$TMP/rustup/toolchains/$toolchain/share/doc"
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n' \
    "$toolchain" >"$TMP/rustup/settings.toml"
  cp "$cargo_home/bin/rustup" "$TMP/cargo/bin/rustup"
  local proxy
  for proxy in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt; do
    ln -s rustup "$TMP/cargo/bin/$proxy"
  done
  mkdir -p "$TMP/local-ca"
  find "$local_ca" -name '*.crt' -type f -exec cp {} "$TMP/local-ca/" \; 2>/dev/null || true
  DOCKER_BUILDKIT=1 docker_cli build --network host --quiet -t "$tag" -f - "$TMP" >/dev/null <<EOF
FROM $SLIM_TAG
RUN apt-get update \\
 && apt-get install -y --no-install-recommends gcc libc6-dev make pkg-config ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo RUST_VERSION=$version \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
COPY local-ca /usr/local/share/ca-certificates
RUN update-ca-certificates >/dev/null
LABEL $BASE_LABEL=$label
EOF
  rm -rf "$TMP"; TMP=""
}

build_distroless() {
  local key
  key="$(pin_key)"
  if [[ "$(image_label "$DISTROLESS_TAG" "$BASE_LABEL")" == "$key" ]]; then
    log "$DISTROLESS_TAG: present ($key)"
    return 0
  fi
  log "$DISTROLESS_TAG: glibc, libgcc-s1, CA bundle, users; no shell"
  TMP="$(mktemp -d "$IMAGES_DIR/distroless.XXXXXX")"
  DOCKER_BUILDKIT=1 docker_cli build --network host --quiet -t "$DISTROLESS_TAG" -f - "$TMP" >/dev/null <<EOF
FROM $SLIM_TAG AS packages
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
# Merged /usr like bookworm; the packages' files (not directories, docs or locales) go on top.
RUN set -eu; r=/rootfs; mkdir -p \$r/usr/bin \$r/usr/lib \$r/usr/lib64 \$r/usr/sbin \$r/etc/ssl/certs \\
      \$r/home/nonroot \$r/var/lib/dpkg/status.d \$r/tmp; \\
    for d in bin lib lib64 sbin; do ln -s usr/\$d \$r/\$d; done; \\
    for p in libc6 libgcc-s1 base-files; do \\
      dpkg-query -L \$p | while read -r f; do \\
        if [ -d "\$f" ] && [ ! -L "\$f" ]; then continue; fi; \\
        case "\$f" in /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*|/usr/share/locale/*|/usr/share/base-files/*|/etc/*) continue;; esac; \\
        echo "\${f#/}"; \\
      done; \\
      dpkg-query -s \$p > \$r/var/lib/dpkg/status.d/\$p; \\
    done > /tmp/files; \\
    tar -C / --no-recursion -cf - -T /tmp/files | tar -C \$r --keep-directory-symlink -xf -; \\
    cp /etc/ssl/certs/ca-certificates.crt \$r/etc/ssl/certs/; \\
    ln -s ../usr/lib/os-release \$r/etc/os-release; \\
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > \$r/etc/passwd; \\
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > \$r/etc/group; \\
    chmod 1777 \$r/tmp; chown 65532:65532 \$r/home/nonroot; \\
    test ! -e \$r/bin/sh
FROM scratch
COPY --from=packages /rootfs /
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /home/nonroot
LABEL $BASE_LABEL=$key
EOF
  rm -rf "$TMP"; TMP=""
}

do_base() {
  mkdir -p "$IMAGES_DIR"
  exec 7>"$IMAGES_DIR/.lock"
  flock -w 1800 7 || die "timed out waiting for $IMAGES_DIR/.lock"
  local tarball
  tarball="$(pinned_rootfs)"
  import_slim "$tarball"
  build_rust
  build_distroless
}

# --------------------------------------------------------------------------
# Controller images.
# --------------------------------------------------------------------------
do_build() {
  do_base
  local name ref start
  while read -r name ref; do
    start=$SECONDS
    log "$ref: docker build -f docker/$name.Dockerfile"
    DOCKER_BUILDKIT=1 docker_cli build --network host -f "$ROOT/docker/$name.Dockerfile" -t "$ref" "$ROOT" \
      || die "building $ref failed"
    log "$ref: built in $((SECONDS - start))s, $(docker_cli image inspect --format '{{.Size}}' "$ref") bytes"
  done < <(do_tags)
}

engine_env() {
  [[ -x $DOCKER_BIN ]] || die "$DOCKER_BIN is missing (run: make setup)"
  bash "$ENGINE" start
  DOCKER_HOST="$(bash "$ENGINE" print-env | awk -F= '$1 == "export DOCKER_HOST" {print $2}')"
  [[ -n $DOCKER_HOST ]] || die "no DOCKER_HOST from $ENGINE"
}

case "${1:-}" in
  base) engine_env; do_base ;;
  build) engine_env; do_build ;;
  tags) do_tags ;;
  -h|--help|"") sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (base, build, tags)" ;;
esac
