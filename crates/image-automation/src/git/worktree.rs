//! A persistent worktree per cached repository and base ref, brought to each run's base
//! commit by rewriting only what differs, and the commit of exactly what the update wrote.
//!
//! Layout: `<dir>/tree` holds the files, `<dir>/state` what they are: the base commit and,
//! for every tracked path, its mode, blob id and the stat data seen right after it was
//! written or verified. `state` is replaced atomically (write + rename) and only when the
//! files were just written or verified to match it.
//!
//! The tree is never trusted: anything may have changed it since the last run (an aborted
//! run, a crash mid-write, a commit whose push failed, another process, a bad disk). Every
//! [`Worktree::prepare`] walks it against `state`: a path is trusted only when its stat
//! data is unchanged and it is not "racy" (modified in the same file-system clock tick as
//! `state` was written); anything else is re-hashed, dirty paths are restored from the
//! object database and untracked files removed before the update reads anything. A
//! missing or unreadable `state` means a full checkout.
//!
//! The commit never looks at the tree as a whole: [`Worktree::commit_written`] builds it
//! from the base commit's tree plus the blobs of exactly the files the update says it
//! wrote, each of which must be a regular file the base tracks. Whatever else differs on
//! disk is not committed (and is restored by the next run).
//!
//! Blobs are written verbatim (no attribute filters): what is committed back is exactly
//! the repository's bytes plus the update's edits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gix::ObjectId;
use gix::objs::WriteTo as _;

mod files;
mod state;

use files::{prune_parents, read, remove_path, walk, write_entry};
use state::{Entry, Kind, STATE_HEADER, Stat, escape, parse_entry};

use super::Written;
use super::error::GitError;
use super::sign::SigningKey;

fn git_err(what: &str) -> impl Fn(gix::Error) -> GitError + '_ {
    move |e| GitError::Git(format!("{what}: {e}"))
}

fn io_err(what: String) -> impl Fn(std::io::Error) -> GitError {
    move |e| GitError::Git(format!("{what}: {e}"))
}

/// The author and committer of automation commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

/// One path whose content differs from the base tree.
#[derive(Debug)]
struct Change {
    path: String,
    /// Whether the base tree has the path.
    tracked: bool,
}

/// A written path, its kind, new blob and the stat data it had when it was read.
type Update = (String, Kind, ObjectId, Stat);

/// A commit written by [`Worktree::commit_written`] and not pushed yet.
#[derive(Debug)]
struct Pending {
    commit: ObjectId,
    tree: ObjectId,
    updates: Vec<Update>,
}

/// The persistent worktree of one base ref, held for one locked operation.
#[derive(Debug)]
pub struct Worktree {
    dir: PathBuf,
    root: PathBuf,
    base: ObjectId,
    base_tree: ObjectId,
    /// Sorted by path (git's byte order).
    entries: Vec<Entry>,
    /// mtime of `state` when it was written: entries modified at or after it are racy.
    stamp: (i64, i64),
    pending: Option<Pending>,
    /// Sparse checkout: only this path (a directory or a file, cleaned, never empty) and
    /// what is under it is materialised and verified; `None` for the whole tree.
    sparse: Option<String>,
}

/// What [`Worktree::prepare`] had to do, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrepareStats {
    /// True when the whole tree was written (no usable state).
    pub full: bool,
    /// Files written (restored or changed between the old and the new base).
    pub written: usize,
    /// Tracked paths removed, and untracked files deleted.
    pub removed: usize,
    /// True when the files were walked to find what changed since the state was recorded
    /// (every run that has a state).
    pub scanned: bool,
    /// Tracked paths found changed, missing or retyped on disk and restored.
    pub drifted: usize,
}

