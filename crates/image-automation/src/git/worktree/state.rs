//! The `state` file's lines: what each tracked path is (kind, blob id, stat data).

use std::os::unix::fs::MetadataExt as _;

use gix::ObjectId;
use gix::objs::tree::EntryKind;

pub(super) const STATE_HEADER: &str = "iua-worktree 1";

/// What a tracked path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Blob,
    Exec,
    Link,
    /// A submodule: an empty directory, never read or written.
    Submodule,
}

impl Kind {
    pub(super) fn code(self) -> char {
        match self {
            Self::Blob => 'f',
            Self::Exec => 'x',
            Self::Link => 'l',
            Self::Submodule => 'c',
        }
    }

    pub(super) fn from_code(c: &str) -> Option<Self> {
        Some(match c {
            "f" => Self::Blob,
            "x" => Self::Exec,
            "l" => Self::Link,
            "c" => Self::Submodule,
            _ => return None,
        })
    }

    pub(super) fn entry_kind(self) -> EntryKind {
        match self {
            Self::Blob => EntryKind::Blob,
            Self::Exec => EntryKind::BlobExecutable,
            Self::Link => EntryKind::Link,
            Self::Submodule => EntryKind::Commit,
        }
    }

    pub(super) fn of(meta: &std::fs::Metadata) -> Self {
        if meta.file_type().is_symlink() {
            Self::Link
        } else if meta.mode() & 0o111 != 0 {
            Self::Exec
        } else {
            Self::Blob
        }
    }
}

/// The stat data that tells whether a file may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Stat {
    pub(super) size: u64,
    pub(super) mtime: (i64, i64),
    pub(super) ctime: (i64, i64),
    pub(super) ino: u64,
}

impl Stat {
    pub(super) fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
        }
    }
}

/// One tracked path of the base tree.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) path: String,
    pub(super) kind: Kind,
    pub(super) id: ObjectId,
    pub(super) stat: Stat,
}

/// Paths are the last field of a state line: `\` and newlines are escaped.
pub(super) fn escape(path: &str) -> String {
    path.replace('\\', "\\\\").replace('\n', "\\n")
}

pub(super) fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

pub(super) fn parse_entry(line: &str) -> Option<Entry> {
    let mut parts = line.splitn(9, ' ');
    let kind = Kind::from_code(parts.next()?)?;
    let id = ObjectId::from_hex(parts.next()?.as_bytes()).ok()?;
    let mut num = || parts.next()?.parse::<i64>().ok();
    let size = num()?;
    let mtime = (num()?, num()?);
    let ctime = (num()?, num()?);
    let ino = num()?;
    let path = unescape(parts.next()?)?;
    Some(Entry {
        path,
        kind,
        id,
        stat: Stat {
            size: u64::try_from(size).ok()?,
            mtime,
            ctime,
            ino: u64::try_from(ino).ok()?,
        },
    })
}
