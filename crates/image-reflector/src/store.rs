//! The tag store: each ImageRepository's last scan, keyed by `namespace/name`.
//!
//! Flux's default (Badger) backend keys by canonical image name, so two ImageRepositories
//! for the same image with different exclusion lists or credentials overwrite each other's
//! tags; keying per object fixes that (as Flux's opt-in filesystem backend does).
//!
//! [`RedbTagStore`] is persistent and crash-safe (redb: ACID, copy-on-write, fsync on
//! commit), so policies have tags at once after a restart. Layout:
//! - `meta`: key → revision, tag count, scan time, canonical image, chunk count (small:
//!   [`TagStore::meta`] never touches tags);
//! - `tag_chunks`: (key, chunk index) → up to [`CHUNK_TAGS`] tags, each length-prefixed
//!   (`u32` little-endian then the bytes), in stored (descending) order. Reading one
//!   repository reads only its chunks; a page reads only the chunks it spans.
//!
//! Nothing is cached in memory beyond redb's bounded page cache.
//!
//! The store is a cache: everything in it comes back with the next scan. So a damaged file
//! never stops the process. When redb reports damage (at open or on any later operation:
//! a corrupted page, a file that is not redb, a truncated file, an incompatible layout, or
//! a panic inside redb), the file is moved aside as `<file>.corrupt-<unix seconds>` (the
//! newest [`KEEP_QUARANTINED`] are kept; if it cannot be moved it is deleted), an empty
//! store is created in its place, and the [`QuarantineObserver`] is told (the caller logs
//! and counts it). Reads in the damaged operation answer "not stored", so repositories are
//! rescanned. Errors that moving the file cannot fix are returned as before: permission
//! denied, a full disk, another process holding the file, other I/O errors. An entry whose
//! own bytes do not decode is dropped and reads as "not stored" (redb itself is intact).

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};

use crate::registry::ScanResult;

mod damage;
mod format;
mod memory;

use damage::{guarded, open_database, quarantine_file};
use format::{StoredMeta, encode_chunk, read_chunk};
pub use memory::MemoryTagStore;

/// Tags per chunk in [`RedbTagStore`].
pub const CHUNK_TAGS: usize = 512;
/// redb's page cache bound (its default is 1 GiB). Reads touch one repository's few
/// chunks at a time, so a small cache holds the hot pages (the B-tree's branches); at 16
/// MiB the cache was the largest single item of the 5,000-repository scale bench's heap.
const CACHE_BYTES: usize = 4 * 1024 * 1024;
const META_FORMAT: u8 = 1;
/// Quarantined store files kept beside the store; older ones are deleted.
pub const KEEP_QUARANTINED: usize = 3;
/// The suffix of a quarantined file's name, before the Unix time.
pub const QUARANTINE_SUFFIX: &str = ".corrupt-";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const CHUNKS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("tag_chunks");

/// An ImageRepository's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoKey {
    pub namespace: String,
    pub name: String,
}

impl RepoKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `namespace/name` (neither may contain `/`, as in Kubernetes).
    fn encode(&self) -> Result<String, StoreError> {
        if self.namespace.is_empty()
            || self.name.is_empty()
            || self.namespace.contains('/')
            || self.name.contains('/')
        {
            return Err(StoreError::InvalidKey { key: self.clone() });
        }
        Ok(format!("{}/{}", self.namespace, self.name))
    }

    fn decode(s: &str) -> Option<Self> {
        s.split_once('/').map(|(ns, name)| Self::new(ns, name))
    }
}

impl fmt::Display for RepoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An entry without its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMeta {
    pub canonical_image: String,
    pub revision: String,
    pub tag_count: u64,
    pub scan_time: SystemTime,
}

/// A page of stored tags, for the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    pub revision: String,
    pub total: u64,
    pub tags: Vec<String>,
    /// Opaque; valid only while the revision is unchanged. `None` on the last page.
    pub continue_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("tag store: {0}")]
    Db(#[from] redb::Error),
    #[error("tag store: entry {key} is corrupt: {detail}")]
    Corrupt { key: String, detail: &'static str },
    #[error(
        "tag store: invalid key '{key}': namespace and name are required and may not contain '/'"
    )]
    InvalidKey { key: RepoKey },
    #[error("invalid continue token")]
    InvalidContinue,
    /// The tags changed since the token was issued: restart from the first page.
    #[error("the tag list changed since this continue token was issued; start again")]
    ContinueExpired,
}

fn db_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

/// What [`TagStore::get_page`] answers: `None` when the repository was never scanned.
pub type PageResult = Result<Option<TagPage>, StoreError>;

