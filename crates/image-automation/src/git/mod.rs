//! The git layer: a persistent per-URL cache, checkout, commit, sign and push.
//!
//! - **Cache**: one bare repository per remote URL under `<storage>/git/<sha256(url)>`,
//!   shared by every automation on that URL and updated by incremental gix fetches
//!   (protocol v2; depth 1 the first time a ref is fetched). Operations on one URL are
//!   serialised by a per-URL mutex.
//! - **Checkout**: the checkout ref (Flux's precedence: commit > name > tag > semver >
//!   branch > `master`) is brought into a persistent [`Worktree`] per URL and base ref
//!   (`<storage>/git/worktrees/<url hash>/<ref hash>`), rewriting only the paths that
//!   differ from what it held and restoring whatever an aborted run left behind.
//! - **Commit**: [`Worktree::commit_written`] writes the blobs of exactly the files the
//!   update wrote, the tree (the base tree plus those) and the commit with gix; OpenPGP
//!   signatures come from rPGP, SSH signatures from `ssh-keygen -Y sign`. The worktree's
//!   recorded base moves to the new commit only once it is pushed.
//! - **Push**: the `git` CLI (gix cannot push), credentials in the environment only.
//! - **Recovery** (see `recovery`): an owner `flock` per repository lets each open remove
//!   the lock and temporary files a killed process left; a repository gix cannot open, or
//!   one `git fsck` finds damaged after a local failure, is moved to
//!   `<storage>/git/quarantine/` and cloned again in the same run. Each repair is
//!   reported in [`UpdateOutcome::recoveries`] (a Warning event and a metric).
//! - **Shutdown**: [`GitClient::cancel`] interrupts fetches (gix's interrupt flag) and
//!   kills `git` children with their process group; they end with
//!   [`GitError::Cancelled`], naming the commit of a killed push.
//!
//! Everything here is blocking (gix's HTTP transport is blocking). The controller calls
//! [`GitClient`] methods inside `tokio::task::spawn_blocking`.
//!
//! Error mapping: see [`GitError::flux_reason`] and [`GitError::is_stall`].

mod auth;
mod cli;
mod error;
mod locked;
pub mod provider;
mod recovery;
mod repo;
mod sign;
mod worktree;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use gix::ObjectId;
use sha2::Digest as _;

pub use auth::{GitAuth, Secret};
pub use error::GitError;
pub use locked::{CheckedOut, LockedRepo};
pub use recovery::{CacheRecovery, RecoveryKind};
pub use sign::SigningKey;
pub use worktree::{Author, PrepareStats, Worktree, sparse_path};

use repo::{Depth, Session, tracking_ref};

/// Flux's default when a GitRepository has no ref.
pub const DEFAULT_BRANCH: &str = "master";

/// A source-controller `GitRepositoryRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitRef {
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub semver: Option<String>,
    pub name: Option<String>,
    pub commit: Option<String>,
}

/// What to check out, after Flux's precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkout {
    Commit {
        commit: String,
        branch: Option<String>,
    },
    Name(String),
    Tag(String),
    Semver(String),
    Branch(String),
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.is_empty()).cloned()
}

impl GitRef {
    pub fn branch(name: &str) -> Self {
        Self {
            branch: Some(name.to_string()),
            ..Self::default()
        }
    }

    /// commit > name > tag > semver > branch > `master`.
    pub fn checkout(&self) -> Checkout {
        if let Some(commit) = non_empty(&self.commit) {
            Checkout::Commit {
                commit,
                branch: non_empty(&self.branch),
            }
        } else if let Some(name) = non_empty(&self.name) {
            Checkout::Name(name)
        } else if let Some(tag) = non_empty(&self.tag) {
            Checkout::Tag(tag)
        } else if let Some(semver) = non_empty(&self.semver) {
            Checkout::Semver(semver)
        } else {
            Checkout::Branch(non_empty(&self.branch).unwrap_or_else(|| DEFAULT_BRANCH.into()))
        }
    }