impl Worktree {
    /// Brings the worktree in `dir` to `commit`: a full checkout when `dir` has no usable
    /// state, else restores whatever an earlier run left dirty and rewrites only the
    /// paths that differ between the old base and `commit`.
    ///
    /// With `sparse` (a path cleaned by [`sparse_path`]), only the base tree's paths at or
    /// under it are on disk and verified; anything else in the tree is removed. The
    /// caller keeps one `dir` per sparse path.
    pub(crate) fn prepare(
        repo: &gix::Repository,
        dir: &Path,
        commit: ObjectId,
        sparse: Option<&str>,
    ) -> Result<(Self, PrepareStats), GitError> {
        let tree = repo
            .find_commit(commit)
            .map_err(git_err("reading the checkout commit"))?
            .tree_id()
            .map_err(git_err("reading the checkout tree"))?
            .detach();
        let mut stats = PrepareStats::default();
        // Earlier versions left a `clean` marker to skip the walk; nothing is trusted now.
        let _ = std::fs::remove_file(dir.join("clean"));
        let sparse = sparse.map(str::to_string);
        let Some(mut wt) = Self::load(repo, dir, sparse.clone()) else {
            stats.full = true;
            let wt = Self::full(repo, dir, commit, tree, sparse, &mut stats)?;
            return Ok((wt, stats));
        };
        let mut dirty = HashSet::new();
        stats.scanned = true;
        for change in wt.scan()? {
            if change.tracked {
                dirty.insert(change.path);
            } else {
                remove_path(&wt.root.join(&change.path))?;
                prune_parents(&wt.root, &change.path);
                stats.removed += 1;
            }
        }
        stats.drifted = dirty.len();
        if wt.base == commit && dirty.is_empty() {
            return Ok((wt, stats));
        }
        wt.transition(repo, commit, tree, &dirty, &mut stats)?;
        Ok((wt, stats))
    }

    /// The directory the update edits.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The commit that is checked out.
    pub fn base(&self) -> ObjectId {
        self.base
    }

    fn load(repo: &gix::Repository, dir: &Path, sparse: Option<String>) -> Option<Self> {
        let state = dir.join("state");
        let text = std::fs::read_to_string(&state).ok()?;
        let meta = std::fs::metadata(&state).ok()?;
        let mut lines = text.split('\n');
        if lines.next()? != STATE_HEADER {
            return None;
        }
        let base = ObjectId::from_hex(lines.next()?.strip_prefix("commit ")?.as_bytes()).ok()?;
        let base_tree = ObjectId::from_hex(lines.next()?.strip_prefix("tree ")?.as_bytes()).ok()?;
        // A cache that was re-created no longer has the old base: start afresh.
        if !repo.has_object(base) || !repo.has_object(base_tree) {
            return None;
        }
        let mut entries = Vec::new();
        let mut complete = false;
        for line in lines {
            if let Some(count) = line.strip_prefix("end ") {
                complete = count.parse::<usize>().ok()? == entries.len();
                break;
            }
            entries.push(parse_entry(line)?);
        }
        let root = dir.join("tree");
        (complete && root.is_dir()).then(|| Self {
            dir: dir.to_path_buf(),
            root,
            base,
            base_tree,
            entries,
            stamp: (meta.mtime(), meta.mtime_nsec()),
            pending: None,
            sparse,
        })
    }

