//! A checkout of one commit in a temporary directory, and the commit of whatever the
//! update wrote there.
//!
//! gix writes the files (`gix::worktree::state::checkout`) and records each file's stat
//! data in an in-memory index. After the update, a file is re-hashed only when its stat
//! data changed or it is "racy" (modified in the same file-system clock tick as the
//! checkout ended), so a 20,000-file tree costs a directory walk plus a few hashes.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use gix::ObjectId;
use gix::objs::WriteTo as _;
use gix::objs::tree::EntryKind;

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

/// Files of `base` checked out in a private temporary directory (removed on drop).
#[derive(Debug)]
pub struct Worktree {
    dir: tempfile::TempDir,
    root: PathBuf,
    base: ObjectId,
    base_tree: ObjectId,
    index: gix::index::File,
    /// mtime (secs, nsecs) of a file written right after the checkout: entries at or
    /// after it are racy.
    stamp: (i64, i64),
}

/// One path that differs from the checked-out tree.
#[derive(Debug)]
enum Change {
    Upsert {
        path: String,
        kind: EntryKind,
        bytes: Vec<u8>,
    },
    Remove(String),
}

impl Worktree {
    /// Checks out `commit` into a new directory under `parent`.
    pub(crate) fn materialise(
        repo: &gix::Repository,
        commit: ObjectId,
        parent: &Path,
    ) -> Result<Self, GitError> {
        std::fs::create_dir_all(parent)
            .map_err(io_err(format!("creating {}", parent.display())))?;
        let dir = tempfile::Builder::new()
            .prefix("work-")
            .tempdir_in(parent)
            .map_err(io_err("creating a worktree directory".into()))?;
        let root = dir.path().join("tree");
        std::fs::create_dir(&root).map_err(io_err("creating the worktree".into()))?;
        let base_tree = repo
            .find_commit(commit)
            .map_err(git_err("reading the checkout commit"))?
            .tree_id()
            .map_err(git_err("reading the checkout tree"))?
            .detach();
        let mut index = repo
            .index_from_tree(&base_tree)
            .map_err(git_err("building an index"))?;
        let mut opts = repo
            .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
            .map_err(git_err("checkout options"))?;
        opts.destination_is_initially_empty = true;
        let objects = repo
            .objects
            .clone()
            .into_arc()
            .map_err(io_err("sharing the object database".into()))?;
        let outcome = gix::worktree::state::checkout(
            &mut index,
            &root,
            objects,
            &gix::progress::Discard,
            &gix::progress::Discard,
            &AtomicBool::new(false),
            opts,
        )
        .map_err(git_err("checking out"))?;
        if !outcome.errors.is_empty() || !outcome.collisions.is_empty() {
            return Err(GitError::Git(format!(
                "checkout of {commit} had {} errors and {} collisions",
                outcome.errors.len(),
                outcome.collisions.len()
            )));
        }
        let stamp_file = dir.path().join("stamp");
        std::fs::write(&stamp_file, b"").map_err(io_err("writing the stamp".into()))?;
        let meta = std::fs::metadata(&stamp_file).map_err(io_err("reading the stamp".into()))?;
        Ok(Self {
            stamp: (meta.mtime(), meta.mtime_nsec()),
            dir,
            root,
            base: commit,
            base_tree,
            index,
        })
    }

    /// The directory the update edits.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The commit that was checked out.
    pub fn base(&self) -> ObjectId {
        self.base
    }

    /// Keeps the directory (for debugging); returns its path.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }

