#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! Both controller images (built by `make images`) run the seed procedure as the charts run
//! them, on the project's own Docker engine (`e2e/docker-engine.sh`).
//!
//! Each container gets exactly its chart Deployment's settings: the Deployment is rendered
//! with real Helm (into a throwaway kube-apiserver) and its container spec is translated to
//! `docker run` flags: `runAsUser`, `readOnlyRootFilesystem`, every dropped capability,
//! `allowPrivilegeEscalation: false` (no-new-privileges), the chart's environment, its
//! arguments (only the listen address, the reflector URL and `--manifests` differ: no
//! cluster here) and one tmpfs per chart volume (emptyDir), nothing else writable.
//! `--network host` lets the containers reach the testbed servers on loopback.
//!
//! The reflector image scans a real registry; the automation image clones and pushes over
//! HTTPS (lighttpd + git http-backend with a testbed CA, passed as the GitRepository
//! Secret's `ca.crt`, as Flux documents) and over SSH (deploy key + `known_hosts`), and
//! signs its commits with OpenPGP; the commits verify with `git verify-commit`. The probes
//! the charts declare answer, and `docker diff` shows that nothing was written to the
//! image's file system.
//!
//! Nothing is skipped: without the engine or the images the test fails and names the
//! command to run (`make setup`, `make images`; `make test` runs both first).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testbed::controllers::{get, helm_install};
use testbed::git::{BareRepos, GitHttpServer, GitHttpServerOptions, GitSshServer, seed_manifests};
use testbed::kube_apiserver::KubeApiServer;
use testbed::process::free_port;
use testbed::registry::{Registry, RegistryOptions};
use testbed::seed;
use testbed::tls::Certificates;

const WAIT: Duration = Duration::from_secs(90);
const REFLECTOR_CHART: &str = "image-reflector-controller";
const AUTOMATION_CHART: &str = "image-automation-controller";
const CHECKOUT_FILE: &str = "clusters/prod/checkout.yaml";
const SIGNING_PASSPHRASE: &str = "image-test-passphrase";

/// Debian's docker CLI pointed at the project's engine.
struct Docker {
    host: String,
}