    /// Writes `state` atomically, then takes its mtime as the new racy stamp.
    fn persist(&mut self) -> Result<(), GitError> {
        let mut text = String::with_capacity(64 + self.entries.len() * 128);
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "{STATE_HEADER}\ncommit {}\ntree {}\n",
            self.base, self.base_tree
        );
        for e in &self.entries {
            let s = &e.stat;
            let _ = writeln!(
                text,
                "{} {} {} {} {} {} {} {} {}",
                e.kind.code(),
                e.id,
                s.size,
                s.mtime.0,
                s.mtime.1,
                s.ctime.0,
                s.ctime.1,
                s.ino,
                escape(&e.path)
            );
        }
        let _ = writeln!(text, "end {}", self.entries.len());
        let tmp = self.dir.join("state.tmp");
        let state = self.dir.join("state");
        std::fs::write(&tmp, text).map_err(io_err("writing the worktree state".into()))?;
        std::fs::rename(&tmp, &state).map_err(io_err("replacing the worktree state".into()))?;
        let meta =
            std::fs::metadata(&state).map_err(io_err("reading the worktree state".into()))?;
        self.stamp = (meta.mtime(), meta.mtime_nsec());
        Ok(())
    }

    /// A fresh checkout of `commit` into `dir`.
    fn full(
        repo: &gix::Repository,
        dir: &Path,
        commit: ObjectId,
        tree: ObjectId,
        sparse: Option<String>,
        stats: &mut PrepareStats,
    ) -> Result<Self, GitError> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        match std::fs::remove_file(dir.join("state")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing the worktree state".into())(e)),
        }
        let root = dir.join("tree");
        if std::fs::symlink_metadata(&root).is_ok() {
            remove_path(&root)?;
        }
        std::fs::create_dir(&root).map_err(io_err("creating the worktree".into()))?;
        let mut entries = flatten(repo, tree, sparse.as_deref())?;
        // Directories first (a parent sorts before its children), then the files on a
        // few threads: writing 20,000 small files is most of a first checkout.
        let dirs: std::collections::BTreeSet<&str> = entries
            .iter()
            .flat_map(|e| e.path.match_indices('/').map(move |(i, _)| &e.path[..i]))
            .collect();
        for d in dirs {
            std::fs::create_dir(root.join(d)).map_err(io_err(format!("creating {d}")))?;
        }
        let threads = std::thread::available_parallelism()
            .map_or(2, std::num::NonZeroUsize::get)
            .clamp(1, 4);
        let chunk = entries.len().div_ceil(threads).max(1);
        let shared = repo.clone().into_sync();
        std::thread::scope(|scope| {
            let workers: Vec<_> = entries
                .chunks_mut(chunk)
                .map(|part| {
                    let (shared, root) = (&shared, &root);
                    scope.spawn(move || -> Result<(), GitError> {
                        let repo = shared.to_thread_local();
                        let mut made = HashSet::new();
                        for e in part {
                            e.stat =
                                write_entry(&repo, root, &e.path, e.kind, e.id, &mut made, true)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .map_err(|_| GitError::Git("a checkout thread panicked".into()))?
            })
        })?;
        stats.written = entries.len();
        let mut wt = Self {
            dir: dir.to_path_buf(),
            root,
            base: commit,
            base_tree: tree,
            entries,
            stamp: (0, 0),
            pending: None,
            sparse,
        };
        wt.persist()?;
        Ok(wt)
    }

    /// From the (clean apart from `dirty`) old base to `commit`.
    fn transition(
        &mut self,
        repo: &gix::Repository,
        commit: ObjectId,
        tree: ObjectId,
        dirty: &HashSet<String>,
        stats: &mut PrepareStats,
    ) -> Result<(), GitError> {
        let new = if tree == self.base_tree {
            self.entries.clone()
        } else {
            flatten(repo, tree, self.sparse.as_deref())?
        };
        let new_paths: HashSet<&str> = new.iter().map(|e| e.path.as_str()).collect();
        for old in &self.entries {
            if !new_paths.contains(old.path.as_str()) {
                remove_path(&self.root.join(&old.path))?;
                prune_parents(&self.root, &old.path);
                stats.removed += 1;
            }
        }
        let old: HashMap<&str, &Entry> =
            self.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let mut made = HashSet::new();
        let mut entries = Vec::with_capacity(new.len());
        for mut e in new {
            match old.get(e.path.as_str()) {
                Some(o) if o.kind == e.kind && o.id == e.id && !dirty.contains(&e.path) => {
                    e.stat = o.stat;
                }
                _ => {
                    e.stat =
                        write_entry(repo, &self.root, &e.path, e.kind, e.id, &mut made, false)?;
                    stats.written += 1;
                }
            }
            entries.push(e);
        }
        self.entries = entries;
        self.base = commit;
        self.base_tree = tree;
        // Not persisted: the state on disk still describes the files (whatever changed
        // since shows as dirty), and the run persists after its verifying walk.
        Ok(())
    }

    /// Every path that differs from the base tree. A tracked file is re-hashed only when
    /// its stat data changed or it is racy, so a 20,000-file tree costs a directory walk
    /// plus a few hashes.
    fn scan(&self) -> Result<Vec<Change>, GitError> {
        let mut files = BTreeMap::new();
        walk(&self.root, "", &mut files)?;
        let mut changes = Vec::new();
        for entry in &self.entries {
            if entry.kind == Kind::Submodule {
                // Submodules are never touched; neither is anything inside them.
                let prefix = format!("{}/", entry.path);
                files.retain(|p: &String, _| !p.starts_with(&prefix));
                continue;
            }
            let Some(meta) = files.remove(&entry.path) else {
                changes.push(Change {
                    path: entry.path.clone(),
                    tracked: true,
                });
                continue;
            };
            let kind = Kind::of(&meta);
            let stat = Stat::of(&meta);
            let racy = entry.stat.mtime >= self.stamp;
            if kind == entry.kind && stat == entry.stat && !racy {
                continue;
            }
            if kind != entry.kind
                || blob_id(&entry.path, &read(&self.root, &entry.path, kind)?)? != entry.id
            {
                changes.push(Change {
                    path: entry.path.clone(),
                    tracked: true,
                });
            }
        }
        changes.extend(files.into_keys().map(|path| Change {
            path,
            tracked: false,
        }));
        Ok(changes)
    }

    /// Commits the files the update wrote (`written.files`: paths under
    /// [`path`](Self::path), absolute or relative to it) on top of the base commit, with
    /// `author` as author and committer and the message verbatim. The tree is the base
    /// tree plus exactly those blobs: nothing else on disk is looked at. Each must be a
    /// regular file the base tracks (the update rewrites files, it never adds, removes or
    /// retypes them); its mode stays the base's. When `written.originals` shows that the
    /// update read content other than the base's, those files are restored and the
    /// result is [`GitError::WorktreeDrift`]. `None` when no written file differs from the
    /// base: no change, no commit. The worktree's state moves to the new commit only with
    /// [`settle`](Self::settle), once it is pushed.
    pub fn commit_written(
        &mut self,
        repo: &gix::Repository,
        author: &Author,
        written: &Written,
        signing: Option<&SigningKey>,
        timeout: Duration,
    ) -> Result<Option<ObjectId>, GitError> {
        self.pending = None;
        let canonical_root = self
            .root
            .canonicalize()
            .map_err(io_err("resolving the worktree".into()))?;
        let mut paths = std::collections::BTreeSet::new();
        for file in &written.files {
            paths.insert(self.tracked_rel(&canonical_root, file)?);
        }
        let by_path: HashMap<&str, &Entry> =
            self.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        // What the update read must be the base: restore what was not, and say so.
        let mut drifted = Vec::new();
        for (file, bytes) in &written.originals {
            let rel = self.tracked_rel(&canonical_root, file)?;
            if let Some(entry) = by_path.get(rel.as_str())
                && blob_id(&rel, bytes)? != entry.id
            {
                drifted.push((rel, entry.kind, entry.id));
            }
        }
        if !drifted.is_empty() {
            let mut made = HashSet::new();
            for (rel, kind, id) in &drifted {
                // The new stat data differs from the recorded one: the next walk
                // re-hashes the file and finds it clean.
                write_entry(repo, &self.root, rel, *kind, *id, &mut made, false)?;
            }
            let paths: Vec<&str> = drifted.iter().map(|(rel, _, _)| rel.as_str()).collect();
            return Err(GitError::WorktreeDrift(paths.join(", ")));
        }
        let mut editor = repo
            .edit_tree(self.base_tree)
            .map_err(git_err("editing the tree"))?;
        let mut updates = Vec::with_capacity(paths.len());
        for rel in paths {
            let refused = |why: &str| {
                GitError::Git(format!(
                    "the update wrote {rel:?}, {why}; refusing to commit it"
                ))
            };
            let Some(entry) = by_path.get(rel.as_str()) else {
                return Err(refused("which the base commit does not track"));
            };
            if !matches!(entry.kind, Kind::Blob | Kind::Exec) {
                return Err(refused("which the base commit does not track as a file"));
            }
            let full = self.root.join(&rel);
            let meta =
                std::fs::symlink_metadata(&full).map_err(io_err(format!("reading {rel}")))?;
            if !meta.is_file() {
                return Err(refused("which is no longer a regular file"));
            }
            let bytes = std::fs::read(&full).map_err(io_err(format!("reading {rel}")))?;
            let blob = repo
                .write_blob(&bytes)
                .map_err(git_err("writing a blob"))?
                .detach();
            if blob == entry.id {
                continue;
            }
            editor
                .upsert(rel.as_str(), entry.kind.entry_kind(), blob)
                .map_err(git_err("updating the tree"))?;
            updates.push((rel, entry.kind, blob, Stat::of(&meta)));
        }
        if updates.is_empty() {
            return Ok(None);
        }
        let tree = editor
            .write()
            .map_err(git_err("writing the tree"))?
            .detach();
        if tree == self.base_tree {
            return Ok(None);
        }
        let signature = gix::actor::Signature {
            name: author.name.as_str().into(),
            email: author.email.as_str().into(),
            time: gix::date::Time::now_local_or_utc(),
        };
        let mut commit = gix::objs::Commit {
            tree,
            parents: std::iter::once(self.base).collect(),
            author: signature.clone(),
            committer: signature,
            encoding: None,
            message: written.message.as_str().into(),
            extra_headers: Vec::new(),
        };
        if let Some(key) = signing {
            let mut payload = Vec::new();
            commit
                .write_to(&mut payload)
                .map_err(io_err("serialising the commit".into()))?;
            let sig = key.sign(&payload, timeout)?;
            // git stores the signature without its final newline; the header writer adds it.
            commit
                .extra_headers
                .push(("gpgsig".into(), sig.trim_end_matches('\n').into()));
        }
        let id = repo
            .write_object(&commit)
            .map_err(git_err("writing the commit"))?
            .detach();
        self.pending = Some(Pending {
            commit: id,
            tree,
            updates,
        });
        Ok(Some(id))
    }

    /// Records the commit of the last [`commit_written`](Self::commit_written) (now pushed) as
    /// the base, so the next run starts from it without rewriting anything.
    pub(crate) fn settle(&mut self) -> Result<(), GitError> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let mut by_path: BTreeMap<String, Entry> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(|e| (e.path.clone(), e))
            .collect();
        for (path, kind, id, stat) in pending.updates {
            by_path.insert(
                path.clone(),
                Entry {
                    path,
                    kind,
                    id,
                    stat,
                },
            );
        }
        // BTreeMap order over UTF-8 strings is git's byte order.
        self.entries = by_path.into_values().collect();
        self.base = pending.commit;
        self.base_tree = pending.tree;
        // The written paths are recorded with the stat data seen when they were read;
        // the next run's walk verifies everything anyway.
        self.persist()
    }

    /// `file` (absolute under the worktree, or relative to it) as a `/`-separated path
    /// relative to the root, refusing anything that leaves the worktree or passes
    /// through a symlink.
    fn tracked_rel(&self, canonical_root: &Path, file: &Path) -> Result<String, GitError> {
        let outside = || {
            GitError::Git(format!(
                "the update wrote {}, outside the worktree; refusing to commit it",
                file.display()
            ))
        };
        let rel = if file.is_absolute() {
            file.strip_prefix(canonical_root)
                .or_else(|_| file.strip_prefix(&self.root))
                .map_err(|_| outside())?
        } else {
            file
        };
        let mut parts = Vec::new();
        for component in rel.components() {
            match component {
                std::path::Component::Normal(p) => parts.push(p.to_str().ok_or_else(outside)?),
                std::path::Component::CurDir => {}
                _ => return Err(outside()),
            }
        }
        if parts.is_empty() {
            return Err(outside());
        }
        // No symlinked directory on the way: the parent must resolve to itself.
        let parent = parts[..parts.len() - 1]
            .iter()
            .fold(canonical_root.to_path_buf(), |acc, p| acc.join(p));
        match parent.canonicalize() {
            Ok(resolved) if resolved == parent => Ok(parts.join("/")),
            _ => Err(outside()),
        }
    }
}