    /// The branch Flux pushes to without `push.branch`: the ref's `branch` field, or
    /// `master` when the ref is empty.
    fn checkout_branch(&self) -> Option<String> {
        if *self == Self::default() {
            return Some(DEFAULT_BRANCH.into());
        }
        non_empty(&self.branch)
    }
}

impl Checkout {
    /// The remote ref to fetch, and the label used in revisions (`main`, `v1.0`, ...).
    fn remote_ref(&self) -> Result<(String, String), GitError> {
        match self {
            Self::Branch(b) => Ok((format!("refs/heads/{b}"), b.clone())),
            Self::Tag(t) => Ok((format!("refs/tags/{t}"), t.clone())),
            Self::Name(n) => Ok((n.clone(), n.clone())),
            Self::Commit {
                branch: Some(b), ..
            } => Ok((format!("refs/heads/{b}"), b.clone())),
            Self::Commit { branch: None, .. } => Ok(("HEAD".into(), String::new())),
            // Resolved to a tag by `LockedRepo::resolve_semver` before any fetch.
            Self::Semver(s) => Err(GitError::InvalidConfig(format!(
                "spec.ref.semver {s:?} must be resolved to a tag first"
            ))),
        }
    }
}

/// Parses `spec.ref.semver` as a Masterminds constraint; a bad range stalls.
fn semver_constraint(range: &str) -> Result<semver_range::Constraint, GitError> {
    semver_range::Constraint::parse(range).map_err(|e| {
        GitError::InvalidConfig(format!(
            "spec.ref.semver: invalid semver range {range:?}: {e}"
        ))
    })
}

/// The tag Flux's semver checkout picks: the highest version (fluxcd/pkg
/// `version.ParseVersion`) inside `constraint`; tags that are no version are skipped.
/// Flux breaks ties between equal versions (differing in build metadata only) by commit
/// time; without fetching every candidate we take the bytewise-highest name, so the
/// choice is at least deterministic.
fn highest_matching_tag<'t>(
    constraint: &semver_range::Constraint,
    tags: impl IntoIterator<Item = &'t str>,
) -> Option<&'t str> {
    tags.into_iter()
        .filter_map(|tag| {
            let version = semver_range::Version::parse_tag(tag).ok()?;
            constraint.matches(&version).then_some((version, tag))
        })
        .max_by(|(a, a_tag), (b, b_tag)| a.precedence(b).then_with(|| a_tag.cmp(b_tag)))
        .map(|(_, tag)| tag)
}

/// The remote and how to reach it (GitRepository `url`, secret, `timeout`). `Debug`
/// shows the URL without credentials.
#[derive(Clone)]
pub struct RepoSpec {
    pub url: String,
    pub auth: GitAuth,
    /// Per network operation; Flux's default is one minute.
    pub timeout: Duration,
}

impl std::fmt::Debug for RepoSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoSpec")
            .field("url", &scrubbed_url(self))
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RepoSpec {
    pub fn new(url: impl Into<String>, auth: GitAuth) -> Self {
        Self {
            url: url.into(),
            auth,
            timeout: Duration::from_secs(60),
        }
    }
}

/// `spec.git.push`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushSpec {
    pub branch: Option<String>,
    pub refspec: Option<String>,
    pub options: BTreeMap<String, String>,
}

/// Everything one automation run needs from git.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    pub repo: RepoSpec,
    pub checkout: GitRef,
    pub push: PushSpec,
    pub author: Author,
    pub signing: Option<SigningKey>,
    /// How many times to fetch, re-apply and push when the branch moved meanwhile.
    pub max_attempts: u32,
    /// Sparse checkout (Flux's `GitSparseCheckout` gate): only this path of the
    /// repository (cleaned with [`sparse_path`]) is on disk; the commit still carries
    /// every other path of the base tree.
    pub sparse: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// The label of the checkout ref (`main`, a tag, a full ref name; empty for a bare commit).
    pub checkout_label: String,
    /// The commit checked out (on the last attempt).
    pub checked_out: String,
    /// The commit pushed, if any (no change, no commit, no push).
    pub pushed: Option<PushedCommit>,
    /// Attempts made (more than one after rejected pushes).
    pub attempts: u32,
    /// Whether the push branch differs from the checkout branch (Flux's switchBranch).
    pub switched_branch: bool,
    /// The fetches of every attempt, in order.
    pub fetches: Vec<FetchStats>,
    /// What was done to the cache to make this run possible (quarantine of a damaged
    /// repository, stale locks removed), including by earlier failed runs on the URL.
    pub recoveries: Vec<CacheRecovery>,
}