impl Docker {
    /// The engine `e2e/docker-engine.sh` runs; fails (naming `make setup`) when it is absent.
    fn connect() -> Self {
        let script = testbed::repo_root().join("e2e/docker-engine.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("print-env")
            .output()
            .unwrap();
        let env = String::from_utf8_lossy(&out.stdout).into_owned();
        let host = env
            .lines()
            .find_map(|l| l.strip_prefix("export DOCKER_HOST="))
            .map(str::to_string);
        let docker = match host {
            Some(host) if out.status.success() => Self { host },
            _ => panic!(
                "no Docker engine for the image tests ({}): run `make setup`, which installs \
                 docker.io and starts the project's engine\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
        };
        let version = docker.run(&["version", "--format", "{{.Server.Version}}"]);
        assert!(
            version.status.success(),
            "the project's Docker engine does not answer at {}: run `make setup` (it starts \
             it)\n{}",
            docker.host,
            String::from_utf8_lossy(&version.stderr)
        );
        docker
    }

    fn command(&self) -> Command {
        let mut command = Command::new("/usr/bin/docker");
        command.env("DOCKER_HOST", &self.host);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The image a chart uses by default (`e2e/images.sh tags`), which must exist locally.
fn chart_image(docker: &Docker, binary: &str) -> String {
    let out = Command::new("bash")
        .arg(testbed::repo_root().join("e2e/images.sh"))
        .arg("tags")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tags = String::from_utf8_lossy(&out.stdout).into_owned();
    let image = tags
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{binary} ")))
        .unwrap_or_else(|| panic!("no {binary} in `e2e/images.sh tags`:\n{tags}"))
        .to_string();
    let inspect = docker.run(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert!(
        inspect.status.success(),
        "image {image} is missing from the project's engine: run `make images` (`make test` \
         runs it first)"
    );
    image
}

/// A container removed (with its anonymous volumes) when the test ends, even on failure.
struct Container<'a> {
    docker: &'a Docker,
    name: String,
    /// Where volumes are mounted: the engine creates these directories itself.
    mount_points: Vec<String>,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.docker.run(&["rm", "-f", "-v", &self.name]);
    }
}

impl Container<'_> {
    fn logs(&self) -> String {
        let out = self.docker.run(&["logs", "--tail", "60", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `docker diff` (changes to the image's file system; volume contents are not in it),
    /// without the mount points the engine adds (`A /data`), as a container runtime does
    /// for a Pod too.
    fn writes_outside_volumes(&self) -> Vec<String> {
        self.docker
            .ok(&["diff", &self.name])
            .lines()
            .filter(|line| {
                !self
                    .mount_points
                    .iter()
                    .any(|mount| line.strip_prefix("A ") == Some(mount.as_str()))
            })
            .map(str::to_string)
            .collect()
    }

    /// The user id of every process in the container.
    fn process_uids(&self) -> Vec<String> {
        self.docker
            .ok(&["top", &self.name, "-o", "pid,uid"])
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect()
    }
}

/// What a chart's Deployment gives its one container, read from the rendered object.
struct ChartContainer {
    pod: Value,
    container: Value,
}

impl ChartContainer {
    fn render(server: &KubeApiServer, chart: &str) -> Self {
        helm_install(server, chart, &json!({}));
        let deployment = get(server, "deployment", chart);
        let pod = deployment["spec"]["template"]["spec"].clone();
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{chart}: one container expected");
        let container = containers[0].clone();
        Self { pod, container }
    }

    /// The chart's securityContext, checked against what the issue requires of it, as
    /// `docker run` flags.
    fn security_flags(&self) -> Vec<String> {
        let sc = &self.container["securityContext"];
        let pod_sc = &self.pod["securityContext"];
        let uid = sc["runAsUser"]
            .as_i64()
            .or_else(|| pod_sc["runAsUser"].as_i64());
        assert_eq!(uid, Some(65534), "the chart runs as 65534: {sc}");
        assert_eq!(sc["readOnlyRootFilesystem"], json!(true), "{sc}");
        assert_eq!(sc["allowPrivilegeEscalation"], json!(false), "{sc}");
        let drop: Vec<&str> = sc["capabilities"]["drop"]
            .as_array()
            .map(|d| d.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(drop, ["ALL"], "{sc}");
        assert!(
            sc["capabilities"]["add"].is_null(),
            "no capability may be added: {sc}"
        );
        let mut user = uid.unwrap().to_string();
        if let Some(gid) = sc["runAsGroup"]
            .as_i64()
            .or_else(|| pod_sc["runAsGroup"].as_i64())
        {
            user = format!("{user}:{gid}");
        }
        let mut flags = vec![
            "--user".to_string(),
            user,
            "--read-only".into(),
            "--security-opt".into(),
            "no-new-privileges".into(),
        ];
        for cap in drop {
            flags.extend(["--cap-drop".to_string(), cap.to_string()]);
        }
        if let Some(group) = pod_sc["fsGroup"].as_i64() {
            flags.extend(["--group-add".to_string(), group.to_string()]);
        }
        flags
    }

    /// One tmpfs per mounted volume: the chart's emptyDirs (and the PVC the chart can use
    /// instead) are the only writable places.
    fn volume_flags(&self) -> Vec<String> {
        let volumes = self.pod["volumes"].as_array().cloned().unwrap_or_default();
        let mut flags = Vec::new();
        for mount in self.container["volumeMounts"].as_array().unwrap() {
            let name = mount["name"].as_str().unwrap();
            let path = mount["mountPath"].as_str().unwrap();
            let volume = volumes
                .iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("volume {name} not in the pod spec"));
            assert!(
                volume.get("emptyDir").is_some() || volume.get("persistentVolumeClaim").is_some(),
                "only emptyDir/PVC volumes are translated: {volume}"
            );
            // An emptyDir is an empty directory every user may write (0777).
            flags.extend([
                "--mount".to_string(),
                format!("type=tmpfs,destination={path},tmpfs-mode=1777"),
            ]);
        }
        flags
    }

    /// The chart's environment; a `valueFrom.fieldRef` gets the value `fields` gives its
    /// field path (what the kubelet would fill in).
    fn env_flags(&self, fields: &[(&str, &str)]) -> Vec<String> {
        let mut flags = Vec::new();
        for var in self.container["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let name = var["name"].as_str().unwrap();
            let value = match var["value"].as_str() {
                Some(value) => value.to_string(),
                None => {
                    let field = var["valueFrom"]["fieldRef"]["fieldPath"].as_str();
                    fields
                        .iter()
                        .find(|(path, _)| Some(*path) == field)
                        .unwrap_or_else(|| panic!("no value for the chart's env {name}: {var}"))
                        .1
                        .to_string()
                }
            };
            flags.extend(["--env".to_string(), format!("{name}={value}")]);
        }
        flags
    }

    /// The chart's arguments with `--flag=value` replaced for each of `local`.
    fn args(&self, local: &[(&str, String)]) -> Vec<String> {
        let mut args: Vec<String> = self.container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        for (flag, value) in local {
            let arg = args
                .iter_mut()
                .find(|a| a.starts_with(&format!("{flag}=")))
                .unwrap_or_else(|| panic!("the chart does not set {flag}"));
            *arg = format!("{flag}={value}");
        }
        args
    }

    /// The HTTP paths of the chart's liveness and readiness probes.
    fn probe_paths(&self) -> Vec<String> {
        ["livenessProbe", "readinessProbe"]
            .iter()
            .map(|probe| {
                self.container[probe]["httpGet"]["path"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no {probe} httpGet path: {}", self.container))
                    .to_string()
            })
            .collect()
    }
}

/// Starts `image` as its chart runs it, with `manifests` mounted read-only at /manifests
/// (standalone mode: there is no cluster) and the HTTP server on 127.0.0.1:`port`.
fn start_container<'a>(
    docker: &'a Docker,
    chart: &ChartContainer,
    image: &str,
    port: u16,
    manifests: &Path,
    local_args: &[(&str, String)],
) -> Container<'a> {
    let name = format!(
        "image-test-{}-{}",
        std::process::id(),
        image.rsplit('/').next().unwrap().replace(':', "-")
    );
    let _ = docker.run(&["rm", "-f", "-v", &name]);
    let mut args: Vec<String> = vec![
        "run".into(),
        "--detach".into(),
        "--name".into(),
        name.clone(),
        "--network".into(),
        "host".into(),
        "--mount".into(),
        format!(
            "type=bind,source={},destination=/manifests,readonly",
            manifests.display()
        ),
    ];
    args.extend(chart.security_flags());
    let volumes = chart.volume_flags();
    let mut mount_points = vec!["/manifests".to_string()];
    mount_points.extend(volumes.iter().filter_map(|flag| {
        let destination = flag
            .split(',')
            .find_map(|kv| kv.strip_prefix("destination="));
        destination.map(str::to_string)
    }));
    args.extend(volumes);
    // Host network: the Pod's IP is loopback's.
    args.extend(chart.env_flags(&[
        ("metadata.namespace", seed::NAMESPACE),
        ("metadata.name", &name),
        ("status.podIP", "127.0.0.1"),
    ]));
    args.push(image.to_string());
    let mut local = vec![("--http-addr", format!("127.0.0.1:{port}"))];
    local.extend(local_args.iter().cloned());
    args.extend(chart.args(&local));
    args.push("--manifests=/manifests".into());
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker.ok(&arg_refs);
    Container {
        docker,
        name,
        mount_points,
    }
}

/// Waits until every probe path answers 200 on `port`.
async fn wait_probes(container: &Container<'_>, port: u16, paths: &[String]) {
    let deadline = Instant::now() + WAIT;
    for path in paths {
        let url = format!("http://127.0.0.1:{port}{path}");
        loop {
            let status = reqwest::get(&url).await.map(|r| r.status().as_u16());
            if status.as_ref().is_ok_and(|s| *s == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{url} never answered 200 (last {status:?}); container log:\n{}",
                container.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Polls `check` until it returns `Some`, failing with `what` and the log of `container`.
async fn wait_for<T>(
    what: &str,
    container: &Container<'_>,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: timed out; container log:\n{}",
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home)
        .args(["--batch", "--pinentry-mode", "loopback"]);
    c
}

/// A new OpenPGP signing key in `home`; returns the armored secret key.
fn signing_key(home: &Path) -> String {
    let params = home.join("params");
    std::fs::write(
        &params,
        format!(
            "Key-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign\nName-Real: Flux Bot\n\
             Name-Email: flux@example.invalid\nExpire-Date: 0\nPassphrase: {SIGNING_PASSPHRASE}\n\
             %commit\n"
        ),
    )
    .unwrap();
    let out = gpg(home).arg("--gen-key").arg(&params).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gpg(home)
        .args([
            "--passphrase",
            SIGNING_PASSPHRASE,
            "--armor",
            "--export-secret-keys",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A Secret's stringData entry: one quoted line, or a `|` block for multi-line text (a
/// block adds a final newline, which single-line values like a password must not get).
fn block(key: &str, text: &str) -> String {
    if !text.contains('\n') {
        return format!("  {key}: {}\n", Value::from(text));
    }
    let mut out = format!("  {key}: |\n");
    for line in text.lines() {
        out.push_str(&format!("    {line}\n"));
    }
    out
}

fn secret(name: &str, entries: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {}\n\
         type: Opaque\nstringData:\n",
        seed::NAMESPACE
    );
    for (key, value) in entries {
        yaml.push_str(&block(key, value));
    }
    yaml
}

/// The seed's automation over `source`, signing with the Secret `signing`.
fn signed_automation(name: &str, source: &str) -> String {
    let automation = seed::image_update_automation(name, source, "main");
    let author = format!("        email: {}\n", seed::AUTHOR_EMAIL);
    let signed = automation.replacen(
        &author,
        &format!("{author}      signingKey:\n        secretRef:\n          name: signing\n"),
        1,
    );
    assert_ne!(signed, automation, "no author email line to sign after");
    signed
}

/// `git verify-commit REV` in `repo` with the public keys of `gnupg_home`.
fn verify_commit(repos: &BareRepos, repo: &str, rev: &str, gnupg_home: &Path) {
    let out = repos
        .git(repo)
        .unwrap()
        .env("GNUPGHOME", gnupg_home)
        .args(["verify-commit", "--raw", rev])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("GOODSIG"),
        "commit {rev} in {repo} does not verify:\n{stderr}"
    );
}

fn head(repos: &BareRepos, repo: &str) -> Option<String> {
    repos.head_commit(repo, "main").unwrap()
}

#[tokio::test]
async fn both_images_run_the_seed_procedure_under_the_charts_security_context() {
    let docker = Docker::connect();
    let reflector_image = chart_image(&docker, "image-reflector");
    let automation_image = chart_image(&docker, "image-automation");
    let tmp = tempfile::tempdir().unwrap();
    // The containers (uid 65534) read the manifests through a bind mount.
    let world_readable = |dir: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    world_readable(tmp.path());

    // The charts' Deployments, rendered by real Helm.
    let kube = KubeApiServer::start().await.unwrap();
    let reflector_chart = ChartContainer::render(&kube, REFLECTOR_CHART);
    let automation_chart = ChartContainer::render(&kube, AUTOMATION_CHART);
    drop(kube);

    // A registry (basic auth behind the seed's `registry-pull`) with the seed's tags.
    let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
    registry
        .push_tags(seed::IMAGE_PATH, &["1.2.3", "1.3.0"])
        .await
        .unwrap();

    // The reflector image scans it and serves the policy.
    let reflector_dir = tmp.path().join("reflector");
    world_readable(&reflector_dir);
    std::fs::write(
        reflector_dir.join("image.yaml"),
        [
            seed::registry_pull_secret(&registry.docker_config_json()),
            seed::image_repository(&registry.host(), "5m"),
            seed::semver_policy(),
        ]
        .join("---\n"),
    )
    .unwrap();
    let reflector_port = free_port().unwrap();
    let reflector = start_container(
        &docker,
        &reflector_chart,
        &reflector_image,
        reflector_port,
        &reflector_dir,
        &[],
    );
    wait_probes(&reflector, reflector_port, &reflector_chart.probe_paths()).await;
    let policy_url = format!(
        "http://127.0.0.1:{reflector_port}/api/v1/namespaces/{}/imagepolicies/{}",
        seed::NAMESPACE,
        seed::CHECKOUT
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let policy: Option<Value> = match reqwest::get(&policy_url).await {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        if policy
            .as_ref()
            .is_some_and(|p| p["latestRef"]["tag"] == "1.3.0")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reflector image never selected 1.3.0 (last {policy:?}):\n{}",
            reflector.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Git over HTTPS (testbed CA) and SSH (deploy key, known_hosts), one repository each.
    let certs_dir = tmp.path().join("certs");
    std::fs::create_dir_all(&certs_dir).unwrap();
    let certs = Certificates::generate(&certs_dir).unwrap();
    let repos = BareRepos::new().unwrap();
    let files = seed_manifests(&registry.host());
    let https_base = repos.create("gitops-https", &files).unwrap();
    let ssh_base = repos.create("gitops-ssh", &files).unwrap();
    let https = GitHttpServer::start(GitHttpServerOptions {
        repos: Some(repos.clone()),
        tls: Some(certs.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let ssh = GitSshServer::start_serving(repos.clone()).await.unwrap();

    let gnupg = tempfile::tempdir().unwrap();
    let armored = signing_key(gnupg.path());
    let ca = std::fs::read_to_string(&certs.ca_cert).unwrap();
    let automation_dir = tmp.path().join("automation");
    world_readable(&automation_dir);
    let manifests = [
        seed::git_repository("gitops-https", &https.url("gitops-https"), "https-auth"),
        secret(
            "https-auth",
            &[
                ("username", https.username()),
                ("password", https.password()),
                ("ca.crt", &ca),
            ],
        ),
        seed::git_repository("gitops-ssh", &ssh.url("gitops-ssh"), "ssh-auth"),
        secret(
            "ssh-auth",
            &[
                ("identity", ssh.identity_pem()),
                ("known_hosts", ssh.known_hosts()),
            ],
        ),
        secret(
            "signing",
            &[("git.asc", &armored), ("passphrase", SIGNING_PASSPHRASE)],
        ),
        signed_automation("updates-https", "gitops-https"),
        signed_automation("updates-ssh", "gitops-ssh"),
    ];
    std::fs::write(
        automation_dir.join("automation.yaml"),
        manifests.join("---\n"),
    )
    .unwrap();
    let automation_port = free_port().unwrap();
    let automation = start_container(
        &docker,
        &automation_chart,
        &automation_image,
        automation_port,
        &automation_dir,
        &[(
            "--reflector-url",
            format!("http://127.0.0.1:{reflector_port}"),
        )],
    );
    wait_probes(
        &automation,
        automation_port,
        &automation_chart.probe_paths(),
    )
    .await;

    let image = registry.image(seed::IMAGE_PATH);
    for (repo, base) in [("gitops-https", &https_base), ("gitops-ssh", &ssh_base)] {
        let pushed = wait_for(&format!("a pushed commit in {repo}"), &automation, || {
            head(&repos, repo).filter(|h| h != base)
        })
        .await;
        seed::assert_one_tag_update(
            &repos,
            repo,
            base,
            &pushed,
            CHECKOUT_FILE,
            &image,
            ("1.2.3", "1.3.0"),
        );
        assert_eq!(
            repos.commit_message(repo, &pushed).unwrap(),
            seed::expected_message(&[&format!("{image}:1.3.0")]),
            "{repo}: the seed's message"
        );
        verify_commit(&repos, repo, &pushed, gnupg.path());
    }

    // Both stay up and serve; every process runs as 65534; nothing was written outside
    // the chart's volumes (the root file system is read-only, and `docker diff` is empty).
    wait_probes(
        &automation,
        automation_port,
        &automation_chart.probe_paths(),
    )
    .await;
    wait_probes(&reflector, reflector_port, &reflector_chart.probe_paths()).await;
    for container in [&reflector, &automation] {
        let uids = container.process_uids();
        assert!(
            !uids.is_empty() && uids.iter().all(|u| u == "65534"),
            "{}: processes run as {uids:?}",
            container.name
        );
        let writes = container.writes_outside_volumes();
        assert!(
            writes.is_empty(),
            "{} wrote outside its volumes: {writes:?}",
            container.name
        );
    }
    // Exactly one commit each: a second pass found nothing more to do.
    for (repo, base) in [("gitops-https", &https_base), ("gitops-ssh", &ssh_base)] {
        let count = repos.commit_count(repo, "main").unwrap();
        let base_count = repos.commit_count(repo, base).unwrap();
        assert_eq!(
            count,
            base_count + 1,
            "{repo}: exactly one automation commit"
        );
    }
}
