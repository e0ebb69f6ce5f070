//! Running our controllers against the testbed, for tests: finding the image-reflector
//! binary, starting a controller process in standalone mode (`serve --manifests`),
//! installing the charts with real Helm, starting a controller process in Kubernetes mode,
//! and the `kubectl` reads and writes the tests make as the admin.
//!
//! These helpers panic with a message saying what went wrong: they exist only to make a
//! test fail loudly. Everything lives in Flux's namespace, [`seed::NAMESPACE`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::git::{GitHttpServer, GitHttpServerOptions};
use crate::kube_apiserver::KubeApiServer;
use crate::process::Process;
use crate::registry::{Registry, RegistryOptions};
use crate::seed;

/// The testbed of the seed procedure in Kubernetes mode: a kube-apiserver, a registry
/// behind htpasswd and a smart-HTTP git server with basic auth, started together.
pub async fn start_kube_testbed() -> (KubeApiServer, Registry, GitHttpServer) {
    let (server, registry, git) = tokio::join!(
        KubeApiServer::start(),
        Registry::start(RegistryOptions::htpasswd()),
        GitHttpServer::start(GitHttpServerOptions::default()),
    );
    let server = server.unwrap_or_else(|e| panic!("start kube-apiserver: {e}"));
    let registry = registry.unwrap_or_else(|e| panic!("start the registry: {e}"));
    let git = git.unwrap_or_else(|e| panic!("start the git server: {e}"));
    (server, registry, git)
}

/// The image-reflector binary for a test of another package: see [`controller_binary`].
pub fn reflector_binary() -> PathBuf {
    controller_binary("image-reflector")
}

/// The binary `package` (whose binary has the package's name) for a test of another
/// package: `cargo test` builds only the tested package's binaries, so it is taken from the
/// shared target directory (`target/<profile>/<package>`, next to the test's `deps/`), as
/// `cargo test --workspace` or `cargo build` leave it. When it is missing it is built with
/// `cargo build -p <package>` (`--release` for a bench) into a separate target directory
/// (the outer cargo holds the lock on the shared one while tests run).
pub fn controller_binary(package: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    // target/<profile>/deps/<test> -> target/<profile>/<package>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", exe.display()));
    let shared = profile_dir.join(package);
    if shared.is_file() {
        return shared;
    }
    let target = profile_dir.join(format!("{package}-for-tests"));
    // A bench (target/release) measures the release build of the other binary too.
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-p", package, "--bin", package]);
    if release {
        build.arg("--release");
    }
    let status = build
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(crate::repo_root())
        .status()
        .unwrap_or_else(|e| panic!("start cargo build: {e}"));
    assert!(status.success(), "building {package} failed");
    let built = target
        .join(if release { "release" } else { "debug" })
        .join(package);
    assert!(built.is_file(), "{} missing", built.display());
    built
}

/// The default of `flag` as `PROGRAM serve --help` prints it (`[default: VALUE]`): what the
/// binary does when a manifest leaves the flag out.
pub fn serve_flag_default(program: &Path, flag: &str) -> String {
    let output = Command::new(program)
        .args(["serve", "--help"])
        .output()
        .unwrap_or_else(|e| panic!("start {} serve --help: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} serve --help failed",
        program.display()
    );
    let help = String::from_utf8_lossy(&output.stdout);
    // clap prints `      --flag ...`, its help text, then `[default: VALUE]`, then the next
    // flag's line.
    let (_, section) = help
        .split_once(&format!("\n      {flag} "))
        .or_else(|| help.split_once(&format!("\n      {flag}\n")))
        .unwrap_or_else(|| panic!("{flag} not in {} serve --help:\n{help}", program.display()));
    let section = section.split("\n      -").next().unwrap_or(section);
    let default = section
        .split("[default: ")
        .nth(1)
        .and_then(|d| d.split(']').next())
        .unwrap_or_else(|| panic!("no default for {flag} in:\n{section}"));
    default.to_owned()
}

/// `PROGRAM serve --manifests MANIFESTS --storage-path STORAGE --http-addr 127.0.0.1:PORT`:
/// a controller in standalone mode; callers add their own flags and environment.
pub fn serve_manifests_command(
    program: &Path,
    manifests: &Path,
    storage: &Path,
    port: u16,
) -> Command {
    let mut command = Command::new(program);
    command
        .arg("serve")
        .arg("--manifests")
        .arg(manifests)
        .arg("--storage-path")
        .arg(storage)
        .args(["--http-addr", &format!("127.0.0.1:{port}")]);
    command
}

/// Spawns `command` (listening on `127.0.0.1:port`) logging to `log` and waits up to
/// `timeout` for `GET ready_path` to succeed; returns the process and
/// `http://127.0.0.1:PORT`.
pub async fn start_serving(
    component: &'static str,
    command: Command,
    port: u16,
    log: &Path,
    ready_path: &str,
    timeout: Duration,
) -> (Process, String) {
    let mut process = Process::spawn(component, command, log)
        .unwrap_or_else(|e| panic!("start {component}: {e}"));
    let base = format!("http://127.0.0.1:{port}");
    let ready = format!("{base}{ready_path}");
    process
        .wait_ready(timeout, || crate::wait::http_ok(&ready))
        .await
        .unwrap_or_else(|err| panic!("{component} never answered: {err}"));
    (process, base)
}

/// The Python with helm-sdkpy: `$HELM_PYTHON`, else the venv `e2e/setup.sh` installs.
pub fn helm_python() -> PathBuf {
    let path = match std::env::var_os("HELM_PYTHON").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => crate::tools::cache_dir().join("helm-venv/bin/python"),
    };
    assert!(
        path.is_file(),
        "no Python with helm-sdkpy at {} ($HELM_PYTHON or $IMAGE_AUTOMATION_CACHE/helm-venv): \
         run `bash e2e/setup.sh`, then `eval \"$(bash e2e/setup.sh --print-env)\"`",
        path.display()
    );
    path
}

