#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! The seed procedure with both controllers as Pods on a real node (`make e2e-cluster`).
//!
//! `e2e/cluster.sh up` starts a single-node Kubernetes v1.20 (kubelet with dockershim on its
//! own dockerd, in a network namespace with no default route); our images (`make images`,
//! from the project's Docker engine at `$DOCKER_HOST`) are copied into the node's engine;
//! both charts are installed with real Helm and their defaults (image
//! `<values image.repository>:<Chart appVersion>`, pullPolicy IfNotPresent), so the
//! controllers run under the charts' securityContext with in-cluster config from their
//! ServiceAccount tokens. The registry (htpasswd, `registry-pull`) and the git server run
//! on the host and are reached by the Pods on the node's host address.
//!
//! Then the faults a user meets: the automation Pod deleted mid-run, a `helm upgrade` that
//! rolls the Pods (scan state on a PersistentVolume survives), the reflector scaled to 2
//! (one leader; both answer the API through the Service), Prometheus scraping the Pods.
//!
//! Differences from a user's cluster, each forced by the test machine: there is no cluster
//! DNS (no CoreDNS package), so the automation gets the reflector Service's ClusterIP as
//! `reflectorUrl` instead of the chart's DNS default; there is no volume provisioner, so
//! the reflector's PersistentVolumeClaim binds a hostPath PersistentVolume the test makes.
//!
//! Needs root, `bash e2e/setup.sh --cluster` and `make images`; ignored by `cargo test`, run by
//! `make e2e-cluster`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testbed::fault_proxy::{Fault, FaultProxy};
use testbed::git::{GitHttpServer, GitHttpServerOptions};
use testbed::prometheus::{Prometheus, ScrapeTarget};
use testbed::registry::{Registry, RegistryOptions};
use testbed::seed;
use testbed::wait::wait_for_every;
use tokio::net::{TcpListener, TcpStream};

const REFLECTOR: &str = "image-reflector-controller";
const AUTOMATION: &str = "image-automation-controller";
const REPO: &str = "gitops";
const AUTOMATION_MAIN: &str = "flux-image-updates";
const LEASE: &str = "image-reflector-controller-leader-election";
/// Pods start in seconds on the node; rollouts include a termination grace period.
const WAIT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(500);

