#!/usr/bin/env bash
# make demo: a local registry, a local git repository and both services in standalone mode.
# Pushes image tags 1.0.0 then 1.1.0, waits for image-automation's commit, shows it and the
# commands to explore. Ctrl-C stops everything and removes the temporary directory.
#
# Needs what `bash e2e/setup.sh` installs: docker-registry, git, curl, and a Rust toolchain.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NS=flux-system
IMAGE_REPO=demo/app

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

for tool in docker-registry git curl sha256sum cargo; do
  command -v "$tool" >/dev/null || die "$tool not found; run: bash e2e/setup.sh"
done

free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$(( 20000 + RANDOM % 20000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  die "no free port"
}

WORK="$(mktemp -d -t image-automation-demo.XXXXXX)"
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  echo
  say "stopping"
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  echo "stopped; removed $WORK"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

say "building image-reflector and image-automation"
(cd "$ROOT" && cargo build --quiet -p image-reflector -p image-automation --bins)
TARGET="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
BIN="$TARGET/debug"

REG_PORT=$(free_port)
REGISTRY="127.0.0.1:$REG_PORT"
REFLECTOR_PORT=$(free_port)
AUTOMATION_PORT=$(free_port)
REFLECTOR="http://127.0.0.1:$REFLECTOR_PORT"

say "starting docker-registry on $REGISTRY (anonymous, storage in $WORK/registry)"
mkdir -p "$WORK/registry"
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log: { level: error }
storage:
  filesystem: { rootdirectory: $WORK/registry }
  delete: { enabled: true }
http:
  addr: $REGISTRY
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  curl -fs "http://$REGISTRY/v2/" >/dev/null && break
  sleep 0.1
done
curl -fs "http://$REGISTRY/v2/" >/dev/null || die "registry did not start: $(cat "$WORK/registry.log")"

# Uploads a blob (monolithic) and prints its digest.
push_blob() {
  local file=$1 digest location
  digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
  location=$(curl -fsS -X POST -D - -o /dev/null "http://$REGISTRY/v2/$IMAGE_REPO/blobs/uploads/" \
    | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case $location in http*) ;; *) location="http://$REGISTRY$location" ;; esac
  case $location in *\?*) location="$location&digest=$digest" ;; *) location="$location?digest=$digest" ;; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$file" "$location" >/dev/null
  echo "$digest"
}

push_tag() {
  local tag=$1 config layer manifest
  printf '{"architecture":"amd64","os":"linux","config":{"Labels":{"tag":"%s"}},"rootfs":{"type":"layers","diff_ids":[]}}' \
    "$tag" >"$WORK/config-$tag.json"
  printf 'demo layer %s\n' "$tag" >"$WORK/layer-$tag"
  config=$(push_blob "$WORK/config-$tag.json")
  layer=$(push_blob "$WORK/layer-$tag")
  manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":%d,"digest":"%s"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":%d,"digest":"%s"}]}' \
    "$(wc -c <"$WORK/config-$tag.json")" "$config" "$(wc -c <"$WORK/layer-$tag")" "$layer")
  curl -fsS -X PUT -H 'Content-Type: application/vnd.docker.distribution.manifest.v2+json' \
    --data-binary "$manifest" "http://$REGISTRY/v2/$IMAGE_REPO/manifests/$tag" >/dev/null
  echo "pushed $REGISTRY/$IMAGE_REPO:$tag"
}

say "pushing $REGISTRY/$IMAGE_REPO:1.0.0"
push_tag 1.0.0

say "creating the git repository $WORK/git/fleet.git"
git init --quiet --bare --initial-branch=main "$WORK/git/fleet.git"
SEED="$WORK/seed"
git init --quiet --initial-branch=main "$SEED"
mkdir -p "$SEED/clusters/demo"
cat >"$SEED/clusters/demo/app.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: demo
spec:
  selector:
    matchLabels: { app: app }
  template:
    metadata:
      labels: { app: app }
    spec:
      containers:
        - name: app
          image: $REGISTRY/$IMAGE_REPO:1.0.0 # {"\$imagepolicy": "$NS:app"}