fn blob_id(path: &str, bytes: &[u8]) -> Result<ObjectId, GitError> {
    gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, bytes)
        .map_err(|e| GitError::Git(format!("hashing {path}: {e}")))
}

/// Cleans `update.path` the way Flux does for sparse checkout (`filepath.Clean`, relative
/// to the repository root, never above it): `None` when it is the root, so the whole
/// tree is checked out.
pub fn sparse_path(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Whether `path` is `sparse` or under it.
fn in_sparse_set(path: &str, sparse: &str) -> bool {
    path.strip_prefix(sparse)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The tracked paths of `tree` (only those at or under `sparse` when given), sorted,
/// with validated paths.
fn flatten(
    repo: &gix::Repository,
    tree: ObjectId,
    sparse: Option<&str>,
) -> Result<Vec<Entry>, GitError> {
    use gix::index::entry::Mode;
    let index = repo
        .index_from_tree(&tree)
        .map_err(git_err("reading the tree"))?;
    let mut out = Vec::with_capacity(index.entries().len());
    for entry in index.entries() {
        let raw = entry.path(&index);
        let Ok(path) = std::str::from_utf8(raw) else {
            return Err(GitError::Git(format!(
                "path {raw:?} in the repository is not UTF-8"
            )));
        };
        if sparse.is_some_and(|s| !in_sparse_set(path, s)) {
            continue;
        }
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.eq_ignore_ascii_case(".git"))
        {
            return Err(GitError::Git(format!(
                "refusing to check out the unsafe path {path:?}"
            )));
        }
        let kind = match entry.mode {
            m if m == Mode::FILE => Kind::Blob,
            m if m == Mode::FILE_EXECUTABLE => Kind::Exec,
            m if m == Mode::SYMLINK => Kind::Link,
            m if m == Mode::COMMIT => Kind::Submodule,
            m => {
                return Err(GitError::Git(format!(
                    "unexpected mode {m:?} of {path} in the tree"
                )));
            }
        };
        out.push(Entry {
            path: path.to_string(),
            kind,
            id: entry.id,
            stat: Stat::default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