fn step(what: &str, started: Instant) {
    eprintln!(
        "e2e-cluster [{:>6.1}s] {what}",
        started.elapsed().as_secs_f64()
    );
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The node from `e2e/cluster.sh up`; `down` on drop (also when the test fails).
struct Node {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    host_address: String,
}

fn cluster_sh(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new("bash")
        .arg(repo_root().join("e2e/cluster.sh"))
        .args(&args[..1])
        .arg(dir)
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run e2e/cluster.sh: {e}"))
}

impl Node {
    fn up() -> Self {
        // Short path: Docker's sockets live under it.
        let dir = tempfile::Builder::new()
            .prefix("iar-node.")
            .tempdir_in("/tmp")
            .unwrap();
        let output = cluster_sh(&["up"], dir.path());
        let node_dir = dir.path().to_path_buf();
        let read = |name: &str| {
            std::fs::read_to_string(node_dir.join(name))
                .map(|s| s.trim().to_string())
                .ok()
        };
        let node = Node {
            kubeconfig: dir.path().join("kubeconfig"),
            host_address: read("host-address").unwrap_or_default(),
            dir,
        };
        assert!(
            output.status.success(),
            "e2e/cluster.sh up failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!node.host_address.is_empty(), "no DIR/host-address");
        node
    }

    fn load(&self, images: &[String]) {
        let mut args = vec!["load"];
        args.extend(images.iter().map(String::as_str));
        let output = cluster_sh(&args, self.dir.path());
        assert!(
            output.status.success(),
            "e2e/cluster.sh load {images:?} failed (DOCKER_HOST={:?}; run `make images`):\n{}",
            std::env::var("DOCKER_HOST").ok(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut command = Command::new(testbed::tools::kubectl().unwrap());
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--request-timeout=30s"])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// `kubectl ARGS` as the admin: stdout, or a panic with stderr.
    fn kubectl(&self, args: &[&str]) -> String {
        let output = self.kubectl_output(args, None);
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn apply(&self, yaml: &str) {
        let output = self.kubectl_output(&["apply", "-f", "-"], Some(yaml));
        assert!(
            output.status.success(),
            "kubectl apply:\n{yaml}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn get(&self, kind: &str, name: &str) -> Value {
        let text = self.kubectl(&["-n", seed::NAMESPACE, "get", kind, name, "-o", "json"]);
        serde_json::from_str(&text).unwrap()
    }

    fn helm(&self, command: &str, chart: &str, values: &Value) {
        let output = Command::new(testbed::controllers::helm_python())
            .arg(repo_root().join("e2e/helm/render.py"))
            .args([command, "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(["--chart", chart, "--namespace", seed::NAMESPACE])
            .args(["--release", chart, "--values"])
            .arg(values.to_string())
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "helm {command} {chart}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The Pods of a chart's Deployment (by its selector label), running and not deleted.
    fn pods(&self, app: &str) -> Vec<Value> {
        let list: Value = serde_json::from_str(&self.kubectl(&[
            "-n",
            seed::NAMESPACE,
            "get",
            "pods",
            "-l",
            &format!("app.kubernetes.io/name={app}"),
            "-o",
            "json",
        ]))
        .unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .cloned()
            .collect()
    }

    fn ready_pods(&self, app: &str) -> Vec<Value> {
        self.pods(app)
            .into_iter()
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .collect()
    }

    /// `kubectl rollout status` (Deployment Available with every replica updated).
    fn rollout(&self, deployment: &str) {
        let output = self.kubectl_output(
            &[
                "-n",
                seed::NAMESPACE,
                "rollout",
                "status",
                &format!("deployment/{deployment}"),
                &format!("--timeout={}s", WAIT.as_secs()),
            ],
            None,
        );
        assert!(
            output.status.success(),
            "deployment {deployment} did not roll out: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.diagnostics()
        );
        self.kubectl(&[
            "-n",
            seed::NAMESPACE,
            "wait",
            "--for=condition=Available",
            &format!("deployment/{deployment}"),
            "--timeout=60s",
        ]);
    }

    /// Pods, events and the controllers' logs, for failure messages.
    fn diagnostics(&self) -> String {
        let run = |args: &[&str]| {
            let o = self.kubectl_output(args, None);
            format!(
                "$ kubectl {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        [
            run(&["get", "pods", "-A", "-o", "wide"]),
            run(&[
                "-n",
                seed::NAMESPACE,
                "get",
                "events",
                "--sort-by=.lastTimestamp",
            ]),
            run(&[
                "-n",
                seed::NAMESPACE,
                "logs",
                "-l",
                &format!("app.kubernetes.io/name={REFLECTOR}"),
                "--tail=40",
            ]),
            run(&[
                "-n",
                seed::NAMESPACE,
                "logs",
                "-l",
                &format!("app.kubernetes.io/name={AUTOMATION}"),
                "--tail=40",
            ]),
        ]
        .join("\n")
    }

    fn request_reconcile(&self, kind: &str, name: &str) -> String {
        let requested = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            .to_string();
        self.kubectl(&[
            "annotate",
            "--overwrite",
            "-n",
            seed::NAMESPACE,
            kind,
            name,
            &format!("reconcile.fluxcd.io/requestedAt={requested}"),
        ]);
        requested
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let output = cluster_sh(&["down"], self.dir.path());
        if !output.status.success() {
            eprintln!(
                "e2e/cluster.sh down failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Accepts on `address:0` and relays every connection to `127.0.0.1:port`: the testbed's
/// servers listen on loopback, the Pods reach them on the host address.
async fn relay(address: &str, port: u16) -> u16 {
    let listener = TcpListener::bind((address, 0)).await.unwrap();
    let local = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    local
}

/// `<values image.repository>:<Chart appVersion>`: the image a chart runs by default.
fn chart_image(chart: &str) -> String {
    let dir = repo_root().join("charts").join(chart);
    let values = std::fs::read_to_string(dir.join("values.yaml")).unwrap();
    let repository = values
        .split_once("\nimage:\n")
        .and_then(|(_, rest)| {
            rest.lines()
                .take_while(|l| l.starts_with(' ') || l.is_empty())
                .find_map(|l| l.trim().strip_prefix("repository:"))
        })
        .map(|r| r.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("no image.repository in {chart}/values.yaml"));
    let chart_yaml = std::fs::read_to_string(dir.join("Chart.yaml")).unwrap();
    let app_version = chart_yaml
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("no appVersion in {chart}/Chart.yaml"));
    format!("{repository}:{app_version}")
}

fn pod_name(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap().to_string()
}

fn pod_ip(pod: &Value) -> String {
    pod["status"]["podIP"].as_str().unwrap().to_string()
}

async fn wait_for<T, Fut>(what: &str, context: impl Fn() -> String, check: impl Fn() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_for_every(what, WAIT, POLL, context, check).await
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

fn hostpath_volume(name: &str, path: &Path) -> String {
    format!(
        "apiVersion: v1
kind: PersistentVolume
metadata:
  name: {name}
spec:
  capacity:
    storage: 1Gi
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: \"\"
  claimRef:
    namespace: {ns}
    name: {REFLECTOR}-data
  hostPath:
    path: {path}
    type: Directory
",
        ns = seed::NAMESPACE,
        path = path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root, a real node and our images: run `make e2e-cluster`"]
async fn seed_procedure_with_controllers_as_pods() {
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let images = [chart_image(REFLECTOR), chart_image(AUTOMATION)];

    step("0: e2e/cluster.sh up; our images into the node", started);
    let node = Node::up();
    node.load(&images);
    let host = node.host_address.clone();
    step(&format!("node Ready, host address {host}"), started);

    // The registry and the git server, on the host address for the Pods.
    let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
    let git = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let registry_port: u16 = registry.host().rsplit_once(':').unwrap().1.parse().unwrap();
    let registry_host = format!("{host}:{}", relay(&host, registry_port).await);
    // The git server behind a fault proxy: fault 1 holds a push in flight.
    let git_proxy = FaultProxy::start(&format!("127.0.0.1:{}", git.port()))
        .await
        .unwrap();
    let git_url = format!(
        "http://{host}:{}/{REPO}.git",
        relay(&host, git_proxy.addr().port()).await
    );
    let image = format!("{registry_host}/{}", seed::IMAGE_PATH);
    registry
        .push_tags(seed::IMAGE_PATH, &["1.2.3", "1.3.0", "2.0.0"])
        .await
        .unwrap();
    let files = seed::repository_files(&registry_host, "1.2.3", &[]);
    let seeded = git.repos().create(REPO, &files).unwrap();

    step(
        "1: helm install both charts (their defaults, our images)",
        started,
    );
    // The GitRepository CRD belongs to Flux's source-controller.
    node.kubectl(&[
        "apply",
        "-f",
        repo_root()
            .join("e2e/crds/gitrepositories.source.toolkit.fluxcd.io.yaml")
            .to_str()
            .unwrap(),
    ]);
    // No provisioner: the reflector's claim binds a hostPath volume, owned by the chart's uid.
    let volume = node.dir.path().join("volumes/reflector");
    std::fs::create_dir_all(&volume).unwrap();
    std::os::unix::fs::chown(&volume, Some(65534), Some(65534)).unwrap();
    node.apply(&hostpath_volume("reflector-data", &volume));
    let reflector_values = json!({
        "storage": {"persistence": {"enabled": true, "size": "1Gi", "storageClass": "-"}}
    });
    node.helm("install", REFLECTOR, &reflector_values);
    node.rollout(REFLECTOR);
    let service = node.get("service", REFLECTOR);
    let reflector_url = format!(
        "http://{}:8080",
        service["spec"]["clusterIP"].as_str().unwrap()
    );
    // No cluster DNS on the node: the reflector by its Service's ClusterIP.
    let automation_values = json!({ "reflectorUrl": reflector_url });
    node.helm("install", AUTOMATION, &automation_values);
    node.rollout(AUTOMATION);
    for pod in node
        .ready_pods(REFLECTOR)
        .iter()
        .chain(&node.ready_pods(AUTOMATION))
    {
        let spec = &pod["spec"]["containers"][0];
        assert_eq!(
            spec["image"],
            if pod_name(pod).starts_with(REFLECTOR) {
                images[0].as_str()
            } else {
                images[1].as_str()
            },
            "{}",
            pod_name(pod)
        );
        assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    }

    step(
        "2-3: registry-pull, ImageRepository, ImagePolicy; kubectl wait Ready",
        started,
    );
    let docker_config = registry
        .docker_config_json()
        .replace(&registry.host(), &registry_host);
    node.apply(&seed::registry_pull_secret(&docker_config));
    node.apply(&seed::image_repository(&registry_host, "1h"));
    node.apply(&seed::semver_policy());
    let wait = node.kubectl_output(
        &[
            "-n",
            seed::NAMESPACE,
            "wait",
            "--for=condition=Ready",
            &format!("imagepolicy/{}", seed::CHECKOUT),
            &format!("--timeout={}s", WAIT.as_secs()),
        ],
        None,
    );
    assert!(
        wait.status.success(),
        "kubectl wait imagepolicy/checkout: {}\n{}\n{}",
        String::from_utf8_lossy(&wait.stderr),
        node.get("imagerepository", seed::CHECKOUT),
        node.diagnostics()
    );
    let policy = node.get("imagepolicy", seed::CHECKOUT);
    assert_eq!(policy["status"]["latestRef"]["tag"], "1.3.0", "{policy}");

    step(
        "4: GitRepository + ImageUpdateAutomation: exactly one commit",
        started,
    );
    node.apply(&seed::git_credentials_secret(
        "flux-system",
        git.username(),
        git.password(),
    ));
    node.apply(&seed::git_repository(
        "flux-system",
        &git_url,
        "flux-system",
    ));
    node.apply(&seed::image_update_automation(
        AUTOMATION_MAIN,
        "flux-system",
        "main",
    ));
    let repos = git.repos();
    let head = wait_for(
        "the automation's commit on main",
        || {
            format!(
                "{}\n{}",
                node.get("imageupdateautomation", AUTOMATION_MAIN),
                node.diagnostics()
            )
        },
        || async {
            repos
                .head_commit(REPO, "main")
                .unwrap()
                .filter(|h| *h != seeded)
        },
    )
    .await;
    seed::assert_one_tag_update(
        repos,
        REPO,
        &seeded,
        &head,
        seed::DEPLOYMENT_FILE,
        &image,
        ("1.2.3", "1.3.0"),
    );
    wait_for(
        "status.lastPushCommit",
        || node.diagnostics(),
        || async {
            let obj = node.get("imageupdateautomation", AUTOMATION_MAIN);
            (obj["status"]["lastPushCommit"] == head.as_str()).then_some(())
        },
    )
    .await;
    assert_eq!(repos.commit_count(REPO, "main").unwrap(), 2);

    step("fault 1: delete the automation Pod mid-run", started);
    // The run is held mid-push (the git server never answers the push), and its Pod is
    // deleted then: the commit exists only in the old Pod's clone. The hold is set before the
    // new tag exists: the automation reacts to the policy's change at once, so setting it
    // after the policy moved raced with that push (seen: 1.4.0 pushed before the hold).
    git_proxy.set_fault_on("git-receive-pack", Fault::Hang);
    registry
        .push_tags(seed::IMAGE_PATH, &["1.4.0"])
        .await
        .unwrap();
    node.request_reconcile("imagerepository", seed::CHECKOUT);
    wait_for(
        "the policy to select 1.4.0",
        || node.diagnostics(),
        || async {
            let policy = node.get("imagepolicy", seed::CHECKOUT);
            (policy["status"]["latestRef"]["tag"] == "1.4.0").then_some(())
        },
    )
    .await;
    let old_pods: Vec<String> = node.pods(AUTOMATION).iter().map(pod_name).collect();
    node.request_reconcile("imageupdateautomation", AUTOMATION_MAIN);
    wait_for(
        "the automation to start pushing 1.4.0",
        || node.diagnostics(),
        || async { (git_proxy.faulted_requests() > 0).then_some(()) },
    )
    .await;
    node.kubectl(&[
        "-n",
        seed::NAMESPACE,
        "delete",
        "pod",
        "--wait=false",
        &old_pods[0],
    ]);
    assert_eq!(
        repos.head_commit(REPO, "main").unwrap().as_deref(),
        Some(head.as_str()),
        "the held push reached the server"
    );
    git_proxy.clear();
    wait_for(
        "a new automation Pod, Ready",
        || node.diagnostics(),
        || async {
            let ready = node.ready_pods(AUTOMATION);
            (ready.len() == 1 && !old_pods.contains(&pod_name(&ready[0]))).then_some(())
        },
    )
    .await;
    node.request_reconcile("imageupdateautomation", AUTOMATION_MAIN);
    let second = wait_for(
        "the 1.4.0 commit on main",
        || node.diagnostics(),
        || async {
            repos
                .head_commit(REPO, "main")
                .unwrap()
                .filter(|h| *h != head)
        },
    )
    .await;
    seed::assert_one_tag_update(
        repos,
        REPO,
        &head,
        &second,
        seed::DEPLOYMENT_FILE,
        &image,
        ("1.3.0", "1.4.0"),
    );
    // Once more, asked for: nothing new to push.
    let requested = node.request_reconcile("imageupdateautomation", AUTOMATION_MAIN);
    wait_for(
        "the automation to handle the request",
        || node.diagnostics(),
        || async {
            let obj = node.get("imageupdateautomation", AUTOMATION_MAIN);
            (obj["status"]["lastHandledReconcileAt"] == requested.as_str()).then_some(())
        },
    )
    .await;
    assert_eq!(
        repos.commit_count(REPO, "main").unwrap(),
        3,
        "duplicate or partial commits: {:?}",
        repos.log(REPO, "main").unwrap()
    );

    step(
        "fault 2: helm upgrade with a changed value rolls the Pods; scan state survives",
        started,
    );
    let tags_url = format!(
        "{reflector_url}/api/v1/namespaces/{}/imagerepositories/{}/tags",
        seed::NAMESPACE,
        seed::CHECKOUT
    );
    let tags_before = get_json(&http, &tags_url).await.expect("tags before");
    assert_eq!(tags_before["total"], 4, "{tags_before}");
    let scan_before =
        node.get("imagerepository", seed::CHECKOUT)["status"]["lastScanResult"].clone();
    let old_reflector: Vec<String> = node.pods(REFLECTOR).iter().map(pod_name).collect();
    let upgraded = json!({
        "logLevel": "debug",
        "storage": reflector_values["storage"].clone(),
    });
    node.helm("upgrade", REFLECTOR, &upgraded);
    node.rollout(REFLECTOR);
    let new_reflector = node.ready_pods(REFLECTOR);
    assert_eq!(new_reflector.len(), 1);
    assert!(
        !old_reflector.contains(&pod_name(&new_reflector[0])),
        "helm upgrade did not replace the Pod {old_reflector:?}"
    );
    assert!(
        new_reflector[0]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--log-level=debug"),
        "{}",
        new_reflector[0]
    );
    // The new Pod answers from the tags on the volume: no rescan happened (1h interval).
    let tags_after = wait_for(
        "the new reflector Pod to answer the tags",
        || node.diagnostics(),
        || async { get_json(&http, &tags_url).await },
    )
    .await;
    assert_eq!(tags_after, tags_before);
    assert_eq!(
        node.get("imagerepository", seed::CHECKOUT)["status"]["lastScanResult"],
        scan_before,
        "the new Pod rescanned instead of using the stored scan"
    );

    step(
        "fault 3: reflector scaled to 2: one leader, both answer through the Service",
        started,
    );
    // The chart refuses persistence with 2 replicas (one process at a time opens the tag
    // store): each replica gets its own emptyDir store, the leader scans.
    node.helm("upgrade", REFLECTOR, &json!({"replicas": 2}));
    node.rollout(REFLECTOR);
    let replicas = node.ready_pods(REFLECTOR);
    assert_eq!(replicas.len(), 2, "{}", node.diagnostics());
    let names: Vec<String> = replicas.iter().map(pod_name).collect();
    let holder = wait_for(
        "a leader among the replicas",
        || node.diagnostics(),
        || async {
            let lease = node.get("lease", LEASE);
            let holder = lease["spec"]["holderIdentity"].as_str()?.to_string();
            names
                .iter()
                .any(|n| holder.starts_with(n.as_str()))
                .then_some(holder)
        },
    )
    .await;
    let leaders = names
        .iter()
        .filter(|n| holder.starts_with(n.as_str()))
        .count();
    assert_eq!(leaders, 1, "lease holder {holder:?}, pods {names:?}");
    // The new leader scans first (its emptyDir store is empty: "no tags in database"); the
    // follower forwards to the leader.
    for pod in &replicas {
        let url = format!(
            "http://{}:8080/api/v1/namespaces/{}/imagerepositories/{}/tags",
            pod_ip(pod),
            seed::NAMESPACE,
            seed::CHECKOUT
        );
        let http = &http;
        let url = &url;
        wait_for(
            &format!("{} to answer {url} with the 4 tags", pod_name(pod)),
            || {
                format!(
                    "lease: {}\n{}",
                    node.get("lease", LEASE)["spec"],
                    node.diagnostics()
                )
            },
            || async move {
                let response = http.get(url).send().await.ok()?;
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                eprintln!("e2e-cluster: {url}: {status} {body:.200}");
                let tags: Value = serde_json::from_str(&body).ok()?;
                (status.is_success() && tags["total"] == 4).then_some(())
            },
        )
        .await;
    }
    for _ in 0..20 {
        let tags = get_json(&http, &tags_url)
            .await
            .expect("the Service answers every request");
        assert_eq!(tags["total"], 4, "{tags}");
    }

    step("fault 4: Prometheus scrapes the Pods", started);
    let automation_pod = node.ready_pods(AUTOMATION);
    let mut targets: Vec<ScrapeTarget> = replicas
        .iter()
        .enumerate()
        // One job per target (the testbed's Prometheus config has one target per job).
        .map(|(i, p)| {
            ScrapeTarget::new(&format!("{REFLECTOR}-{i}"), &format!("{}:8080", pod_ip(p)))
        })
        .collect();
    targets.push(ScrapeTarget::new(
        AUTOMATION,
        &format!("{}:8080", pod_ip(&automation_pod[0])),
    ));
    let prometheus = Prometheus::start(&targets).await.unwrap();
    let up = prometheus
        .wait_for("count(up == 1) == 3", WAIT)
        .await
        .unwrap_or_else(|e| panic!("not every Pod scraped: {e}"));
    assert_eq!(up.len(), 1);
    prometheus
        .wait_for(
            &format!(r#"image_reflector_policy_latest_info{{job=~"{REFLECTOR}-.*",tag="1.4.0"}}"#),
            WAIT,
        )
        .await
        .unwrap();
    prometheus
        .wait_for(
            &format!(r#"gotk_reconcile_duration_seconds_count{{job="{AUTOMATION}"}}"#),
            WAIT,
        )
        .await
        .unwrap();
    step("done", started);
    drop(prometheus);
    drop(node);
}

/// `up` checks every component before it changes anything, and names what is missing.
#[test]
fn up_names_a_missing_component_and_changes_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node_dir = dir.path().join("node");
    let output = Command::new("bash")
        .arg(repo_root().join("e2e/cluster.sh"))
        .arg("up")
        .arg(&node_dir)
        .env("IMAGE_AUTOMATION_CACHE", cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for component in ["kube-apiserver", "kubelet", "kube-proxy", "pause"] {
        assert!(
            stderr.contains(&format!("missing component: {component} (")),
            "{component} not named: {stderr}"
        );
    }
    assert!(
        !node_dir.exists(),
        "up created {} before failing",
        node_dir.display()
    );
}
