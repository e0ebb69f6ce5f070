//! Shared helpers for the tests that run `image-automation serve --manifests` as a process
//! against the REAL testbed registry, `image-reflector serve --manifests` and git server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use api_types::http_api::ImagePolicyInfo;
use serde_json::Value;
use testbed::controllers::{reflector_binary, serve_manifests_command, start_serving};
use testbed::git::{GitHttpServer, GitHttpServerOptions, seed_manifests};
use testbed::process::{Process, free_port};
use testbed::registry::{Registry, RegistryOptions};
use testbed::seed;

pub const WAIT: Duration = Duration::from_secs(60);
pub const CHECKOUT: &str = "clusters/prod/checkout.yaml";

/// A running `image-reflector serve --manifests`; killed on drop.
pub struct Reflector {
    pub process: Process,
    pub base: String,
    pub dir: PathBuf,
}

impl Reflector {
    /// Writes the reflector's manifests to `tmp/reflector`, starts the reflector on them
    /// and waits until the policy selects `tag`.
    pub async fn start(tmp: &Path, registry: &Registry, tag: &str) -> Self {
        let dir = tmp.join("reflector");
        std::fs::create_dir_all(&dir).unwrap();
        write_reflector_manifests(&dir, registry, None);
        let port = free_port().unwrap();
        let command = serve_manifests_command(&reflector_binary(), &dir, &tmp.join("tags"), port);
        let log = tmp.join("reflector.log");
        let (process, base) =
            start_serving("image-reflector", command, port, &log, "/healthz", WAIT).await;
        let reflector = Self { process, base, dir };
        reflector.wait_tag(tag).await;
        reflector
    }

    /// Pushes `tag` to the registry, has the reflector rescan and waits until the policy
    /// selects it.
    pub async fn publish(&self, registry: &Registry, tag: &str) {
        registry.push_tags("team/checkout", &[tag]).await.unwrap();
        let requested = format!("2026-01-01T00:00:00Z-{tag}");
        write_reflector_manifests(&self.dir, registry, Some(&requested));
        self.wait_tag(tag).await;
    }