EOF
git -C "$SEED" add -A
git -C "$SEED" -c user.name=demo -c user.email=demo@example.invalid commit --quiet -m "Add the app"
git -C "$SEED" push --quiet "$WORK/git/fleet.git" main

say "writing manifests"
mkdir -p "$WORK/reflector" "$WORK/automation"
cat >"$WORK/reflector/image.yaml" <<EOF
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: app
  namespace: $NS
spec:
  image: $REGISTRY/$IMAGE_REPO
  interval: 5s
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata:
  name: app
  namespace: $NS
spec:
  imageRepositoryRef:
    name: app
  policy:
    semver:
      range: '>=1.0.0 <2.0.0'
EOF
cat >"$WORK/automation/automation.yaml" <<EOF
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: fleet
  namespace: $NS
spec:
  interval: 1m
  url: file://$WORK/git/fleet.git
  ref:
    branch: main
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata:
  name: demo
  namespace: $NS
spec:
  interval: 10m
  sourceRef:
    kind: GitRepository
    name: fleet
  git:
    commit:
      author:
        name: image-automation
        email: image-automation@example.invalid
      messageTemplate: |
        Update images

        {{ range .Changed.Changes -}}
        - {{ .OldValue }} -> {{ .NewValue }}
        {{ end -}}
    push:
      branch: main
  update:
    path: ./clusters/demo
    strategy: Setters
EOF

say "starting image-reflector on $REFLECTOR"
"$BIN/image-reflector" serve --manifests "$WORK/reflector" --storage-path "$WORK/reflector-data" \
  --http-addr "127.0.0.1:$REFLECTOR_PORT" --log-encoding console >"$WORK/reflector.log" 2>&1 &
PIDS+=($!)
say "starting image-automation on 127.0.0.1:$AUTOMATION_PORT"
"$BIN/image-automation" serve --manifests "$WORK/automation" --reflector-url "$REFLECTOR" \
  --storage-path "$WORK/automation-data" --http-addr "127.0.0.1:$AUTOMATION_PORT" \
  >"$WORK/automation.log" 2>&1 &
PIDS+=($!)

policy_tag() {
  curl -fs "$REFLECTOR/api/v1/namespaces/$NS/imagepolicies/app" 2>/dev/null \
    | sed -n 's/.*"latestRef":{[^}]*"tag":"\([^"]*\)".*/\1/p'
}
for _ in $(seq 1 300); do
  [[ "$(policy_tag)" == 1.0.0 ]] && break
  sleep 0.2
done
[[ "$(policy_tag)" == 1.0.0 ]] || die "the policy never resolved: $(tail -20 "$WORK/reflector.log")"
echo "policy $NS/app resolved to 1.0.0"

BEFORE=$(git --git-dir "$WORK/git/fleet.git" rev-parse main)
say "pushing $REGISTRY/$IMAGE_REPO:1.1.0"
push_tag 1.1.0

say "waiting for image-automation's commit"
for _ in $(seq 1 300); do
  [[ "$(git --git-dir "$WORK/git/fleet.git" rev-parse main)" != "$BEFORE" ]] && break
  sleep 0.2
done
if [[ "$(git --git-dir "$WORK/git/fleet.git" rev-parse main)" == "$BEFORE" ]]; then
  echo "--- image-automation log"; tail -30 "$WORK/automation.log"
  die "no commit within 60s"
fi
git --git-dir "$WORK/git/fleet.git" --no-pager log -1 -p main

cat <<EOF

Explore (in another terminal):
  curl -s $REFLECTOR/api/v1/imagerepositories
  curl -s $REFLECTOR/api/v1/namespaces/$NS/imagerepositories/app/tags
  curl -s $REFLECTOR/api/v1/namespaces/$NS/imagepolicies/app
  curl -sN "$REFLECTOR/api/v1/imagepolicies?watch=true"      # the change feed
  curl -s http://127.0.0.1:$AUTOMATION_PORT/metrics | grep -E '^(gotk|image_automation)_'
  git --git-dir $WORK/git/fleet.git log --oneline main
The ImageRepository scans every 5s; tags were pushed with curl (see push_tag in e2e/demo.sh).
Logs: $WORK/reflector.log, $WORK/automation.log

Press Ctrl-C to stop.
EOF
while true; do
  sleep 3600 &
  wait $! || true
done
