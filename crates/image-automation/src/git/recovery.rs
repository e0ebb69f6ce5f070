//! Keeping the cache usable without a human: the cross-process owner lock, stale git lock
//! files left by a killed process, and quarantine of a damaged repository.
//!
//! The cache directory belongs to one controller process (on Kubernetes the cache is the
//! Pod's own volume); inside the process a per-URL mutex serialises operations. The owner
//! lock (`flock` on `<root>/locks/<url hash>`) extends that to processes sharing a storage
//! path: the kernel releases it when its holder dies, even by `kill -9`. So whoever holds
//! it knows that every `*.lock` file in the repository was left by a dead process (git and
//! gix take them only for the length of one update) and may delete them.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::GitError;

/// What was done to bring a damaged or abandoned cache back into service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecovery {
    pub kind: RecoveryKind,
    /// What was found and done, for logs and events (no secrets: paths and git's words).
    pub detail: String,
}

/// The kinds of [`CacheRecovery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoveryKind {
    /// A damaged repository was moved aside and is being cloned again.
    Quarantined,
    /// Lock files of a process that died mid-operation were removed.
    StaleLocks,
}

impl RecoveryKind {
    /// The metrics label: `quarantined` or `stale_locks`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quarantined => "quarantined",
            Self::StaleLocks => "stale_locks",
        }
    }
}

/// The cross-process exclusive lock of one cached repository; released on drop (and by
/// the kernel when the process dies).
#[derive(Debug)]
pub(crate) struct OwnerLock {
    _file: File,
}

impl OwnerLock {
    /// Blocks until this process owns `<root>/locks/<name>`.
    pub(crate) fn acquire(root: &Path, name: &str) -> Result<Self, GitError> {
        let dir = root.join("locks");
        std::fs::create_dir_all(&dir)
            .map_err(|e| GitError::Git(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| GitError::Git(format!("opening {}: {e}", path.display())))?;
        file.lock()
            .map_err(|e| GitError::Git(format!("locking {}: {e}", path.display())))?;
        Ok(Self { _file: file })
    }
}

/// Removes every `*.lock` file under `dir` (a repository this process owns) and the
/// temporary files of packs being received: each was left by a process that died
/// holding it. Returns the removed paths, relative to `dir`.
pub(crate) fn clear_stale_locks(dir: &Path) -> Result<Vec<String>, GitError> {
    let mut removed = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(GitError::CacheDamaged(format!(
                    "listing {}: {e}",
                    current.display()
                )));
            }
        };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if file_type.is_dir() {
                // Loose objects are written through temporary files and renamed, never
                // locked: their (possibly thousands of) fan-out directories are skipped.
                if !is_loose_fanout(dir, &path) {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|x| x == "lock") || is_pack_temporary(dir, &path)
            {
                std::fs::remove_file(&path).map_err(|e| {
                    GitError::Git(format!("removing stale lock {}: {e}", path.display()))
                })?;
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                removed.push(rel.display().to_string());
            }
        }
    }
    removed.sort();
    Ok(removed)
}

/// A temporary file of a pack being received (`objects/pack/.tmp*`, `tmp_*`): left by a
/// killed fetch, never used again.
fn is_pack_temporary(dir: &Path, path: &Path) -> bool {
    path.parent() == Some(dir.join("objects/pack").as_path())
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".tmp") || n.starts_with("tmp_"))
}

/// `<dir>/objects/xx`, a loose-object fan-out directory.
fn is_loose_fanout(dir: &Path, path: &Path) -> bool {
    path.parent() == Some(dir.join("objects").as_path())
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Moves the damaged repository `dir` to `<root>/quarantine/<name>` (replacing an older
/// quarantined copy of the same URL, so at most one is kept), and removes its worktrees,
/// which were checked out from it. Returns where it went.
pub(crate) fn quarantine(root: &Path, dir: &Path, name: &str) -> Result<PathBuf, GitError> {
    let aside = root.join("quarantine");
    std::fs::create_dir_all(&aside)
        .map_err(|e| GitError::Git(format!("creating {}: {e}", aside.display())))?;
    let target = aside.join(name);
    remove_all(&target)?;
    if let Err(e) = std::fs::rename(dir, &target) {
        // Not movable (another file system, permissions): deleting it also unblocks.
        tracing::warn!(error = %e, dir = %dir.display(), "could not move the damaged cache aside; deleting it");
        remove_all(dir)?;
    }
    remove_all(&root.join("worktrees").join(name))?;
    Ok(target)
}

fn remove_all(path: &Path) -> Result<(), GitError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| GitError::Git(format!("removing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_locks_are_found_at_any_depth() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("refs/iua/heads")).unwrap();
        std::fs::create_dir_all(d.join("objects/ab")).unwrap();
        std::fs::write(d.join("objects/ab/not-a-lock.lock"), "x").unwrap();
        std::fs::create_dir_all(d.join("objects/pack")).unwrap();
        std::fs::write(d.join("objects/pack/.tmpN0VN5B"), "").unwrap();
        std::fs::write(d.join("objects/pack/pack-1.pack"), "").unwrap();
        for f in [
            "shallow.lock",
            "HEAD.lock",
            "refs/iua/heads/main.lock",
            "config",
        ] {
            std::fs::write(d.join(f), "x").unwrap();
        }
        let removed = clear_stale_locks(d).unwrap();
        assert_eq!(
            removed,
            [
                "HEAD.lock",
                "objects/pack/.tmpN0VN5B",
                "refs/iua/heads/main.lock",
                "shallow.lock"
            ]
        );
        assert!(d.join("config").exists());
        assert!(d.join("objects/pack/pack-1.pack").exists());
        assert!(
            d.join("objects/ab/not-a-lock.lock").exists(),
            "fan-out skipped"
        );
        assert!(!d.join("shallow.lock").exists());
    }

    #[test]
    fn owner_lock_excludes_a_second_owner_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = OwnerLock::acquire(dir.path(), "r").unwrap();
        let other = File::open(dir.path().join("locks/r")).unwrap();
        assert!(other.try_lock().is_err());
        drop(first);
        assert!(other.try_lock().is_ok());
    }
}
