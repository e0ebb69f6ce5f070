//! Shared helpers for the git layer's integration tests (tests/git_*.rs).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use image_automation::git::{
    ApplyResult, Author, GitAuth, GitCache, GitClient, GitError, GitRef, PushSpec, PushedCommit,
    RepoSpec, SigningKey, UpdateOutcome, UpdateRequest, Written,
};
use testbed::git::{BareRepos, GitHttpServer, GitHttpServerOptions, git_cli, seed_manifests};

pub const REGISTRY: &str = "registry.test:5000";
pub const FILE: &str = "clusters/prod/checkout.yaml";

pub fn checkout_line(tag: &str) -> String {
    format!("{REGISTRY}/team/checkout:{tag} # {{\"$imagepolicy\": \"flux-system:checkout\"}}")
}

pub fn seed(repos: &BareRepos, name: &str) -> String {
    repos.create(name, &seed_manifests(REGISTRY)).unwrap()
}

pub fn author() -> Author {
    Author {
        name: "Flux Bot".into(),
        email: "flux@example.invalid".into(),
    }
}

pub fn request(repo: RepoSpec, checkout: GitRef, push: PushSpec) -> UpdateRequest {
    UpdateRequest {
        repo,
        checkout,
        push,
        author: author(),
        signing: None,
        max_attempts: 3,
        sparse: None,
    }
}

pub fn with_signing(mut r: UpdateRequest, key: SigningKey) -> UpdateRequest {
    r.signing = Some(key);
    r
}

/// What an update that wrote `files` (relative to the worktree) returns.
pub fn wrote(message: &str, files: &[&str]) -> ApplyResult {
    Ok(Some(Written {
        message: message.to_string(),
        files: files.iter().map(Into::into).collect(),
        originals: Vec::new(),
    }))
}

/// An update that replaces `from` by `to` in [`FILE`]; writes nothing (and so commits
/// nothing) when `from` is absent, like the setters finding nothing.
pub fn set_tag(dir: &Path, from: &str, to: &str) -> ApplyResult {
    let path = dir.join(FILE);
    let text = std::fs::read_to_string(&path)?;
    if !text.contains(&checkout_line(from)) {
        return wrote(&format!("Update checkout to {to}"), &[]);
    }
    std::fs::write(
        &path,
        text.replace(&checkout_line(from), &checkout_line(to)),
    )?;
    wrote(
        &format!("Update checkout to {to}\n\nAutomated by image-automation."),
        &[FILE],
    )
}

/// Runs `update_and_push` on a blocking thread, as the controller does.
pub async fn run<F>(
    cache: &Arc<GitCache>,
    request: &UpdateRequest,
    mut apply: F,
) -> Result<UpdateOutcome, GitError>
where
    F: FnMut(&Path) -> ApplyResult + Send + 'static,
{
    let cache = cache.clone();
    let request = request.clone();
    tokio::task::spawn_blocking(move || cache.update_and_push(&request, &mut apply))
        .await
        .unwrap()
}

pub fn git_in(dir: &Path) -> Command {
    let mut c = git_cli().unwrap();
    c.current_dir(dir);
    c
}

pub fn output(command: &mut Command) -> (bool, String) {
    let out = command.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Pack files in the cache (each fetch that brings objects adds one).
pub fn pack_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("objects/pack"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
        .unwrap_or(0)
}

/// A basic-auth Secret's data (`username`, `password`), as Flux documents it.
pub fn basic(user: &str, password: &str) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("username".to_string(), user.as_bytes().to_vec()),
        ("password".to_string(), password.as_bytes().to_vec()),
    ])
}

/// The testbed's smart-HTTP server with basic auth.
pub async fn http_server() -> GitHttpServer {
    GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap()
}

/// The smart-HTTP server with the seeded repository `fleet`, and `fleet`'s head.
pub async fn http_fleet() -> (GitHttpServer, String) {
    let server = http_server().await;
    let seeded = seed(server.repos(), "fleet");
    (server, seeded)
}