impl UpdateOutcome {
    /// Flux's `observedSourceRevision`: `<label>@sha1:<hash>` of the pushed commit, or of
    /// the checked-out commit when nothing was pushed or the push went to another branch.
    pub fn observed_revision(&self) -> String {
        let id = match &self.pushed {
            Some(p) if !self.switched_branch => &p.commit,
            _ => &self.checked_out,
        };
        revision(&self.checkout_label, id)
    }
}

fn revision(label: &str, id: &str) -> String {
    if label.is_empty() {
        format!("sha1:{id}")
    } else {
        format!("{label}@sha1:{id}")
    }
}

/// Whether a fetch started from nothing or built on what the cache had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchKind {
    /// The cache had no copy of the checkout ref yet (a first, usually shallow, fetch).
    Clone,
    /// An incremental fetch on top of the cached ref.
    Fetch,
}

impl FetchKind {
    /// The metrics label: `clone` or `fetch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clone => "clone",
            Self::Fetch => "fetch",
        }
    }
}

/// One fetch of a run: its kind, how long it took and the pack bytes received (0 when
/// the remote had nothing new).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchStats {
    pub kind: FetchKind,
    pub duration: Duration,
    pub bytes: u64,
}

/// A pushed commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedCommit {
    pub commit: String,
    pub branch: String,
    pub refspec: Option<String>,
    pub message: String,
}

/// What the checkout ref points to on the remote right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHead {
    pub label: String,
    pub commit: String,
}

impl RemoteHead {
    /// `<label>@sha1:<hash>`, comparable with `observedSourceRevision`.
    pub fn revision(&self) -> String {
        revision(&self.label, &self.commit)
    }
}

/// Errors from the update closure.
pub type ApplyError = Box<dyn std::error::Error + Send + Sync>;

/// What an update wrote: the commit message and every file it wrote. Only these files
/// are committed, whatever else the worktree holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub message: String,
    /// Absolute paths under the worktree, or paths relative to it.
    pub files: Vec<PathBuf>,
    /// What written files held when the update read them (path as in `files`), when the
    /// update knows. Content that is not the base commit's means the worktree had
    /// drifted in a way its stat data did not show (a bad disk): the file is restored and
    /// the attempt made again.
    pub originals: Vec<(PathBuf, Vec<u8>)>,
}

/// What the update closure returns: `None` for "nothing to do".
pub type ApplyResult = Result<Option<Written>, ApplyError>;

/// The git operations the controller needs; [`GitCache`] is the real one, tests of the
/// controller can use a fake. Methods block: call them in `spawn_blocking`.
pub trait GitClient: Send + Sync {
    /// ls-remote of the checkout ref, to skip the clone when neither the policies nor the
    /// remote head changed. `None` for commit and semver checkouts (Flux always syncs).
    fn remote_head(
        &self,
        repo: &RepoSpec,
        checkout: &GitRef,
    ) -> Result<Option<RemoteHead>, GitError>;

    /// Fetch, check out, `apply` (returns the commit message and the files it wrote, or
    /// `None` for "nothing to do"), commit exactly those files, push; on a rejected push fetch again and re-apply on the new
    /// head, up to `max_attempts` times.
    fn update_and_push(
        &self,
        request: &UpdateRequest,
        apply: &mut dyn FnMut(&Path) -> ApplyResult,
    ) -> Result<UpdateOutcome, GitError>;

    /// Shutdown: stop running and future operations as soon as possible (fetches are
    /// interrupted, `git` children killed); they fail with [`GitError::Cancelled`].
    fn cancel(&self) {}
}