    pub async fn wait_tag(&self, tag: &str) {
        let url = format!(
            "{}/api/v1/namespaces/flux-system/imagepolicies/checkout",
            self.base
        );
        let deadline = Instant::now() + WAIT;
        loop {
            let current = match reqwest::get(&url).await {
                Ok(r) if r.status().is_success() => r.json::<ImagePolicyInfo>().await.ok(),
                _ => None,
            };
            if current
                .as_ref()
                .and_then(|p| p.latest_ref.as_ref())
                .is_some_and(|r| r.tag == tag)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "policy never resolved to {tag}; last {current:?}\n{}",
                self.process.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The reflector's manifests: the seed's Secret, ImageRepository and semver ImagePolicy.
pub fn write_reflector_manifests(dir: &Path, registry: &Registry, requested_at: Option<&str>) {
    let mut repository = seed::image_repository(&registry.host(), "5m");
    if let Some(t) = requested_at {
        let namespace = format!("  namespace: {}\n", seed::NAMESPACE);
        repository = repository.replacen(
            &namespace,
            &format!("{namespace}  annotations:\n    reconcile.fluxcd.io/requestedAt: \"{t}\"\n"),
            1,
        );
        assert!(repository.contains(t), "{repository}");
    }
    std::fs::write(
        dir.join("image.yaml"),
        [
            seed::registry_pull_secret(&registry.docker_config_json()),
            repository,
            seed::semver_policy(),
        ]
        .join("---\n"),
    )
    .unwrap();
}

/// The automation's manifests: GitRepository (with `timeout` when given) + Secret + the
/// seed's v1beta1 ImageUpdateAutomation pushing to `push_branch` of `url`.
pub fn write_automation_manifests(
    dir: &Path,
    url: &str,
    (username, password): (&str, &str),
    timeout: Option<&str>,
    push_branch: &str,
) {
    std::fs::create_dir_all(dir).unwrap();
    let mut source = seed::git_repository("flux-system", url, "flux-system");
    if let Some(t) = timeout {
        source = source.replacen(
            "  interval: 1m\n",
            &format!("  interval: 1m\n  timeout: {t}\n"),
            1,
        );
        assert!(source.contains("timeout"), "{source}");
    }
    std::fs::write(
        dir.join("source.yaml"),
        [
            source,
            seed::git_credentials_secret("flux-system", username, password),
        ]
        .join("---\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("automation.yaml"),
        seed::image_update_automation("flux-image-updates", "flux-system", push_branch),
    )
    .unwrap();
}

pub fn automation_program() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_image-automation"))
}

pub fn automation_bin() -> Command {
    Command::new(automation_program())
}

/// `image-automation serve --once`: (exit success, the one automation's summary, stderr).
pub fn run_once(manifests: &Path, storage: &Path, reflector_url: &str) -> (bool, Value, String) {
    let (ok, summary, stderr) = run_once_summary(manifests, storage, reflector_url);
    (ok, only(&summary).clone(), stderr)
}

/// The summary's only automation.
pub fn only(summary: &Value) -> &Value {
    let list = summary["automations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{summary:#}");
    &list[0]
}

/// `image-automation serve --once`: (exit success, the whole summary, stderr).
pub fn run_once_summary(
    manifests: &Path,
    storage: &Path,
    reflector_url: &str,
) -> (bool, Value, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = automation_bin()
        .arg("serve")
        .arg("--manifests")
        .arg(manifests)
        .arg("--storage-path")
        .arg(storage)
        .args(["--reflector-url", reflector_url, "--once"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let summary: Value = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}\n{stderr}"));
    (status.success(), summary, stderr)
}

/// A long-running `image-automation serve --manifests` with its log in `log`.
pub fn spawn_serve(manifests: &Path, storage: &Path, reflector_url: &str, log: &Path) -> Process {
    let port = free_port().unwrap();
    let mut command = serve_manifests_command(automation_program(), manifests, storage, port);
    command
        .args(["--reflector-url", reflector_url])
        .env("RUST_LOG", "debug");
    Process::spawn("image-automation serve", command, log).unwrap()
}

/// The registry (htpasswd) with the seed's first tag, 1.2.3, and the git server with the
/// seed's repository `fleet` (image lines at 1.2.3) plus `extra` files; returns them and
/// `fleet`'s head.
pub async fn seeded_fleet(extra: &[(&str, &str)]) -> (Registry, GitHttpServer, String) {
    let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
    registry
        .push_tags("team/checkout", &["1.2.3"])
        .await
        .unwrap();
    let git = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let mut files = seed_manifests(&registry.host());
    files.extend(extra.iter().map(|(p, c)| (p.to_string(), c.to_string())));
    let seeded = git.repos().create("fleet", &files).unwrap();
    (registry, git, seeded)
}

/// The usual set-up: the registry and git server of [`seeded_fleet`], the reflector at
/// 1.2.3, the automation's manifests for `fleet` (direct, no timeout) and its storage path.
/// The reflector is declared before `tmp` so it stops before its directory goes.
pub struct Fleet {
    pub registry: Registry,
    pub git: GitHttpServer,
    /// `fleet`'s head as seeded.
    pub seeded: String,
    pub reflector: Reflector,
    pub manifests: PathBuf,
    pub storage: PathBuf,
    /// `registry.image("team/checkout")`.
    pub image: String,
    pub tmp: tempfile::TempDir,
}

impl Fleet {
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let (registry, git, seeded) = seeded_fleet(extra).await;
        let tmp = tempfile::tempdir().unwrap();
        let reflector = Reflector::start(tmp.path(), &registry, "1.2.3").await;
        let fleet = Self {
            image: registry.image("team/checkout"),
            manifests: tmp.path().join("automation"),
            storage: tmp.path().join("data"),
            registry,
            git,
            seeded,
            reflector,
            tmp,
        };
        fleet.write_manifests(&fleet.git.url("fleet"), None);
        fleet
    }

    /// (Re)writes the automation's manifests for the repository at `url`.
    pub fn write_manifests(&self, url: &str, timeout: Option<&str>) {
        write_automation_manifests(
            &self.manifests,
            url,
            (self.git.username(), self.git.password()),
            timeout,
            "main",
        );
    }

    /// Pushes `tag` and waits until the reflector's policy selects it.
    pub async fn publish(&self, tag: &str) {
        self.reflector.publish(&self.registry, tag).await;
    }

    /// [`run_once`] on this set-up.
    pub fn run_once(&self) -> (bool, Value, String) {
        run_once(&self.manifests, &self.storage, &self.reflector.base)
    }

    /// `fleet`'s head on `main`.
    pub fn head(&self) -> String {
        self.git
            .repos()
            .head_commit("fleet", "main")
            .unwrap()
            .unwrap()
    }

    /// Asserts the head is exactly one tag update `from` -> `to` on top of `before`;
    /// returns the head.
    pub fn assert_one_update(&self, before: &str, (from, to): (&str, &str)) -> String {
        let after = self.head();
        seed::assert_one_tag_update(
            self.git.repos(),
            "fleet",
            before,
            &after,
            CHECKOUT,
            &self.image,
            (from, to),
        );
        after
    }
}

/// The single persistent worktree under `storage` (`git/worktrees/<url>/<ref>/tree`).
pub fn worktree_dir(storage: &Path) -> PathBuf {
    let mut found = Vec::new();
    for url in std::fs::read_dir(storage.join("git/worktrees")).unwrap() {
        for r in std::fs::read_dir(url.unwrap().path()).unwrap() {
            found.push(r.unwrap().path().join("tree"));
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

/// The single cached bare repository under `storage` (`git/<url hash>`).
pub fn cache_dir(storage: &Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(storage.join("git"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

/// A TCP proxy in front of the git server that can slow down answers (clone and fetch)
/// and uploads of pushes (`git-receive-pack` requests), or hang every connection.
pub struct SlowProxy {
    pub port: u16,
    pub mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    /// Bytes sent to clients (pack data of clones and fetches) and received from them.
    pub down: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub up_pushes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Connections accepted.
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// [`SlowProxy`] modes.
pub const FAST: u8 = 0;
/// Answers trickle at about 40 KB/s.
pub const SLOW_DOWNLOADS: u8 = 1;
/// Push uploads trickle at about 200 B/s.
pub const SLOW_PUSHES: u8 = 2;
/// Connections are accepted and never answered.
pub const HANG: u8 = 3;

impl SlowProxy {
    pub async fn start(upstream_port: u16) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(FAST));
        let down = Arc::new(AtomicU64::new(0));
        let up_pushes = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (m, d, u, a) = (
            mode.clone(),
            down.clone(),
            up_pushes.clone(),
            accepted.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let (m, d, u) = (m.clone(), d.clone(), u.clone());
                tokio::spawn(async move {
                    if m.load(Ordering::SeqCst) == HANG {
                        // Hold the connection open, never answer.
                        let _keep = client;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    let Ok(server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let push = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let p2 = push.clone();
                    let (m2, m3) = (m.clone(), m.clone());
                    let upload = tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        let mut window: Vec<u8> = Vec::new();
                        loop {
                            let slow = m2.load(Ordering::SeqCst) == SLOW_PUSHES;
                            let cap = if slow { 10 } else { buf.len() };
                            let n = match cr.read(&mut buf[..cap]).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if !p2.load(Ordering::SeqCst) {
                                window.extend_from_slice(&buf[..n]);
                                if is_push_request(&window) {
                                    p2.store(true, Ordering::SeqCst);
                                }
                                let keep = window.len().saturating_sub(128);
                                window.drain(..keep);
                            }
                            if p2.load(Ordering::SeqCst) {
                                u.fetch_add(n as u64, Ordering::SeqCst);
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            if slow {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                        let _ = sw.shutdown().await;
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let slow = m3.load(Ordering::SeqCst) == SLOW_DOWNLOADS;
                        let cap = if slow { 2048 } else { buf.len() };
                        let n = match sr.read(&mut buf[..cap]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        d.fetch_add(n as u64, Ordering::SeqCst);
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        if slow {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    let _ = cw.shutdown().await;
                    upload.abort();
                });
            }
        });
        Self {
            port,
            mode,
            down,
            up_pushes,
            accepted,
            task,
        }
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
    }

    /// The git server's URL for `repo` through the proxy.
    pub fn url(&self, git: &GitHttpServer, repo: &str) -> String {
        git.url(repo)
            .replacen(&format!(":{}/", git.port()), &format!(":{}/", self.port), 1)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `POST ...git-receive-pack` request line: the upload of a push.
fn is_push_request(window: &[u8]) -> bool {
    window.split(|b| *b == b'\n').any(|line| {
        line.starts_with(b"POST ") && line.windows(16).any(|w| w == b"git-receive-pack")
    })
}

/// `git diff --name-only a b` in the served repository `name`.
pub fn changed_paths(git: &GitHttpServer, name: &str, a: &str, b: &str) -> Vec<String> {
    let out = git
        .repos()
        .git(name)
        .unwrap()
        .args(["diff", "--name-only", a, b])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls `cond` every 20 ms for up to `limit`; true when it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// `kill -9 <pid>` (the testbed's process handle reaps it on drop).
pub fn kill9(process: &Process) {
    let ok = Command::new("kill")
        .args(["-KILL", &process.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}
