//! The source setup of a run: from the automation's `sourceRef` to the git layer's
//! [`UpdateRequest`] (GitRepository, its Secrets, proxy, provider auth, timeout, signing
//! key, checkout and push refs), or the outcome that ends the run
//! (`SourceManagerFailed`, `AccessDenied`, `InvalidSourceConfiguration`).

use std::time::Duration;

use api_types::duration::parse_duration;
use api_types::meta::reason;
use api_types::{GitRepositoryRef, ImageUpdateAutomation, SigningKeyType};

use super::{Objects, ReconcilerOptions, RunOutcome};
use crate::git::{self, Author, GitAuth, GitError, GitRef, RepoSpec, SigningKey, UpdateRequest};

/// The source setup: what `update_and_push` needs, or how the run ends.
pub(super) async fn source_setup(
    obj: &ImageUpdateAutomation,
    namespace: &str,
    objects: &dyn Objects,
    options: &ReconcilerOptions,
    max_attempts: u32,
) -> Result<UpdateRequest, RunOutcome> {
    let spec = &obj.spec;
    let Some(git_spec) = spec.git.as_ref() else {
        return Err(RunOutcome::stalled(
            reason::INVALID_SOURCE_CONFIGURATION,
            "source kind 'GitRepository' necessitates field .spec.git",
        ));
    };
    let repo_ns = spec
        .source_ref
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(namespace);
    let repo_name = &spec.source_ref.name;
    if options.no_cross_namespace_refs && repo_ns != namespace {
        return Err(RunOutcome::stalled(
            reason::ACCESS_DENIED,
            format!(
                "can't access 'GitRepository/{repo_ns}/{repo_name}', cross-namespace references have been blocked"
            ),
        ));
    }
    let manager_failed = |detail: String| {
        RunOutcome::retry(
            reason::SOURCE_MANAGER_FAILED,
            format!("failed configuring source manager: {detail}"),
        )
    };
    let git_err = |e: GitError| {
        let message = format!("failed configuring source manager: {e}");
        if e.is_stall() {
            RunOutcome::stalled(e.flux_reason(), message)
        } else {
            RunOutcome::retry(e.flux_reason(), message)
        }
    };
    let Some(repo) = objects.git_repository(repo_ns, repo_name) else {
        return Err(manager_failed(format!(
            "referenced git repository does not exist: GitRepository {repo_ns}/{repo_name} not found"
        )));
    };
    let url = repo.spec.url.clone();
    let data = match &repo.spec.secret_ref {
        Some(r) => match objects.secret(repo_ns, &r.name) {
            Some(d) => Some(d),
            None => {
                return Err(manager_failed(format!(
                    "failed to get secret '{repo_ns}/{}': not found",
                    r.name
                )));
            }
        },
        None => None,
    };
    let mut auth = GitAuth::from_secret(&url, data.as_ref()).map_err(git_err)?;
    if let Some(r) = &repo.spec.proxy_secret_ref {
        let Some(proxy) = objects.secret(repo_ns, &r.name) else {
            return Err(manager_failed(format!(
                "failed to get proxy secret '{repo_ns}/{}': not found",
                r.name
            )));
        };
        auth = auth.with_proxy_secret(&url, &proxy).map_err(git_err)?;
    }
    let context = git::provider::ProviderContext {
        namespace,
        name: obj.metadata.name.as_deref().unwrap_or_default(),
        service_accounts: objects.service_accounts(),
    };
    auth = auth
        .with_provider(&repo.spec, repo_ns, data.as_ref(), &context)
        .await
        .map_err(git_err)?;
    let timeout = match repo.spec.timeout.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => parse_duration(t).map_err(|e| {
            RunOutcome::stalled(
                reason::INVALID_SOURCE_CONFIGURATION,
                format!("GitRepository {repo_ns}/{repo_name}: invalid spec.timeout: {e}"),
            )
        })?,
        None => Duration::from_secs(60),
    };
    let signing = match &git_spec.commit.signing_key {
        Some(key) => {
            let Some(data) = objects.secret(namespace, &key.secret_ref.name) else {
                return Err(manager_failed(format!(
                    "could not find signing key secret '{namespace}/{}'",
                    key.secret_ref.name
                )));
            };
            let kind = match key.key_type.unwrap_or_default() {
                SigningKeyType::Gpg => "gpg",
                SigningKeyType::Ssh => "ssh",
            };
            Some(SigningKey::from_secret(Some(kind), &data).map_err(git_err)?)
        }
        None => None,
    };
    let checkout = match &git_spec.checkout {
        Some(c) => git_ref(Some(&c.reference)),
        None => git_ref(repo.spec.reference.as_ref()),
    };
    let push = git_spec.push.clone().unwrap_or_default();
    let author = &git_spec.commit.author;
    Ok(UpdateRequest {
        repo: RepoSpec { url, auth, timeout },
        checkout,
        push: git::PushSpec {
            branch: push.branch.filter(|b| !b.is_empty()),
            refspec: push.refspec.filter(|r| !r.is_empty()),
            options: push.options.unwrap_or_default(),
        },
        author: Author {
            name: author.name.clone().unwrap_or_default(),
            email: author.email.clone(),
        },
        signing,
        max_attempts,
        sparse: options
            .sparse_checkout
            .then(|| spec.update.as_ref().and_then(|u| u.path.as_deref()))
            .flatten()
            .and_then(git::sparse_path),
    })
}

/// The GitRepositoryRef as the git layer's ref.
fn git_ref(r: Option<&GitRepositoryRef>) -> GitRef {
    let Some(r) = r else {
        return GitRef::default();
    };
    GitRef {
        branch: r.branch.clone(),
        tag: r.tag.clone(),
        semver: r.semver.clone(),
        name: r.name.clone(),
        commit: r.commit.clone(),
    }
}