/// The persistent cache of bare repositories, one per URL.
#[derive(Debug)]
pub struct GitCache {
    root: PathBuf,
    locks: Arc<Locks>,
    /// Set by [`GitClient::cancel`].
    cancel: Arc<AtomicBool>,
    /// Recoveries not reported yet, by repository directory: the next successful update
    /// of that URL reports them.
    recoveries: Mutex<HashMap<PathBuf, Vec<CacheRecovery>>>,
}

/// Repositories in use; a per-URL mutex whose guard owns its share of the table.
#[derive(Debug, Default)]
struct Locks {
    held: Mutex<HashSet<PathBuf>>,
    released: Condvar,
}

#[derive(Debug)]
struct UrlGuard {
    locks: Arc<Locks>,
    dir: PathBuf,
}

impl UrlGuard {
    fn acquire(locks: &Arc<Locks>, dir: &Path) -> Self {
        let mut held = locks.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.contains(dir) {
            held = locks.released.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.insert(dir.to_path_buf());
        Self {
            locks: locks.clone(),
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for UrlGuard {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.dir);
        self.locks.released.notify_all();
    }
}

/// Validates a branch or ref name we put on git's command line or in a refspec.
fn check_ref_part(what: &str, value: &str) -> Result<(), GitError> {
    let bad = value.is_empty()
        || value.starts_with('-')
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
        || gix::validate::reference::name_partial(value.into()).is_err();
    if bad {
        Err(GitError::InvalidConfig(format!("invalid {what} {value:?}")))
    } else {
        Ok(())
    }
}

impl GitCache {
    /// A cache under `<storage_path>/git`.
    pub fn new(storage_path: impl AsRef<Path>) -> Self {
        Self {
            root: storage_path.as_ref().join("git"),
            locks: Arc::default(),
            cancel: Arc::default(),
            recoveries: Mutex::default(),
        }
    }

    /// The bare repository for `url`: `<storage>/git/<sha256(url) as hex, 32 chars>`.
    pub fn repo_dir(&self, url: &str) -> PathBuf {
        let digest = sha2::Sha256::digest(url.trim_end_matches('/').as_bytes());
        self.root.join(&hex::encode(digest)[..32])
    }

    /// Locks the URL's repository (waiting for other operations on it, in this process
    /// and others), clears the lock files a killed process left in it, and opens it,
    /// creating it when needed and quarantining it when it cannot be opened.
    pub fn open(&self, repo: &RepoSpec) -> Result<LockedRepo<'_>, GitError> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(GitError::Cancelled(
                "no new git operation at shutdown".into(),
            ));
        }
        let dir = self.repo_dir(&repo.url);
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let guard = UrlGuard::acquire(&self.locks, &dir);
        let owner = recovery::OwnerLock::acquire(&self.root, &name)?;
        let work_root = self.root.join("worktrees").join(&name);
        let mut locked = LockedRepo {
            session: None,
            spec: repo.clone(),
            cache: self,
            name,
            dir,
            work_root,
            _owner: owner,
            _guard: guard,
        };
        locked.clear_stale_locks()?;
        locked.reopen()?;
        Ok(locked)
    }

    fn note(&self, dir: &Path, recovery: CacheRecovery) {
        self.recoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(dir.to_path_buf())
            .or_default()
            .push(recovery);
    }

    fn take_recoveries(&self, dir: &Path) -> Vec<CacheRecovery> {
        self.recoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(dir)
            .unwrap_or_default()
    }
}

/// The URL for messages: without credentials.
fn scrubbed_url(spec: &RepoSpec) -> String {
    spec.auth.secrets(&spec.url).scrub(&spec.url)
}

impl GitClient for GitCache {
    fn remote_head(
        &self,
        repo: &RepoSpec,
        checkout: &GitRef,
    ) -> Result<Option<RemoteHead>, GitError> {
        self.open(repo)?.remote_head(checkout)
    }