/// Where scanned tags are kept. Implementations: [`RedbTagStore`] (persistent) and
/// [`MemoryTagStore`] (for tests).
pub trait TagStore: Send + Sync {
    /// Replaces the entry of `key` with `scan` (atomically).
    fn put(&self, key: &RepoKey, scan: &ScanResult) -> Result<(), StoreError>;
    /// The stored tags in stored (descending) order; `None` if never scanned.
    fn get_tags(&self, key: &RepoKey) -> Result<Option<Vec<String>>, StoreError>;
    /// Up to `limit` tags from `continue_token` (`None`: the first page).
    fn get_page(&self, key: &RepoKey, continue_token: Option<&str>, limit: usize) -> PageResult;
    /// Revision, count and scan time without reading the tags.
    fn meta(&self, key: &RepoKey) -> Result<Option<TagMeta>, StoreError>;
    /// Removes the entry; whether there was one.
    fn delete(&self, key: &RepoKey) -> Result<bool, StoreError>;
    /// Every stored key, sorted (to garbage-collect deleted repositories).
    fn keys(&self) -> Result<Vec<RepoKey>, StoreError>;
    /// How many times the store lost its contents while running (a damaged file replaced
    /// by an empty one). When it changes, the controllers rescan every repository.
    fn generation(&self) -> u64 {
        0
    }
}

/// A damaged store file that was set aside and replaced by an empty store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The store file.
    pub path: PathBuf,
    /// Where the damaged file was moved; `None` if it had to be deleted.
    pub moved_to: Option<PathBuf>,
    /// redb's description of the damage.
    pub damage: String,
}

/// Told about each quarantine (to log it and count it in a metric).
pub type QuarantineObserver = Arc<dyn Fn(&Quarantined) + Send + Sync>;

/// The persistent store: one redb file, replaced by an empty one if it is damaged.
pub struct RedbTagStore {
    path: PathBuf,
    db: RwLock<Arc<redb::Database>>,
    observer: Option<QuarantineObserver>,
    /// Replacements since open ([`TagStore::generation`]).
    generation: AtomicU64,
}

