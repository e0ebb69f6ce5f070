//! The I/O half of the setters: file selection, reading, atomic writes.
//!
//! File selection follows Flux's `ScreeningLocalReader`: files named `*.yaml`, `*.yml` (case
//! sensitive) or exactly `Kustomization`, containing the bytes `"$imagepolicy"`. Unlike Flux we
//! skip `.git/` directories.
//!
//! Symlinks: symlinked directories are never followed (as in Flux, whose walk uses lstat). A
//! symlinked file is followed only when its target lies inside the root; the edit is written
//! to the target, and a target that is itself walked is processed once, under its own path.
//! Targets outside the root are reported and left alone; dangling links are skipped silently
//! (Flux fix #996).

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use super::marker::TOKEN;
use super::rewrite::rewrite;
use super::{FileChanges, SetterError, Setters, Unmatched, UnmatchedReason, UpdateResult};

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEdit {
    /// Relative to the update path, `/`-separated.
    pub path: String,
    /// The file that is (or, in a dry run, would be) written.
    pub target: PathBuf,
    pub before: String,
    pub after: String,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub result: UpdateResult,
    /// Changed files in path order.
    pub edits: Vec<FileEdit>,
}

/// Resolves `update_path` inside `root` like Flux's securejoin, but refuses instead of clamping
/// a path that climbs out with `..` or leads out through a symlink. An absolute path is taken
/// relative to the root. Returns the canonical root and the canonical update path.
pub fn resolve_update_path(
    root: &Path,
    update_path: Option<&str>,
) -> Result<(PathBuf, PathBuf), SetterError> {
    let io_err = |path: &Path, source| SetterError::UpdatePath {
        path: path.display().to_string(),
        source,
    };
    let root = root.canonicalize().map_err(|e| io_err(root, e))?;
    let Some(update_path) = update_path.filter(|p| !p.is_empty()) else {
        return Ok((root.clone(), root));
    };
    let escapes = || SetterError::PathEscapesRoot {
        root: root.display().to_string(),
        path: update_path.to_owned(),
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in Path::new(update_path).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop().ok_or_else(escapes)?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    let joined = parts.iter().fold(root.clone(), |acc, p| acc.join(p));
    let resolved = joined.canonicalize().map_err(|e| io_err(&joined, e))?;
    if !resolved.starts_with(&root) {
        return Err(escapes());
    }
    Ok((root, resolved))
}

/// Whether Flux considers a file with this name.
fn is_candidate_name(name: &str) -> bool {
    name == "Kustomization" || name.ends_with(".yaml") || name.ends_with(".yml")
}

struct Candidate {
    rel: String,
    abs: PathBuf,
    symlink: bool,
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<Candidate>) -> Result<(), SetterError> {
    let read_err = |source| SetterError::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue; // Not UTF-8: cannot be a name we look for, nor a path we can report.
        };
        let file_type = entry.file_type().map_err(read_err)?;
        let child_rel = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        if file_type.is_dir() {
            if name != ".git" {
                walk(&entry.path(), &child_rel, out)?;
            }
        } else if is_candidate_name(name) {
            out.push(Candidate {
                rel: child_rel,
                abs: entry.path(),
                symlink: file_type.is_symlink(),
            });
        }
    }
    Ok(())
}