    fn update_and_push(
        &self,
        request: &UpdateRequest,
        apply: &mut dyn FnMut(&Path) -> ApplyResult,
    ) -> Result<UpdateOutcome, GitError> {
        let checkout_branch = request.checkout.checkout_branch();
        let push_branch = match (&request.push.branch, &checkout_branch) {
            (Some(p), _) if !p.is_empty() => p.clone(),
            (_, Some(b)) => b.clone(),
            _ => {
                return Err(GitError::InvalidConfig(
                    "push spec not provided, and cannot be inferred from .spec.git.checkout.ref or GitRepository .spec.ref".into(),
                ));
            }
        };
        check_ref_part("push branch", &push_branch)?;
        // Flux's GitForcePushBranch gate: force only when pushing elsewhere than the
        // checkout branch; the checkout branch itself is never overwritten.
        let switch = checkout_branch.as_deref() != Some(push_branch.as_str());
        let mut locked = self.open(&request.repo)?;
        let dir = locked.dir.clone();
        let mut outcome = self.attempts(&mut locked, request, apply, &push_branch, switch)?;
        outcome.recoveries = self.take_recoveries(&dir);
        Ok(outcome)
    }

    fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
}

impl GitCache {
    /// The fetch, apply, commit and push attempts of [`GitClient::update_and_push`].
    fn attempts(
        &self,
        locked: &mut LockedRepo<'_>,
        request: &UpdateRequest,
        apply: &mut dyn FnMut(&Path) -> ApplyResult,
        push_branch: &str,
        switch: bool,
    ) -> Result<UpdateOutcome, GitError> {
        let max = request.max_attempts.max(1);
        let mut attempt = 0;
        let mut recovered = false;
        let mut restored = false;
        let mut fetches = Vec::new();
        loop {
            attempt += 1;
            // A failure that fsck blames on the cache: quarantine, clone again and start
            // the attempt over, once per run.
            let mut co = match locked.checkout_sparse(
                &request.checkout,
                switch.then_some(push_branch),
                request.sparse.as_deref(),
            ) {
                Err(e) if !recovered && locked.recover_from(&e)? => {
                    recovered = true;
                    attempt -= 1;
                    continue;
                }
                other => other?,
            };
            fetches.append(&mut co.fetches);
            let outcome = |pushed| UpdateOutcome {
                checkout_label: co.label.clone(),
                checked_out: co.checkout_commit.to_string(),
                pushed,
                attempts: attempt,
                switched_branch: switch,
                fetches: fetches.clone(),
                recoveries: Vec::new(),
            };
            let Some(written) = apply(co.worktree.path()).map_err(GitError::Apply)? else {
                return Ok(outcome(None));
            };
            let committed = locked.commit_written(
                &mut co.worktree,
                &request.author,
                &written,
                request.signing.as_ref(),
            );
            let Some(commit) = (match committed {
                Err(GitError::WorktreeDrift(paths)) if !restored => {
                    tracing::warn!(%paths, "the update read worktree files that differ from the base commit; restored them, applying again");
                    restored = true;
                    attempt -= 1;
                    continue;
                }
                Err(e) if !recovered && locked.recover_from(&e)? => {
                    recovered = true;
                    attempt -= 1;
                    continue;
                }
                other => other?,
            }) else {
                return Ok(outcome(None));
            };
            if self.cancel.load(Ordering::SeqCst) {
                return Err(GitError::Cancelled(format!(
                    "commit {commit} for {push_branch} was not pushed"
                )));
            }
            match locked.push(
                commit,
                push_branch,
                switch,
                request.push.refspec.as_deref(),
                &request.push.options,
            ) {
                Ok(()) => {
                    // Pushed: the next run starts from this commit. If recording that
                    // fails, the old state still describes the worktree (the edits show
                    // as dirty and are restored), so the push stands.
                    if let Err(e) = co.worktree.settle() {
                        tracing::warn!(error = %e, "could not record the pushed commit in the worktree state");
                    }
                    return Ok(outcome(Some(PushedCommit {
                        commit: commit.to_string(),
                        branch: push_branch.to_string(),
                        refspec: request.push.refspec.clone(),
                        message: written.message,
                    })));
                }
                Err(GitError::PushRejected { .. }) if attempt < max => continue,
                // pack-objects reads the cache: a damaged object fails the push.
                Err(e) if !recovered && locked.recover_from(&e)? => {
                    recovered = true;
                    attempt -= 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests;