impl fmt::Debug for RedbTagStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbTagStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What an operation on one database did: its result, or damage (a redb error that
/// means the file is damaged, or a panic inside redb).
enum Outcome<T> {
    Done(Result<T, StoreError>),
    Damaged(String),
}

impl RedbTagStore {
    /// Opens (or creates) the store file at `path`; a damaged file is quarantined
    /// (see the module documentation) without an observer.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, None)
    }

    /// Opens (or creates) the store file at `path`, quarantining a damaged file and
    /// telling `observer`.
    pub fn open_with(
        path: impl AsRef<Path>,
        observer: Option<QuarantineObserver>,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = match open_database(&path) {
            Outcome::Done(db) => db?,
            Outcome::Damaged(damage) => {
                let quarantined = quarantine_file(&path, damage)?;
                if let Some(observer) = &observer {
                    observer(&quarantined);
                }
                match open_database(&path) {
                    Outcome::Done(db) => db?,
                    Outcome::Damaged(damage) => {
                        return Err(StoreError::Db(redb::Error::Corrupted(format!(
                            "a new store at {} is damaged at once: {damage}",
                            path.display()
                        ))));
                    }
                }
            }
        };
        Ok(Self {
            path,
            db: RwLock::new(Arc::new(db)),
            observer,
            generation: AtomicU64::new(0),
        })
    }

    fn current(&self) -> Arc<redb::Database> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `op` on the current database. On damage, the file is quarantined and replaced
    /// (once, however many operations meet the damage), then `on_damage` gives the answer.
    fn with_db<T>(
        &self,
        op: impl Fn(&redb::Database) -> Result<T, StoreError>,
        on_damage: impl FnOnce(&Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.current();
        match guarded(|| op(&db)) {
            Outcome::Done(result) => result,
            Outcome::Damaged(damage) => {
                self.replace_damaged(&db, damage)?;
                on_damage(self)
            }
        }
    }

    /// Quarantines the file of `damaged` and opens an empty store, unless another
    /// operation already replaced it.
    fn replace_damaged(
        &self,
        damaged: &Arc<redb::Database>,
        damage: String,
    ) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if !Arc::ptr_eq(&slot, damaged) {
            return Ok(());
        }
        let quarantined = quarantine_file(&self.path, damage)?;
        // The old handle keeps the moved file's inode; the new store is a new file.
        let fresh = match open_database(&self.path) {
            Outcome::Done(db) => db?,
            Outcome::Damaged(damage) => {
                return Err(StoreError::Db(redb::Error::Corrupted(format!(
                    "a new store at {} is damaged at once: {damage}",
                    self.path.display()
                ))));
            }
        };
        *slot = Arc::new(fresh);
        self.generation.fetch_add(1, Ordering::SeqCst);
        drop(slot);
        if let Some(observer) = &self.observer {
            observer(&quarantined);
        }
        Ok(())
    }

    /// Drops an entry whose bytes do not decode, so it reads as "not stored" and is
    /// rescanned. Best effort: if the delete fails too, the read still answers `None`.
    fn drop_undecodable(&self, key: &str, detail: &str) {
        tracing::warn!(
            key,
            detail,
            "tag store: dropping an unreadable entry; it will be rescanned"
        );
        if let Some(repo) = RepoKey::decode(key) {
            let _ = self.delete(&repo);
        }
    }

    fn read_meta(
        table: &impl redb::ReadableTable<&'static str, &'static [u8]>,
        key: &str,
    ) -> Result<Option<StoredMeta>, StoreError> {
        match table.get(key).map_err(db_err)? {
            Some(value) => {
                StoredMeta::decode(value.value())
                    .map(Some)
                    .ok_or_else(|| StoreError::Corrupt {
                        key: key.to_string(),
                        detail: "unreadable metadata",
                    })
            }
            None => Ok(None),
        }
    }

    fn put_in(db: &redb::Database, key: &str, scan: &ScanResult) -> Result<(), StoreError> {
        let chunks: Vec<&[String]> = scan.tags.chunks(CHUNK_TAGS).collect();
        let chunk_count = u32::try_from(chunks.len()).map_err(|_| StoreError::Corrupt {
            key: key.to_string(),
            detail: "too many tags",
        })?;
        let meta = StoredMeta {
            tag_count: scan.tags.len() as u64,
            chunks: chunk_count,
            scan_time: scan.scan_time,
            revision: scan.revision.clone(),
            canonical_image: scan.canonical_image.clone(),
        };
        let txn = db.begin_write().map_err(db_err)?;
        {
            let mut metas = txn.open_table(META).map_err(db_err)?;
            let mut table = txn.open_table(CHUNKS).map_err(db_err)?;
            // An undecodable old entry is overwritten; its extra chunks are left (unread).
            let old_chunks = match Self::read_meta(&metas, key) {
                Ok(meta) => meta.map_or(0, |m| m.chunks),
                Err(StoreError::Corrupt { .. }) => 0,
                Err(e) => return Err(e),
            };
            let mut buffer = Vec::new();
            for (i, chunk) in (0u32..).zip(&chunks) {
                encode_chunk(chunk, &mut buffer);
                table.insert((key, i), buffer.as_slice()).map_err(db_err)?;
            }
            for i in chunk_count..old_chunks {
                table.remove((key, i)).map_err(db_err)?;
            }
            metas
                .insert(key, meta.encode().as_slice())
                .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    fn get_tags_in(db: &redb::Database, key: &str) -> Result<Option<Vec<String>>, StoreError> {
        let txn = db.begin_read().map_err(db_err)?;
        let metas = txn.open_table(META).map_err(db_err)?;
        let Some(meta) = Self::read_meta(&metas, key)? else {
            return Ok(None);
        };
        let table = txn.open_table(CHUNKS).map_err(db_err)?;
        // The count is only a hint: a damaged count must not allocate without bound.
        let hint = usize::try_from(meta.tag_count).unwrap_or(0).min(1 << 20);
        let mut tags = Vec::with_capacity(hint);
        for i in 0..meta.chunks {
            read_chunk(&table, key, i, 0, usize::MAX, &mut tags)?;
        }
        Ok(Some(tags))
    }

    fn get_page_in(
        db: &redb::Database,
        key: &str,
        continue_token: Option<&str>,
        limit: usize,
    ) -> Result<Option<TagPage>, StoreError> {
        let txn = db.begin_read().map_err(db_err)?;
        let metas = txn.open_table(META).map_err(db_err)?;
        let Some(meta) = Self::read_meta(&metas, key)? else {
            return Ok(None);
        };
        let offset = parse_continue(continue_token, &meta.revision)?;
        let table = txn.open_table(CHUNKS).map_err(db_err)?;
        let total = usize::try_from(meta.tag_count).unwrap_or(usize::MAX);
        let end = offset.saturating_add(limit).min(total);
        let mut tags = Vec::with_capacity(end.saturating_sub(offset).min(1 << 16));
        let mut position = offset;
        while position < end {
            let chunk = position / CHUNK_TAGS;
            let skip = position % CHUNK_TAGS;
            let index = u32::try_from(chunk).map_err(|_| StoreError::InvalidContinue)?;
            let before = tags.len();
            read_chunk(&table, key, index, skip, end - position, &mut tags)?;
            if tags.len() == before {
                return Err(StoreError::Corrupt {
                    key: key.to_string(),
                    detail: "fewer tags than counted",
                });
            }
            position += tags.len() - before;
        }
        Ok(Some(page(meta.revision, meta.tag_count, tags, end, total)))
    }

    fn meta_in(db: &redb::Database, key: &str) -> Result<Option<TagMeta>, StoreError> {
        let txn = db.begin_read().map_err(db_err)?;
        let metas = txn.open_table(META).map_err(db_err)?;
        Ok(Self::read_meta(&metas, key)?.map(StoredMeta::into_public))
    }

    fn delete_in(db: &redb::Database, key: &str) -> Result<bool, StoreError> {
        let txn = db.begin_write().map_err(db_err)?;
        let existed = {
            let mut metas = txn.open_table(META).map_err(db_err)?;
            let mut table = txn.open_table(CHUNKS).map_err(db_err)?;
            let chunks = match Self::read_meta(&metas, key) {
                Ok(Some(meta)) => Some(meta.chunks),
                Ok(None) => None,
                // Undecodable metadata: remove it and whatever chunks follow it.
                Err(StoreError::Corrupt { .. }) => Some(0),
                Err(e) => return Err(e),
            };
            match chunks {
                Some(chunks) => {
                    let mut i = 0u32;
                    while i < chunks || table.get((key, i)).map_err(db_err)?.is_some() {
                        table.remove((key, i)).map_err(db_err)?;
                        i = i.saturating_add(1);
                        if i == u32::MAX {
                            break;
                        }
                    }
                    metas.remove(key).map_err(db_err)?;
                    true
                }
                None => false,
            }
        };
        txn.commit().map_err(db_err)?;
        Ok(existed)
    }

    fn keys_in(db: &redb::Database) -> Result<Vec<RepoKey>, StoreError> {
        let txn = db.begin_read().map_err(db_err)?;
        let metas = txn.open_table(META).map_err(db_err)?;
        let mut keys = Vec::new();
        for entry in metas.iter().map_err(db_err)? {
            let (key, _) = entry.map_err(db_err)?;
            if let Some(k) = RepoKey::decode(key.value()) {
                keys.push(k);
            }
        }
        Ok(keys)
    }

    /// A read's answer for an entry that does not decode: "not stored".
    fn missing_if_undecodable<T>(
        &self,
        key: &str,
        result: Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match result {
            Err(StoreError::Corrupt { detail, .. }) => {
                self.drop_undecodable(key, detail);
                Ok(None)
            }
            other => other,
        }
    }
}

impl TagStore for RedbTagStore {
    fn put(&self, key: &RepoKey, scan: &ScanResult) -> Result<(), StoreError> {
        let key = key.encode()?;
        // On damage the write goes to the new, empty store.
        self.with_db(
            |db| Self::put_in(db, &key, scan),
            |store| Self::put_in(&store.current(), &key, scan),
        )
    }

    fn get_tags(&self, key: &RepoKey) -> Result<Option<Vec<String>>, StoreError> {
        let key = key.encode()?;
        let result = self.with_db(|db| Self::get_tags_in(db, &key), |_| Ok(None));
        self.missing_if_undecodable(&key, result)
    }

    fn get_page(&self, key: &RepoKey, continue_token: Option<&str>, limit: usize) -> PageResult {
        let key = key.encode()?;
        let result = self.with_db(
            |db| Self::get_page_in(db, &key, continue_token, limit),
            |_| Ok(None),
        );
        self.missing_if_undecodable(&key, result)
    }

    fn meta(&self, key: &RepoKey) -> Result<Option<TagMeta>, StoreError> {
        let key = key.encode()?;
        let result = self.with_db(|db| Self::meta_in(db, &key), |_| Ok(None));
        self.missing_if_undecodable(&key, result)
    }

    fn delete(&self, key: &RepoKey) -> Result<bool, StoreError> {
        let key = key.encode()?;
        self.with_db(|db| Self::delete_in(db, &key), |_| Ok(false))
    }

    fn keys(&self) -> Result<Vec<RepoKey>, StoreError> {
        self.with_db(Self::keys_in, |_| Ok(Vec::new()))
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

fn page(revision: String, total: u64, tags: Vec<String>, end: usize, len: usize) -> TagPage {
    let continue_token = (end < len).then(|| continue_token(end, &revision));
    TagPage {
        revision,
        total,
        tags,
        continue_token,
    }
}

/// `<offset>.<revision hex prefix>`: opaque to clients, tied to the revision.
fn continue_token(offset: usize, revision: &str) -> String {
    format!("{offset}.{}", revision_tag(revision))
}

fn revision_tag(revision: &str) -> &str {
    let hex = revision.rsplit(':').next().unwrap_or(revision);
    hex.get(..16).unwrap_or(hex)
}

fn parse_continue(token: Option<&str>, revision: &str) -> Result<usize, StoreError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let (offset, tag) = token.split_once('.').ok_or(StoreError::InvalidContinue)?;
    let offset: usize = offset.parse().map_err(|_| StoreError::InvalidContinue)?;
    if tag != revision_tag(revision) {
        return Err(StoreError::ContinueExpired);
    }
    Ok(offset)
}

#[cfg(test)]
mod tests;
