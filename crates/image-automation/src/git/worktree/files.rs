//! File-system steps of the worktree: writing blobs verbatim, removing paths, walking.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use gix::ObjectId;

use super::state::{Kind, Stat};
use super::{git_err, io_err};
use crate::git::error::GitError;

/// Removes whatever is at `path` (file, symlink or directory); absent is fine.
pub(super) fn remove_path(path: &Path) -> Result<(), GitError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(io_err(format!("removing {}", path.display())))
}

/// Removes the now-empty directories above `rel` (best effort: a non-empty one stops it).
pub(super) fn prune_parents(root: &Path, rel: &str) {
    let mut rel = Path::new(rel);
    while let Some(parent) = rel.parent() {
        if parent.as_os_str().is_empty() || std::fs::remove_dir(root.join(parent)).is_err() {
            break;
        }
        rel = parent;
    }
}

/// Makes sure every directory above `rel` is a real directory (never a symlink, which
/// could lead the write out of the worktree).
pub(super) fn ensure_parents(
    root: &Path,
    rel: &str,
    made: &mut HashSet<PathBuf>,
) -> Result<(), GitError> {
    let Some(parent) = Path::new(rel).parent() else {
        return Ok(());
    };
    let mut dir = root.to_path_buf();
    for component in parent.components() {
        dir.push(component);
        if made.contains(&dir) {
            continue;
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                remove_path(&dir)?;
                std::fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
            }
            Err(e) => return Err(io_err(format!("reading {}", dir.display()))(e)),
        }
        made.insert(dir.clone());
    }
    Ok(())
}

/// Writes one entry's blob verbatim at `rel` (replacing whatever is there unless `fresh`)
/// and returns its stat data.
pub(super) fn write_entry(
    repo: &gix::Repository,
    root: &Path,
    rel: &str,
    kind: Kind,
    id: ObjectId,
    made: &mut HashSet<PathBuf>,
    fresh: bool,
) -> Result<Stat, GitError> {
    ensure_parents(root, rel, made)?;
    let full = root.join(rel);
    if !fresh {
        remove_path(&full)?;
    }
    match kind {
        Kind::Submodule => {
            std::fs::create_dir(&full).map_err(io_err(format!("creating {rel}")))?;
        }
        Kind::Link => {
            let blob = repo.find_object(id).map_err(git_err("reading a blob"))?;
            let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&blob.data);
            std::os::unix::fs::symlink(target, &full)
                .map_err(io_err(format!("creating link {rel}")))?;
        }
        Kind::Blob | Kind::Exec => {
            let blob = repo.find_object(id).map_err(git_err("reading a blob"))?;
            let mode = if kind == Kind::Exec { 0o777 } else { 0o666 };
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&full)
                .map_err(io_err(format!("writing {rel}")))?;
            file.write_all(&blob.data)
                .map_err(io_err(format!("writing {rel}")))?;
            // fstat: the same data as an lstat of the path, without the path lookup.
            let meta = file.metadata().map_err(io_err(format!("reading {rel}")))?;
            return Ok(Stat::of(&meta));
        }
    }
    let meta = std::fs::symlink_metadata(&full).map_err(io_err(format!("reading {rel}")))?;
    Ok(Stat::of(&meta))
}

pub(super) fn read(root: &Path, path: &str, kind: Kind) -> Result<Vec<u8>, GitError> {
    let full = root.join(path);
    if kind == Kind::Link {
        let target = std::fs::read_link(&full).map_err(io_err(format!("reading link {path}")))?;
        Ok(target.as_os_str().as_encoded_bytes().to_vec())
    } else {
        std::fs::read(&full).map_err(io_err(format!("reading {path}")))
    }
}

/// Every file and symlink under `dir`, by `/`-separated relative path. `.git` entries
/// are skipped: git cannot track them.
pub(super) fn walk(
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
        // `DirEntry::metadata` does not follow symlinks and stats relative to the
        // directory (no full path lookup per file).
        let meta = entry.metadata().map_err(io_err(format!("reading {rel}")))?;
        if meta.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else {
            out.insert(rel, meta);
        }
    }
    Ok(())
}
