#!/usr/bin/env bash
# e2e/cluster.sh: a real single-node Kubernetes (v1.20) on this machine, for tests that run
# our controllers as Pods from our images. See shared/notes/real-node.md for the recipe.
#
#   bash e2e/cluster.sh up DIR            start the node (idempotent) and wait until it is Ready
#   bash e2e/cluster.sh load DIR IMAGE..  copy images from the project's Docker engine
#                                         ($DOCKER_HOST, see setup.sh --print-env) into the node's
#   bash e2e/cluster.sh down DIR          stop everything `up` started and remove what it made
#   bash e2e/cluster.sh status DIR        exit 0 when the node is up and Ready
#
# `up` writes:
#   DIR/kubeconfig    admin kubeconfig; its server (https://NODE_ADDRESS:6443) is reachable
#                     from the host directly, through the veth pair (no nsenter needed)
#   DIR/host-address  the host's end of the veth pair: Pods reach it, test servers listen on it
#   DIR/docker-host   unix:// address of the node's own dockerd (holds the Pods' images)
#   DIR/netns         the node's network namespace (`ip netns exec $(cat DIR/netns) ...`)
#
# Network safety: the node (etcd, kube-apiserver, controller-manager, scheduler, dockerd,
# kubelet, kube-proxy, the CNI bridge and every Pod) lives in a network namespace created
# here with no default route: its only routes are the Pod bridge (10.244.0.0/24) and the veth
# subnet 10.250.N.0/24 to this host, so no packet of the node or of a Pod can leave the
# machine. Pod traffic to the host address is masqueraded to the node address inside the
# namespace, so the host needs no route back. kube-proxy's iptables rules exist only in the
# namespace. The host gets routes to the Pod and Service ranges through the veth (so tests
# and a host Prometheus reach Pods as in-cluster clients do); they vanish with the veth.
# Every component also shares one mount namespace (an "anchor" process), so the
# kubelet's and Docker's mounts (and /var/log/pods) never reach the host's.
#
# Host-wide changes, undone by `down`: the kubelet sets vm.overcommit_memory=1, kernel.panic=10
# and kernel.panic_on_oops=1 (not per namespace; v1.20 cannot skip it): `up` saves the values
# and `down` restores them. The kubelet creates `kubepods` cgroups at the root of each cgroup
# hierarchy: `down` removes them. `ip netns add` mounts /run/netns (left, as `ip` leaves it).
# One node at a time per machine (the host routes the Pod and Service ranges to it; a second
# `up` with another DIR says so); its veth subnet is the first free 10.250.N.0/24 (N = 250..254).
#
# The kubelet shares the host's disk with everything else: it evicts Pods only below 1 GiB
# free (not at its default 10-15 %, which a busy build machine crosses), and never
# garbage-collects images (they come from `load`; no registry could give them back).
#
# Environment: IMAGE_AUTOMATION_CACHE (as setup.sh), CLUSTER_WAIT (seconds, default 180).

set -euo pipefail

CACHE="${IMAGE_AUTOMATION_CACHE:-$HOME/.cache/image-automation-rs}"
KUBE_VERSION=v1.20.2
KUBE_NODE_DIR="$CACHE/kube-node-$KUBE_VERSION"
KUBE_APISERVER_BIN="$CACHE/kube-apiserver-$KUBE_VERSION/kube-apiserver"
CNI_BIN_DIR=/usr/lib/cni
WAIT="${CLUSTER_WAIT:-180}"
NODE_NAME=node
POD_CIDR=10.244.0.0/24
POD_GATEWAY=10.244.0.1
SERVICE_CIDR=10.96.0.0/24
SERVICE_API_IP=10.96.0.1
PAUSE_IMAGE_REPO=local/pause
SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler dockerd kubelet kube-proxy)

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: ERROR: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# --------------------------------------------------------------------------
# Components: every one is checked before anything starts, and named when missing.
# --------------------------------------------------------------------------
find_tool() { # NAME [candidates...]: prints the first executable
  local name=$1 c
  shift
  for c in "$@"; do
    [[ -n $c && -x $c ]] && { echo "$c"; return 0; }
  done
  c="$(command -v "$name" 2>/dev/null || true)"
  [[ -n $c ]] && { echo "$c"; return 0; }
  return 1
}