    fn changes(&self) -> Result<Vec<Change>, GitError> {
        let mut files = BTreeMap::new();
        walk(&self.root, "", &mut files)?;
        let mut changes = Vec::new();
        for entry in self.index.entries() {
            let path = entry.path(&self.index).to_string();
            let kind = match entry.mode {
                m if m == gix::index::entry::Mode::FILE => EntryKind::Blob,
                m if m == gix::index::entry::Mode::FILE_EXECUTABLE => EntryKind::BlobExecutable,
                m if m == gix::index::entry::Mode::SYMLINK => EntryKind::Link,
                // Submodules and other non-files are never touched.
                _ => {
                    files.retain(|p, _| !p.starts_with(&format!("{path}/")));
                    continue;
                }
            };
            let Some(meta) = files.remove(&path) else {
                changes.push(Change::Remove(path));
                continue;
            };
            let now_kind = entry_kind(&meta);
            let s = &entry.stat;
            let stat_same = now_kind == kind
                && s.size == meta.size() as u32
                && s.mtime.secs == meta.mtime() as u32
                && s.mtime.nsecs == meta.mtime_nsec() as u32
                && s.ctime.secs == meta.ctime() as u32
                && s.ctime.nsecs == meta.ctime_nsec() as u32
                && s.ino == meta.ino() as u32;
            let racy = (meta.mtime(), meta.mtime_nsec()) >= self.stamp;
            if stat_same && !racy {
                continue;
            }
            let bytes = read(&self.root, &path, now_kind)?;
            let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, &bytes)
                .map_err(|e| GitError::Git(format!("hashing {path}: {e}")))?;
            if id != entry.id || now_kind != kind {
                changes.push(Change::Upsert {
                    path,
                    kind: now_kind,
                    bytes,
                });
            }
        }
        for (path, meta) in files {
            let kind = entry_kind(&meta);
            let bytes = read(&self.root, &path, kind)?;
            changes.push(Change::Upsert { path, kind, bytes });
        }
        Ok(changes)
    }

    /// Commits every change under [`path`](Self::path) on top of the checked-out commit,
    /// with `author` as author and committer and `message` verbatim. `None` when
    /// nothing changed: no change, no commit.
    pub fn commit_all(
        &self,
        repo: &gix::Repository,
        author: &Author,
        message: &str,
        signing: Option<&SigningKey>,
        timeout: Duration,
    ) -> Result<Option<ObjectId>, GitError> {
        let changes = self.changes()?;
        if changes.is_empty() {
            return Ok(None);
        }
        let mut editor = repo
            .edit_tree(self.base_tree)
            .map_err(git_err("editing the tree"))?;
        for change in changes {
            match change {
                Change::Upsert { path, kind, bytes } => {
                    let blob = repo
                        .write_blob(&bytes)
                        .map_err(git_err("writing a blob"))?
                        .detach();
                    editor
                        .upsert(path.as_str(), kind, blob)
                        .map_err(git_err("updating the tree"))?;
                }
                Change::Remove(path) => {
                    editor
                        .remove(path.as_str())
                        .map_err(git_err("updating the tree"))?;
                }
            }
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
            message: message.into(),
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
        Ok(Some(id))
    }
}

fn entry_kind(meta: &std::fs::Metadata) -> EntryKind {
    if meta.file_type().is_symlink() {
        EntryKind::Link
    } else if meta.mode() & 0o111 != 0 {
        EntryKind::BlobExecutable
    } else {
        EntryKind::Blob
    }
}

fn read(root: &Path, path: &str, kind: EntryKind) -> Result<Vec<u8>, GitError> {
    let full = root.join(path);
    if kind == EntryKind::Link {
        let target = std::fs::read_link(&full).map_err(io_err(format!("reading link {path}")))?;
        Ok(target.as_os_str().as_encoded_bytes().to_vec())
    } else {
        std::fs::read(&full).map_err(io_err(format!("reading {path}")))
    }
}

/// Every file and symlink under `dir`, by `/`-separated relative path. `.git` entries
/// are skipped: git cannot track them.
fn walk(
    dir: &Path,
    prefix: &str,
    out: &mut BTreeMap<String, std::fs::Metadata>,
) -> Result<(), GitError> {
    let entries = std::fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("listing {}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(GitError::Git(format!(
                "file name {name:?} under {prefix:?} is not UTF-8"
            )));
        };
        if name == ".git" {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let meta =
            std::fs::symlink_metadata(entry.path()).map_err(io_err(format!("reading {rel}")))?;
        if meta.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else {
            out.insert(rel, meta);
        }
    }
    Ok(())
}
