//! Shared helpers for the git layer's integration tests (tests/git_*.rs).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use image_automation::git::{
    ApplyError, Author, GitCache, GitClient, GitError, GitRef, PushSpec, RepoSpec, SigningKey,
    UpdateOutcome, UpdateRequest,
};
use testbed::git::{BareRepos, git_cli, seed_manifests};

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
    }
}

pub fn with_signing(mut r: UpdateRequest, key: SigningKey) -> UpdateRequest {
    r.signing = Some(key);
    r
}

/// An update that replaces `from` by `to` in [`FILE`]; `None` (nothing to do) when
/// `from` is absent, like the setters finding nothing.
pub fn set_tag(dir: &Path, from: &str, to: &str) -> Result<Option<String>, ApplyError> {
    let path = dir.join(FILE);
    let text = std::fs::read_to_string(&path)?;
    if !text.contains(&checkout_line(from)) {
        return Ok(Some(format!("Update checkout to {to}")));
    }
    std::fs::write(
        &path,
        text.replace(&checkout_line(from), &checkout_line(to)),
    )?;
    Ok(Some(format!(
        "Update checkout to {to}\n\nAutomated by image-automation."
    )))
}

/// Runs `update_and_push` on a blocking thread, as the controller does.
pub async fn run<F>(
    cache: &Arc<GitCache>,
    request: &UpdateRequest,
    mut apply: F,
) -> Result<UpdateOutcome, GitError>
where
    F: FnMut(&Path) -> Result<Option<String>, ApplyError> + Send + 'static,
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