/// Applies `setters` to the files under `update_path` (inside `root`). With `write == false`
/// (a dry run) nothing is written, but the edits are computed and returned all the same.
pub fn apply(
    root: &Path,
    update_path: Option<&str>,
    setters: &Setters,
    write: bool,
) -> Result<Applied, SetterError> {
    let (root, base) = resolve_update_path(root, update_path)?;
    let mut candidates = Vec::new();
    let meta = std::fs::symlink_metadata(&base).map_err(|source| SetterError::UpdatePath {
        path: base.display().to_string(),
        source,
    })?;
    if meta.is_dir() {
        walk(&base, "", &mut candidates)?;
    } else {
        // The update path may name a single file (seen in Flux issue #433).
        let name = base
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if is_candidate_name(&name) {
            candidates.push(Candidate {
                rel: name,
                abs: base.clone(),
                symlink: false,
            });
        }
    }

    // Regular files are under the canonical root through real directories, so their paths are
    // canonical already; symlink targets are compared against them.
    let regular: HashSet<PathBuf> = candidates
        .iter()
        .filter(|c| !c.symlink)
        .map(|c| c.abs.clone())
        .collect();
    let mut followed = HashSet::new();
    let mut result = UpdateResult::default();
    let mut work = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        if !candidate.symlink {
            work.push((candidate.abs.clone(), candidate));
            continue;
        }
        let Ok(target) = candidate.abs.canonicalize() else {
            continue; // Dangling.
        };
        if !target.starts_with(&root) {
            result.unmatched.push(Unmatched {
                path: candidate.rel.clone(),
                line: None,
                reason: UnmatchedReason::SymlinkOutsideRoot,
                setter: None,
                message: format!("symlink to {} is not followed", target.display()),
            });
            continue;
        }
        if regular.contains(&target) || !followed.insert(target.clone()) {
            continue;
        }
        work.push((target, candidate));
    }

    let outcomes = parallel_map(&work, |(target, candidate)| {
        process(target, candidate, setters)
    });
    let mut edits = Vec::new();
    for outcome in outcomes {
        let Some(outcome) = outcome? else {
            continue;
        };
        result.unmatched.extend(outcome.unmatched);
        if let Some((changes, edit)) = outcome.changed {
            result.files.push(changes);
            edits.push(edit);
        }
    }
    if write {
        write_edits(&edits)?;
    }
    // Sorted by path string, the order Go ranges over `FileChanges`.
    result.files.sort_by(|a, b| a.path.cmp(&b.path));
    edits.sort_by(|a, b| a.path.cmp(&b.path));
    result
        .unmatched
        .sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    Ok(Applied { result, edits })
}

/// What one file contributed.
struct Outcome {
    unmatched: Vec<Unmatched>,
    changed: Option<(FileChanges, FileEdit)>,
}

/// Reads, screens and rewrites one file (without writing it). `None` when it is skipped.
fn process(
    target: &Path,
    candidate: &Candidate,
    setters: &Setters,
) -> Result<Option<Outcome>, SetterError> {
    let bytes = match std::fs::read(target) {
        Ok(bytes) => bytes,
        // A symlink to something unreadable (e.g. a directory) is skipped, as in Flux.
        Err(_) if candidate.symlink => return Ok(None),
        Err(source) => {
            return Err(SetterError::Read {
                path: target.display().to_string(),
                source,
            });
        }
    };
    // The cheap screen first: most files never reach the parser.
    if memchr::memmem::find(&bytes, TOKEN.as_bytes()).is_none() {
        return Ok(None);
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let at = err.utf8_error().valid_up_to();
            let line = err.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
            return Ok(Some(Outcome {
                unmatched: vec![Unmatched {
                    path: candidate.rel.clone(),
                    line: Some(line),
                    reason: UnmatchedReason::UnparseableFile,
                    setter: None,
                    message: "not UTF-8, markers in this file are ignored".into(),
                }],
                changed: None,
            }));
        }
    };
    let outcome = rewrite(&candidate.rel, &text, setters);
    let changed = outcome.output.map(|after| {
        (
            FileChanges {
                path: candidate.rel.clone(),
                objects: outcome.objects,
            },
            FileEdit {
                path: candidate.rel.clone(),
                target: target.to_path_buf(),
                before: text,
                after,
            },
        )
    });
    Ok(Some(Outcome {
        unmatched: outcome.unmatched,
        changed,
    }))
}

/// Maps `f` over `items` on a few threads, keeping the order. File I/O dominates, so more
/// threads than cores still help hide latency.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .saturating_mul(2)
        .clamp(1, 8);
    if threads == 1 || items.len() < 64 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut indexed: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    indexed.sort_by_key(|(i, _)| *i);
    indexed.into_iter().map(|(_, r)| r).collect()
}

/// Writes the edits computed by a dry [`apply`] (`write == false`), each atomically.
pub fn write_edits(edits: &[FileEdit]) -> Result<(), SetterError> {
    parallel_map(edits, |edit| {
        write_atomic(&edit.target, edit.after.as_bytes()).map_err(|source| SetterError::Write {
            path: edit.target.display().to_string(),
            source,
        })
    })
    .into_iter()
    .collect()
}

/// Writes `data` to `target` through a temporary file in the same directory and a rename, so
/// readers see either the old or the new content, never a half-written file. The file keeps
/// its permissions.
fn write_atomic(target: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let permissions = std::fs::metadata(target)?.permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(".image-automation-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().set_permissions(permissions)?;
    tmp.persist(target).map_err(|e| e.error)?;
    Ok(())
}