/// An empty cache in a temporary directory, which lives as long as the returned `TempDir`.
pub fn new_cache() -> (tempfile::TempDir, Arc<GitCache>) {
    let storage = tempfile::tempdir().unwrap();
    let cache = Arc::new(GitCache::new(storage.path()));
    (storage, cache)
}

/// `repo` on `server`, with the server's own credentials.
pub fn http_spec(server: &GitHttpServer, repo: &str) -> RepoSpec {
    let url = server.url(repo);
    let auth =
        GitAuth::from_secret(&url, Some(&basic(server.username(), server.password()))).unwrap();
    RepoSpec::new(url, auth)
}

/// `repo` on `server` with the server's own credentials, reached through the proxy at
/// `proxy_address` (a `proxySecretRef`'s `address`) as `proxy_user`/`proxy_password`.
pub fn proxied_spec(
    server: &GitHttpServer,
    repo: &str,
    proxy_address: String,
    proxy_user: &str,
    proxy_password: &str,
) -> RepoSpec {
    let url = server.url(repo);
    let mut proxy_data = basic(proxy_user, proxy_password);
    proxy_data.insert("address".to_string(), proxy_address.into_bytes());
    let auth = GitAuth::from_secret(&url, Some(&basic(server.username(), server.password())))
        .unwrap()
        .with_proxy_secret(&url, &proxy_data)
        .unwrap();
    RepoSpec::new(url, auth)
}

/// The push of `pushed` on top of `base` changed only the checkout tag in [`FILE`], from
/// `from` to `to`: `main` holds that file, and no other path differs.
pub fn assert_only_tag_changed(
    repos: &BareRepos,
    name: &str,
    base: &str,
    pushed: &str,
    from: &str,
    to: &str,
) {
    let original = repos.file_at(name, base, FILE).unwrap().unwrap();
    assert_eq!(
        repos.file_at(name, "main", FILE).unwrap().unwrap(),
        original.replace(&checkout_line(from), &checkout_line(to))
    );
    assert_only_file_differs(repos, name, base, pushed);
}

/// The trees of `a` and `b` differ in exactly one path, [`FILE`].
pub fn assert_only_file_differs(repos: &BareRepos, name: &str, a: &str, b: &str) {
    let (ok, diff) = output(repos.git(name).unwrap().args(["diff", "--name-only", a, b]));
    assert!(ok, "{diff}");
    assert_eq!(diff.trim(), FILE);
}

/// Runs `request` with [`set_tag`] from `from` to `to`; asserts it pushed one commit whose
/// only parent is `parent` in the repository `name`, and returns that commit.
pub async fn push_tag_on(
    cache: &Arc<GitCache>,
    request: &UpdateRequest,
    (repos, name): (&BareRepos, &str),
    parent: &str,
    (from, to): (&'static str, &'static str),
) -> PushedCommit {
    let out = run(cache, request, move |d| set_tag(d, from, to))
        .await
        .unwrap();
    let pushed = out.pushed.expect("a commit was pushed");
    assert_eq!(
        repos.commit_parents(name, &pushed.commit).unwrap(),
        [parent.to_string()]
    );
    pushed
}

/// Runs the 1.2.3 -> 1.2.4 update of `repo` on `main` with a fresh cache, where the
/// credentials are wrong: asserts the failure is retried (not a stall) and that `name`'s
/// `main` is still `head`, and returns the error for the transport's own checks.
pub async fn wrong_credentials_push_nothing(
    repo: RepoSpec,
    (repos, name): (&BareRepos, &str),
    head: &str,
) -> GitError {
    let (_storage, cache) = new_cache();
    let req = request(repo, GitRef::branch("main"), PushSpec::default());
    let err = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap_err();
    assert!(!err.is_stall(), "{err:?}");
    assert_eq!(
        repos.head_commit(name, "main").unwrap(),
        Some(head.to_string())
    );
    err
}