/// `helm install CHART` (release named after the chart) into flux-system with `values`,
/// with real Helm through `e2e/helm/render.py`, as the admin; returns the rendered manifest.
pub fn helm_install(server: &KubeApiServer, chart: &str, values: &Value) -> String {
    let output = Command::new(helm_python())
        .arg(crate::repo_root().join("e2e/helm/render.py"))
        .args(["install", "--kubeconfig"])
        .arg(server.admin_kubeconfig())
        .args(["--chart", chart, "--namespace", seed::NAMESPACE])
        .args(["--release", chart, "--values"])
        .arg(values.to_string())
        .output()
        .unwrap_or_else(|e| panic!("start render.py: {e}"));
    assert!(
        output.status.success(),
        "helm install {chart} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `kubectl ARGS` as the admin; its stdout, or a panic with its stderr.
pub fn kubectl(server: &KubeApiServer, args: &[&str]) -> String {
    let output = server
        .kubectl()
        .and_then(|mut command| {
            command
                .args(args)
                .output()
                .map_err(|source| crate::Error::Io {
                    context: "running kubectl".to_string(),
                    source,
                })
        })
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"));
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

/// `kubectl get KIND NAME -o json` in flux-system.
pub fn get(server: &KubeApiServer, kind: &str, name: &str) -> Value {
    get_in(server, kind, seed::NAMESPACE, name)
}

/// `kubectl get KIND NAME -o json` in `namespace`.
pub fn get_in(server: &KubeApiServer, kind: &str, namespace: &str, name: &str) -> Value {
    let json = kubectl(server, &["get", kind, name, "-n", namespace, "-o", "json"]);
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{kind} {namespace}/{name}: {e}: {json}"))
}

/// `kubectl auth can-i CHECK -n NAMESPACE` run with `kubectl` (a kubectl command carrying
/// the identity to ask for: a kubeconfig, `--as`): true for `yes`, false for `no`, and a
/// panic on any other answer (an error is not a denial).
pub fn can_i(mut kubectl: Command, namespace: &str, check: &str) -> bool {
    kubectl
        .args(["auth", "can-i", "-n", namespace])
        .args(check.split_whitespace());
    let output = kubectl
        .output()
        .unwrap_or_else(|e| panic!("kubectl auth can-i {check}: {e}"));
    match String::from_utf8_lossy(&output.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl auth can-i {check}: {other:?} {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The status condition of `type_` on `obj`, if any.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// What `flux reconcile` does: sets `reconcile.fluxcd.io/requestedAt` on `kind/name` in
/// flux-system to a new value (nanoseconds since the epoch), which it returns.
pub fn request_reconcile(server: &KubeApiServer, kind: &str, name: &str) -> String {
    let requested = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string();
    kubectl(
        server,
        &[
            "annotate",
            "--overwrite",
            "-n",
            seed::NAMESPACE,
            kind,
            name,
            &format!("reconcile.fluxcd.io/requestedAt={requested}"),
        ],
    );
    requested
}

/// One controller process in Kubernetes mode; killed on drop.
#[derive(Debug)]
pub struct Controller {
    process: Process,
    port: u16,
    base: String,
    http: reqwest::Client,
}

impl Controller {
    /// Spawns `command` (which must listen on `127.0.0.1:port`) with `KUBECONFIG` =
    /// `kubeconfig` and `RUNTIME_NAMESPACE` = flux-system (what the chart sets from the
    /// Pod's namespace), logging to `log`, and waits up to `timeout` for `/readyz`.
    pub async fn start(
        component: &'static str,
        mut command: Command,
        kubeconfig: &Path,
        port: u16,
        log: &Path,
        timeout: Duration,
    ) -> Self {
        command
            .env("KUBECONFIG", kubeconfig)
            .env("RUNTIME_NAMESPACE", seed::NAMESPACE)
            .env_remove("POD_IP");
        let described = format!("{command:?}");
        let mut process = Process::spawn(component, command, log)
            .unwrap_or_else(|e| panic!("start {component}: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|e| panic!("HTTP client: {e}"));
        let readyz = format!("{base}/readyz");
        process
            .wait_ready(timeout, || {
                let request = http.get(&readyz);
                async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
            })
            .await
            .unwrap_or_else(|e| panic!("{component} `{described}` never became ready: {e}"));
        Self {
            process,
            port,
            base,
            http,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The whole log so far (empty when unreadable).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::log_tail(self.process.log_path(), lines)
    }

    /// Panics when the process has exited.
    pub fn assert_alive(&mut self) {
        if let Err(e) = self.process.check_running() {
            panic!("{e}");
        }
    }

    /// The answer to `GET base+path`; `None` when none came.
    async fn send(&self, path: &str) -> Option<reqwest::Response> {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()
    }

    /// `GET base+path` as JSON; `None` on any failure or non-success status.
    pub async fn get_json(&self, path: &str) -> Option<Value> {
        let response = self.send(path).await?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// The status code of `GET base+path`; `None` when no answer came.
    pub async fn status(&self, path: &str) -> Option<u16> {
        Some(self.send(path).await?.status().as_u16())
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        response
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }
}