require_components() {
  local missing=()
  ETCD_BIN="$(find_tool etcd)" || missing+=("etcd (Debian package etcd-server)")
  [[ -x $KUBE_APISERVER_BIN ]] || missing+=("kube-apiserver ($KUBE_APISERVER_BIN; run: bash e2e/setup.sh)")
  local b
  for b in kubelet kube-controller-manager kube-scheduler kube-proxy pause; do
    [[ -x $KUBE_NODE_DIR/$b ]] || missing+=("$b ($KUBE_NODE_DIR/$b; run: bash e2e/setup.sh --cluster)")
  done
  # Debian's docker.io: /usr/bin/docker first (another `docker` on PATH may not be a client of it).
  DOCKERD_BIN="$(find_tool dockerd /usr/sbin/dockerd)" || missing+=("dockerd (Debian package docker.io)")
  DOCKER_BIN="$(find_tool docker /usr/bin/docker)" || missing+=("docker (Debian package docker.io)")
  RUNC_BIN="$(find_tool runc /usr/sbin/runc)" || missing+=("runc (Debian package runc)")
  [[ -x $CNI_BIN_DIR/bridge && -x $CNI_BIN_DIR/host-local && -x $CNI_BIN_DIR/portmap ]] \
    || missing+=("CNI plugins bridge/host-local/portmap in $CNI_BIN_DIR (Debian package containernetworking-plugins)")
  KUBECTL_BIN="$(find_tool kubectl)" || missing+=("kubectl (Debian package kubernetes-client)")
  for b in ip nsenter unshare iptables conntrack jq openssl curl flock; do
    command -v "$b" >/dev/null 2>&1 || missing+=("$b")
  done
  if [[ ${#missing[@]} != 0 ]]; then
    printf 'cluster: ERROR: missing component: %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

# --------------------------------------------------------------------------
# State in DIR.
# --------------------------------------------------------------------------
set_paths() {
  DIR=$1
  STATE="$DIR/state"
  PKI="$DIR/pki"
  LOGS="$DIR/logs"
}

state_get() { [[ -f $STATE/$1 ]] && cat "$STATE/$1"; }

pid_alive() { # NAME: the recorded process of NAME runs
  local pid
  pid="$(state_get "$1.pid" 2>/dev/null)" || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

in_node() { # run a command in the node's namespaces (network and mount)
  nsenter -t "$(state_get anchor.pid)" -m -n -- "$@"
}

node_kubectl() { "$KUBECTL_BIN" --kubeconfig "$DIR/kubeconfig" --request-timeout=10s "$@"; }

# Starts COMMAND... detached, in the node's namespaces, logging to LOGS/NAME.log.
start_component() {
  local name=$1
  shift
  if pid_alive "$name"; then return 0; fi
  # (7>&- 8>&-: the components must not inherit the locks.)
  setsid nsenter -t "$(state_get anchor.pid)" -m -n -- "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 7>&- 8>&- &
  echo $! >"$STATE/$name.pid"
  log "started $name (pid $!, log $LOGS/$name.log)"
}

wait_for() { # DESCRIPTION COMPONENT COMMAND...: polls COMMAND until it succeeds
  local what=$1 component=$2 deadline=$((SECONDS + WAIT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [[ -n $component ]] && ! pid_alive "$component"; then
      tail -n 20 "$LOGS/$component.log" | sed 's/^/cluster:   | /' >&2 || true
      die "$component exited while waiting for $what (log: $LOGS/$component.log)"
    fi
    if ((SECONDS > deadline)); then
      [[ -z $component ]] || tail -n 20 "$LOGS/$component.log" | sed 's/^/cluster:   | /' >&2 || true
      die "timed out after ${WAIT}s waiting for $what"
    fi
    sleep 0.5
  done
}

# --------------------------------------------------------------------------
# up
# --------------------------------------------------------------------------
netns_name() { # stable per DIR: one node per work directory
  echo "iar-$(printf '%s' "$DIR" | sha256sum | cut -c1-10)"
}

setup_network() {
  local ns n host_if
  ns="$(netns_name)"
  if [[ -f $STATE/netns ]] && ip netns list | grep -qw "$ns"; then
    return 0
  fi
  # Pick a free veth subnet under a host-wide lock (parallel `up`s of different DIRs).
  exec 8>/run/lock/image-automation-cluster.lock
  flock -w 60 8 || die "timed out waiting for /run/lock/image-automation-cluster.lock"
  local cidr route
  for cidr in "$POD_CIDR" "$SERVICE_CIDR"; do
    route="$(ip -4 route show "$cidr" 2>/dev/null)"
    [[ -z $route ]] || die "the host already routes $cidr ($route): another node is up (cluster.sh down its DIR), or the host uses that range"
  done
  for n in 250 251 252 253 254 ""; do
    [[ -n $n ]] || die "no free subnet 10.250.N.0/24 (N = 250..254) for the node's veth pair"
    ip -4 -o addr show | grep -q " 10\.250\.$n\." || break
  done
  host_if="iar${ns#iar-}"
  host_if="${host_if:0:13}h"
  log "network namespace $ns, veth $host_if (host 10.250.$n.1) <-> node0 (node 10.250.$n.2), no default route"
  ip netns add "$ns"
  echo "$ns" >"$STATE/netns"
  ip link add "$host_if" type veth peer name node0 netns "$ns"
  echo "$host_if" >"$STATE/host-if"
  ip addr add "10.250.$n.1/24" dev "$host_if"
  ip link set "$host_if" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "10.250.$n.2/24" dev node0
  ip -n "$ns" link set node0 up
  # The host reaches Pods and Services (a test's Prometheus scrapes Pod IPs) through the
  # veth only; these routes go when the veth goes.
  ip route add "$POD_CIDR" via "10.250.$n.2" dev "$host_if"
  ip route add "$SERVICE_CIDR" via "10.250.$n.2" dev "$host_if"
  flock -u 8
  echo "10.250.$n.1" >"$STATE/host-address"
  echo "10.250.$n.2" >"$STATE/node-address"
  # Per namespace: route between the Pod bridge and node0; Pods' traffic to the host
  # address leaves with the node's address (the host has no route to the Pod CIDR).
  nsenter --net="/run/netns/$ns" sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
  nsenter --net="/run/netns/$ns" iptables -t nat -A POSTROUTING -s "$POD_CIDR" -o node0 -j MASQUERADE
}

start_anchor() {
  if pid_alive anchor; then return 0; fi
  local ns
  ns="$(state_get netns)"
  mkdir -p "$DIR/varlog"
  # One mount namespace (slave of the host's) shared by every component; /var/log inside
  # it is DIR/varlog, where the kubelet's hard-coded /var/log/pods and /var/log/containers go.
  setsid unshare --mount --propagation slave \
    sh -c 'mount --bind "$1" /var/log && exec nsenter --net="/run/netns/$2" sleep infinity' \
    anchor "$DIR/varlog" "$ns" >>"$LOGS/anchor.log" 2>&1 </dev/null 7>&- 8>&- &
  echo $! >"$STATE/anchor.pid"
  local deadline=$((SECONDS + 10)) want
  want="$(stat -L -c %i "/run/netns/$ns")"
  # Ready once it has entered the node's network namespace.
  until [[ "$(stat -L -c %i "/proc/$(state_get anchor.pid)/ns/net" 2>/dev/null)" == "$want" ]]; do
    pid_alive anchor || die "anchor process exited (log: $LOGS/anchor.log)"
    ((SECONDS < deadline)) || die "anchor process did not enter network namespace $ns"
    sleep 0.1
  done
}

make_pki() {
  [[ -f $PKI/done ]] && return 0
  local node_ip
  node_ip="$(state_get node-address)"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=image-automation-test-ca \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout apiserver.key \
      -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:%s,IP:%s,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' \
      "$SERVICE_API_IP" "$node_ip" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    : >tokens.csv
    # FILE NAME [GROUP]: users whose RBAC bindings v1.20 bootstraps itself.
    local entry file name group token
    for entry in "admin admin system:masters" "kcm system:kube-controller-manager" \
      "sched system:kube-scheduler" "node system:node:$NODE_NAME system:nodes" \
      "proxy system:kube-proxy"; do
      read -r file name group <<<"$entry"
      token="$(openssl rand -hex 24)"
      echo "$token,$name,$name${group:+,$group}" >>tokens.csv
      write_kubeconfig "$file.kubeconfig" "$token" "$node_ip"
    done
    chmod 600 ./*.key tokens.csv ./*.kubeconfig
  )
  cp "$PKI/admin.kubeconfig" "$DIR/kubeconfig.tmp" && mv "$DIR/kubeconfig.tmp" "$DIR/kubeconfig"
  touch "$PKI/done"
}

write_kubeconfig() { # FILE TOKEN SERVER_IP
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster:
    server: https://$3:6443
    certificate-authority: $PKI/ca.crt
users:
- name: user
  user:
    token: $2
contexts:
- name: node
  context: {cluster: node, user: user}
current-context: node
EOF
}

write_runc_wrapper() {
  # No CAP_SYS_RESOURCE on these machines: nothing may lower an oom_score_adj, and
  # dockershim asks -998 for every sandbox, which runc then fails to apply. Clamp it to 0.
  cat >"$DIR/runc-clamp-oom" <<EOF
#!/bin/sh
bundle=""; prev=""
for a in "\$@"; do
  case "\$prev" in --bundle|-b) bundle="\$a" ;; esac
  case "\$a" in --bundle=*) bundle="\${a#--bundle=}" ;; esac
  prev="\$a"
done
if [ -n "\$bundle" ] && [ -f "\$bundle/config.json" ]; then
  jq -c 'if (.process.oomScoreAdj // 0) < 0 then .process.oomScoreAdj = 0 else . end' \\
    "\$bundle/config.json" > "\$bundle/config.json.clamp" && mv "\$bundle/config.json.clamp" "\$bundle/config.json"
fi
exec $RUNC_BIN "\$@"
EOF
  chmod 755 "$DIR/runc-clamp-oom"
}

write_cni_config() {
  mkdir -p "$DIR/cni/net.d" "$DIR/cni/cache" "$DIR/cni/ipam"
  cat >"$DIR/cni/net.d/10-bridge.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

save_sysctls() {
  [[ -f $STATE/sysctls ]] && return 0
  local s
  for s in "${SYSCTLS[@]}"; do
    echo "$s=$(sysctl -n "$s")"
  done >"$STATE/sysctls.tmp"
  mv "$STATE/sysctls.tmp" "$STATE/sysctls"
}

load_pause_image() {
  local tag
  tag="$(cat "$KUBE_NODE_DIR/pause.version" 2>/dev/null || echo latest)"
  PAUSE_IMAGE="$PAUSE_IMAGE_REPO:$tag"
  if node_docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then return 0; fi
  local root
  root="$(mktemp -d "$DIR/pause-root.XXXXXX")"
  cp "$KUBE_NODE_DIR/pause" "$root/pause"
  tar -C "$root" -c . | node_docker import --change 'ENTRYPOINT ["/pause"]' \
    --change 'USER 65535:65535' - "$PAUSE_IMAGE" >/dev/null
  rm -rf "$root"
  log "imported $PAUSE_IMAGE (from $KUBE_NODE_DIR/pause)"
}

node_docker() { "$DOCKER_BIN" -H "unix://$DIR/docker.sock" "$@"; }

node_ready() {
  local out
  out="$(node_kubectl get node "$NODE_NAME" -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status}{end} {.spec.taints}')" || return 1
  [[ $out == "True "* && $out != *not-ready* ]]
}

service_rules_ready() {
  in_node iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q -- "-d $SERVICE_API_IP/32"
}

cmd_status() {
  [[ -f $STATE/anchor.pid ]] || return 1
  local c
  for c in anchor "${COMPONENTS[@]}"; do
    pid_alive "$c" || return 1
  done
  node_ready
}

cmd_up() {
  require_components
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd -P)"
  set_paths "$DIR"
  (( ${#DIR} <= 60 )) || die "DIR path too long (${#DIR} > 60 characters; Docker's socket paths under it must stay short)"
  mkdir -p "$STATE" "$LOGS"
  exec 7>"$STATE/lock"
  flock -w 600 7 || die "another cluster.sh holds $STATE/lock"
  if cmd_status; then
    log "node already up and Ready ($DIR)"
    return 0
  fi
  if [[ -f $STATE/anchor.pid || -f $STATE/netns ]]; then
    log "partial node found in $DIR: taking it down first"
    cmd_down_locked
    mkdir -p "$STATE" "$LOGS"
  fi
  local start=$SECONDS
  local kubepods
  kubepods="$(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name 'kubepods*' 2>/dev/null | head -n1)"
  [[ -z $kubepods ]] || die "$kubepods exists: another kubelet runs on this machine (or a crashed node: remove it with rmdir)"

  setup_network
  start_anchor
  make_pki
  write_runc_wrapper
  write_cni_config
  save_sysctls
  local node_ip
  node_ip="$(state_get node-address)"

  start_component etcd "$ETCD_BIN" --data-dir "$DIR/etcd" --name node \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster node=http://127.0.0.1:2380
  wait_for "etcd" etcd in_node curl -sf http://127.0.0.1:2379/health

  start_component kube-apiserver "$KUBE_APISERVER_BIN" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$node_ip" --insecure-port=0 \
    --allow-privileged=true --kubelet-preferred-address-types=InternalIP \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
    --authorization-mode=Node,RBAC --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$PKI/sa.key" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --cert-dir="$DIR/apiserver-certs"
  wait_for "kube-apiserver /readyz" kube-apiserver node_kubectl get --raw /readyz

  start_component kube-controller-manager "$KUBE_NODE_DIR/kube-controller-manager" \
    --kubeconfig="$PKI/kcm.kubeconfig" --controllers='*' \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials=true --service-cluster-ip-range="$SERVICE_CIDR" \
    --leader-elect=false --bind-address=127.0.0.1 --port=0
  start_component kube-scheduler "$KUBE_NODE_DIR/kube-scheduler" \
    --kubeconfig="$PKI/sched.kubeconfig" --leader-elect=false --bind-address=127.0.0.1 --port=0

  start_component dockerd "$DOCKERD_BIN" --data-root "$DIR/docker" --exec-root "$DIR/docker-exec" \
    --pidfile "$DIR/docker.pid" -H "unix://$DIR/docker.sock" --iptables=false --ip-masq=false \
    --ip-forward=false --bridge=none --storage-driver=overlay2 \
    --add-runtime "runc-clamp=$DIR/runc-clamp-oom" --default-runtime=runc-clamp
  echo "unix://$DIR/docker.sock" >"$DIR/docker-host"
  wait_for "dockerd" dockerd node_docker version
  load_pause_image

  # Only a DIR whose kubelet ran removes kubepods cgroups in `down`.
  touch "$STATE/kubelet-started"
  start_component kubelet "$KUBE_NODE_DIR/kubelet" --kubeconfig="$PKI/node.kubeconfig" \
    --hostname-override="$NODE_NAME" --node-ip="$node_ip" \
    --container-runtime=docker --docker-endpoint="unix://$DIR/docker.sock" \
    --container-runtime-endpoint="unix://$DIR/dockershim.sock" \
    --experimental-dockershim-root-directory="$DIR/dockershim" \
    --pod-infra-container-image="$PAUSE_IMAGE" --cgroup-driver=cgroupfs --fail-swap-on=false \
    --network-plugin=cni --cni-bin-dir="$CNI_BIN_DIR" --cni-conf-dir="$DIR/cni/net.d" \
    --cni-cache-dir="$DIR/cni/cache" --root-dir="$DIR/kubelet" \
    --volume-plugin-dir="$DIR/kubelet-plugins" --resolv-conf= --address="$node_ip" \
    --read-only-port=0 \
    --eviction-hard='memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi' \
    --image-gc-high-threshold=100 --image-gc-low-threshold=99
  start_component kube-proxy "$KUBE_NODE_DIR/kube-proxy" --kubeconfig="$PKI/proxy.kubeconfig" \
    --hostname-override="$NODE_NAME" --proxy-mode=iptables --cluster-cidr="$POD_CIDR" \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 \
    --conntrack-tcp-timeout-close-wait=0 --metrics-bind-address=127.0.0.1:10249 \
    --healthz-bind-address=127.0.0.1:10256

  wait_for "node $NODE_NAME Ready and untainted" kubelet node_ready
  wait_for "kube-proxy's rules for the kubernetes Service" kube-proxy service_rules_ready
  wait_for "the default ServiceAccount" kube-controller-manager node_kubectl get serviceaccount default
  cp "$STATE/host-address" "$DIR/host-address"
  cp "$STATE/netns" "$DIR/netns"
  log "node Ready in $((SECONDS - start))s: kubeconfig $DIR/kubeconfig, host address $(cat "$DIR/host-address")"
}

# --------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------
cmd_load() {
  require_components
  [[ -d $DIR ]] || die "no node in $DIR (run: bash e2e/cluster.sh up $DIR)"
  DIR="$(cd "$DIR" && pwd -P)"
  set_paths "$DIR"
  pid_alive dockerd || die "the node's dockerd is not running (run: bash e2e/cluster.sh up $DIR)"
  [[ -n ${DOCKER_HOST:-} ]] || die "DOCKER_HOST is not set: the project's Docker engine (bash e2e/setup.sh --print-env)"
  (($# > 0)) || die "usage: cluster.sh load DIR IMAGE..."
  local image missing=()
  for image in "$@"; do
    "$DOCKER_BIN" image inspect "$image" >/dev/null 2>&1 || missing+=("$image")
  done
  [[ ${#missing[@]} == 0 ]] || die "not in the project's Docker engine ($DOCKER_HOST): ${missing[*]} (run: make images)"
  "$DOCKER_BIN" save "$@" | node_docker load >&2
}

# --------------------------------------------------------------------------
# down
# --------------------------------------------------------------------------
stop_pid() { # NAME [SECONDS]: TERM, then KILL after SECONDS
  local name=$1 grace=${2:-10} pid i
  pid="$(state_get "$name.pid" 2>/dev/null)" || return 0
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/$name.pid"
}

remove_kubepods_cgroups() {
  local top
  while IFS= read -r top; do
    find "$top" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ ! -d $top ]] || log "could not remove cgroup $top (processes left in it?)"
  done < <(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name 'kubepods*' 2>/dev/null)
}

cmd_down_locked() {
  local ns
  ns="$(state_get netns 2>/dev/null || true)"
  if pid_alive kube-apiserver && pid_alive kubelet && [[ -f $DIR/kubeconfig ]]; then
    # Let the kubelet unmount the Pods' volumes: delete every Pod, briefly.
    node_kubectl delete pods --all --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1 || true
  fi
  stop_pid kube-proxy
  stop_pid kubelet
  if pid_alive dockerd; then
    local ids
    ids="$(node_docker ps -aq 2>/dev/null || true)"
    [[ -z $ids ]] || node_docker rm -f $ids >/dev/null 2>&1 || true
  fi
  stop_pid dockerd 20
  local c
  for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_pid "$c"
  done
  stop_pid anchor 2
  if [[ -n $ns ]]; then
    # Whatever still runs in the node's network namespace (containers left behind by a
    # dockerd that died) was started by this node: stop it, by PID.
    local pid
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
  fi
  local host_if
  host_if="$(state_get host-if 2>/dev/null || true)"
  if [[ -n $host_if ]]; then ip link del "$host_if" 2>/dev/null || true; fi
  if [[ -f $STATE/kubelet-started ]]; then remove_kubepods_cgroups; fi
  if [[ -f $STATE/sysctls ]]; then
    local line
    while IFS= read -r line; do
      sysctl -q -w "$line" >/dev/null || log "could not restore sysctl $line"
    done <"$STATE/sysctls"
    log "restored sysctls: $(tr '\n' ' ' <"$STATE/sysctls")"
  fi
  # Docker's overlay mounts lived in the anchor's mount namespace (gone with it); the
  # files may still need write permission to be removed.
  local d
  for d in etcd docker docker-exec kubelet kubelet-plugins dockershim cni varlog apiserver-certs \
    pki logs state; do
    [[ -e $DIR/$d ]] || continue
    chmod -R u+w "$DIR/$d" 2>/dev/null || true
    rm -rf "${DIR:?}/$d"
  done
  rm -f "$DIR/kubeconfig" "$DIR/host-address" "$DIR/netns" "$DIR/docker-host" "$DIR/runc-clamp-oom" \
    "$DIR/docker.pid" "$DIR/docker.sock" "$DIR/dockershim.sock"
}

cmd_down() {
  [[ -d $DIR ]] || { log "nothing to take down ($DIR does not exist)"; return 0; }
  DIR="$(cd "$DIR" && pwd -P)"
  set_paths "$DIR"
  DOCKER_BIN="$(find_tool docker /usr/bin/docker || echo docker)"
  KUBECTL_BIN="$(find_tool kubectl || echo kubectl)"
  [[ -d $STATE ]] || { log "nothing to take down in $DIR"; return 0; }
  exec 7>"$STATE/lock"
  flock -w 600 7 || die "another cluster.sh holds $STATE/lock"
  cmd_down_locked
  log "node in $DIR taken down"
}

[[ $(id -u) == 0 ]] || die "must run as root (network namespace, mounts, cgroups)"
case "${1:-}" in
  up | down | load | status)
    [[ -n ${2:-} ]] || die "usage: cluster.sh $1 DIR"
    cmd=$1
    DIR=$2
    shift 2
    set_paths "$DIR"
    case $cmd in
      up) cmd_up ;;
      down) cmd_down ;;
      load) cmd_load "$@" ;;
      status)
        [[ -d $DIR ]] || exit 1
        DIR="$(cd "$DIR" && pwd -P)"; set_paths "$DIR"
        KUBECTL_BIN="$(find_tool kubectl || echo kubectl)"
        cmd_status
        ;;
    esac
    ;;
  -h | --help | "") usage ;;
  *) die "unknown command '$1' (up, down, load, status)" ;;
esac
