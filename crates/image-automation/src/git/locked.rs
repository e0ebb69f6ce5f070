//! One cached repository held for one operation: open, recover, checkout, commit, push.

use super::*;

/// A cached repository, exclusively held for one operation.
pub struct LockedRepo<'a> {
    // Field order: the session is closed before the locks are released.
    pub(super) session: Option<Session>,
    pub(super) spec: RepoSpec,
    pub(super) cache: &'a GitCache,
    /// The URL hash: the repository's and its worktrees' directory name.
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) work_root: PathBuf,
    pub(super) _owner: recovery::OwnerLock,
    pub(super) _guard: UrlGuard,
}

impl std::fmt::Debug for LockedRepo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockedRepo")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// What [`LockedRepo::checkout`] resolved. The worktree is the URL's persistent one: use
/// it only while the [`LockedRepo`] is held.
#[derive(Debug)]
pub struct CheckedOut {
    pub worktree: Worktree,
    /// What bringing the worktree to its base took.
    pub prepared: PrepareStats,
    /// The fetches this checkout made.
    pub fetches: Vec<FetchStats>,
    /// The checkout ref's commit (the worktree may be based on the push branch instead).
    pub checkout_commit: ObjectId,
    pub label: String,
}

impl LockedRepo<'_> {
    pub(super) fn session(&self) -> Result<&Session, GitError> {
        self.session
            .as_ref()
            .ok_or_else(|| GitError::Git("the cache is not open".into()))
    }

    /// Opens the repository; one that cannot be opened is quarantined and created anew.
    pub(super) fn reopen(&mut self) -> Result<(), GitError> {
        self.session = None;
        let open = |this: &Self| {
            Session::open(
                &this.dir,
                &this.spec.url,
                &this.spec.auth,
                this.spec.timeout,
                this.cache.cancel.clone(),
            )
        };
        let session = match open(self) {
            Err(GitError::CacheDamaged(detail)) => {
                self.quarantine(&detail)?;
                open(self)?
            }
            other => other?,
        };
        self.session = Some(session);
        Ok(())
    }

    /// Removes the `*.lock` files of a process that died in the repository or its
    /// worktrees: this process owns both now (see the `recovery` module).
    pub(super) fn clear_stale_locks(&self) -> Result<(), GitError> {
        let mut removed = recovery::clear_stale_locks(&self.dir)?;
        removed.extend(recovery::clear_stale_locks(&self.work_root)?);
        if removed.is_empty() {
            return Ok(());
        }
        let detail = format!(
            "removed {} stale lock or temporary file(s) left by a stopped process in the git cache of {}: {}",
            removed.len(),
            scrubbed_url(&self.spec),
            removed.join(", ")
        );
        tracing::warn!(cache = %self.dir.display(), "{detail}");
        self.cache.note(
            &self.dir,
            CacheRecovery {
                kind: RecoveryKind::StaleLocks,
                detail,
            },
        );
        Ok(())
    }

    /// Moves the damaged repository aside (with its worktrees) and records why.
    pub(super) fn quarantine(&mut self, why: &str) -> Result<(), GitError> {
        self.session = None;
        let aside = recovery::quarantine(&self.cache.root, &self.dir, &self.name)?;
        let detail = format!(
            "the git cache of {} was damaged ({why}); moved it to {} and cloning again",
            scrubbed_url(&self.spec),
            aside.display()
        );
        tracing::warn!(cache = %self.dir.display(), "{detail}");
        self.cache.note(
            &self.dir,
            CacheRecovery {
                kind: RecoveryKind::Quarantined,
                detail,
            },
        );
        Ok(())
    }

    /// After a failure that may come from the cache itself: checks the repository and,
    /// when it is damaged, quarantines it and reopens an empty one. True when it did
    /// (the operation is worth one more try).
    pub(super) fn recover_from(&mut self, err: &GitError) -> Result<bool, GitError> {
        if !matches!(
            err,
            GitError::Git(_) | GitError::CacheDamaged(_) | GitError::PushFailed(_)
        ) {
            return Ok(false);
        }
        let damage = match self.session()?.damage() {
            Ok(Some(said)) => said,
            Ok(None) => match err {
                GitError::CacheDamaged(detail) => detail.clone(),
                _ => return Ok(false),
            },
            // fsck itself could not run: the failure stands.
            Err(_) => return Ok(false),
        };
        self.quarantine(&format!("{err}; git fsck: {damage}"))?;
        self.reopen()?;
        Ok(true)
    }

    /// Fetches the checkout ref (and `also_branch` when given and present) and brings the
    /// persistent worktree of (checkout ref, `also_branch`) to `also_branch`'s head when it
    /// exists remotely, else to the checkout commit.
    pub fn checkout(
        &self,
        checkout: &GitRef,
        also_branch: Option<&str>,
    ) -> Result<CheckedOut, GitError> {
        self.checkout_sparse(checkout, also_branch, None)
    }

    /// [`checkout`](Self::checkout) with only `sparse` (see [`sparse_path`]) on disk
    /// when given.
    pub fn checkout_sparse(
        &self,
        checkout: &GitRef,
        also_branch: Option<&str>,
        sparse: Option<&str>,
    ) -> Result<CheckedOut, GitError> {
        let s = self.session()?;
        let target = self.resolve_semver(checkout.checkout())?;
        let (remote_ref, label) = target.remote_ref()?;
        let mut refs = vec![remote_ref.clone()];
        if let Some(b) = also_branch {
            check_ref_part("push branch", b)?;
            refs.push(format!("refs/heads/{b}"));
        }
        let cached = s.local_commit(&tracking_ref(&remote_ref))?.is_some();
        let depth = match &target {
            Checkout::Commit { .. } => Depth::Full,
            _ if !cached => Depth::Shallow,
            _ => Depth::Incremental,
        };
        let mut fetches = Vec::new();
        let (present, duration, bytes) = s.fetch(&refs, depth)?;
        fetches.push(FetchStats {
            kind: if cached {
                FetchKind::Fetch
            } else {
                FetchKind::Clone
            },
            duration,
            bytes,
        });
        let checkout_commit = match &target {
            Checkout::Commit { commit, .. } => {
                let id = ObjectId::from_hex(commit.as_bytes()).map_err(|_| {
                    GitError::InvalidConfig(format!("commit {commit:?} is not a full SHA-1"))
                })?;
                if !s.has_commit(id) {
                    let (_, duration, bytes) = s.fetch(&refs[..1], Depth::Full)?;
                    fetches.push(FetchStats {
                        kind: FetchKind::Fetch,
                        duration,
                        bytes,
                    });
                }
                if !s.has_commit(id) {
                    return Err(GitError::RefNotFound(format!(
                        "commit {commit} not found on {label}"
                    )));
                }
                id
            }
            _ => s.local_commit(&tracking_ref(&remote_ref))?.ok_or_else(|| {
                GitError::RefNotFound(format!("couldn't find remote ref {remote_ref}"))
            })?,
        };
        let base = match (also_branch, present.get(1).copied()) {
            (Some(b), Some(true)) => s
                .local_commit(&tracking_ref(&format!("refs/heads/{b}")))?
                .unwrap_or(checkout_commit),
            _ => checkout_commit,
        };
        let mut key = format!("{remote_ref}\0{}", also_branch.unwrap_or(""));
        // One worktree per sparse path: a full one is never reduced, nor a sparse one
        // filled (the key of a full worktree is unchanged from before sparse checkout).
        if let Some(sparse) = sparse {
            key.push_str("\0sparse\0");
            key.push_str(sparse);
        }
        let key = sha2::Sha256::digest(key);
        let dir = self.work_root.join(&hex::encode(key)[..16]);
        let (worktree, prepared) = Worktree::prepare(&s.repo, &dir, base, sparse)?;
        Ok(CheckedOut {
            worktree,
            prepared,
            fetches,
            checkout_commit,
            label,
        })
    }

    /// See [`Worktree::commit_written`].
    pub fn commit_written(
        &self,
        worktree: &mut Worktree,
        author: &Author,
        written: &Written,
        signing: Option<&SigningKey>,
    ) -> Result<Option<ObjectId>, GitError> {
        let session = self.session()?;
        worktree.commit_written(&session.repo, author, written, signing, session.timeout)
    }

    /// Pushes `commit` to `branch` (forced when `force`), then `refspec` if given, with
    /// `options` as push options on both.
    pub fn push(
        &self,
        commit: ObjectId,
        branch: &str,
        force: bool,
        refspec: Option<&str>,
        options: &BTreeMap<String, String>,
    ) -> Result<(), GitError> {
        let s = self.session()?;
        check_ref_part("push branch", branch)?;
        let options: Vec<String> = options
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        if options.iter().any(|o| o.contains(['\n', '\0'])) {
            return Err(GitError::InvalidConfig(
                "push options must be single-line".into(),
            ));
        }
        s.push(
            &format!("{commit}:refs/heads/{branch}"),
            branch,
            force,
            &options,
        )?;
        s.set_ref(&tracking_ref(&format!("refs/heads/{branch}")), commit)?;
        if let Some(refspec) = refspec {
            let spec = refspec.trim_start_matches('+');
            if refspec.starts_with('-')
                || spec
                    .split(':')
                    .any(|p| !p.is_empty() && check_ref_part("refspec", p).is_err())
            {
                return Err(GitError::InvalidConfig(format!(
                    "invalid refspec {refspec:?}"
                )));
            }
            // The refspec may name HEAD or the push branch, meaning the new commit.
            s.set_ref(&format!("refs/heads/{branch}"), commit)?;
            s.set_head(branch)?;
            let spec = if force && !refspec.starts_with('+') {
                format!("+{refspec}")
            } else {
                refspec.to_string()
            };
            s.push(&spec, refspec, false, &options)?;
        }
        Ok(())
    }

    /// A semver checkout becomes a checkout of the highest remote tag in its range, as
    /// Flux's does; other checkouts are returned as they are.
    pub(super) fn resolve_semver(&self, target: Checkout) -> Result<Checkout, GitError> {
        let Checkout::Semver(range) = target else {
            return Ok(target);
        };
        let constraint = semver_constraint(&range)?;
        let tags = self.session()?.ls_tags()?;
        highest_matching_tag(&constraint, tags.iter().map(String::as_str))
            .map(|tag| Checkout::Tag(tag.to_string()))
            .ok_or_else(|| {
                GitError::RefNotFound(format!(
                    "spec.ref.semver: no tag matches semver range {range:?} ({} tags on the remote)",
                    tags.len()
                ))
            })
    }

    /// The remote commit of the checkout ref.
    pub fn remote_head(&self, checkout: &GitRef) -> Result<Option<RemoteHead>, GitError> {
        let target = checkout.checkout();
        if matches!(target, Checkout::Commit { .. } | Checkout::Semver(_)) {
            return Ok(None);
        }
        let (remote_ref, label) = target.remote_ref()?;
        match self
            .session()?
            .ls_remote(std::slice::from_ref(&remote_ref))?
            .first()
        {
            Some(Some(id)) => Ok(Some(RemoteHead {
                label,
                commit: id.to_string(),
            })),
            _ => Err(GitError::RefNotFound(format!(
                "couldn't find remote ref {remote_ref}"
            ))),
        }
    }
}
