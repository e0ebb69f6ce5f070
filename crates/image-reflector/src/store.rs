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

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};

use crate::registry::ScanResult;

/// Tags per chunk in [`RedbTagStore`].
pub const CHUNK_TAGS: usize = 512;
/// redb's page cache bound (its default is 1 GiB).
const CACHE_BYTES: usize = 16 * 1024 * 1024;
const META_FORMAT: u8 = 1;

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

/// Where scanned tags are kept. Implementations: [`RedbTagStore`] (persistent) and
/// [`MemoryTagStore`] (for tests).
pub trait TagStore: Send + Sync {
    /// Replaces the entry of `key` with `scan` (atomically).
    fn put(&self, key: &RepoKey, scan: &ScanResult) -> Result<(), StoreError>;
    /// The stored tags in stored (descending) order; `None` if never scanned.
    fn get_tags(&self, key: &RepoKey) -> Result<Option<Vec<String>>, StoreError>;
    /// Up to `limit` tags from `continue_token` (`None`: the first page).
    fn get_page(
        &self,
        key: &RepoKey,
        continue_token: Option<&str>,
        limit: usize,
    ) -> Result<Option<TagPage>, StoreError>;
    /// Revision, count and scan time without reading the tags.
    fn meta(&self, key: &RepoKey) -> Result<Option<TagMeta>, StoreError>;
    /// Removes the entry; whether there was one.
    fn delete(&self, key: &RepoKey) -> Result<bool, StoreError>;
    /// Every stored key, sorted (to garbage-collect deleted repositories).
    fn keys(&self) -> Result<Vec<RepoKey>, StoreError>;
}

/// The persistent store: one redb file.
pub struct RedbTagStore {
    db: redb::Database,
}

impl fmt::Debug for RedbTagStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbTagStore").finish_non_exhaustive()
    }
}

impl RedbTagStore {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(db_err)?;
        // Create the tables up front so readers never meet a missing table.
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(META).map_err(db_err)?;
        txn.open_table(CHUNKS).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(Self { db })
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
}

impl TagStore for RedbTagStore {
    fn put(&self, key: &RepoKey, scan: &ScanResult) -> Result<(), StoreError> {
        let key = key.encode()?;
        let chunks: Vec<&[String]> = scan.tags.chunks(CHUNK_TAGS).collect();
        let chunk_count = u32::try_from(chunks.len()).map_err(|_| StoreError::Corrupt {
            key: key.clone(),
            detail: "too many tags",
        })?;
        let meta = StoredMeta {
            tag_count: scan.tags.len() as u64,
            chunks: chunk_count,
            scan_time: scan.scan_time,
            revision: scan.revision.clone(),
            canonical_image: scan.canonical_image.clone(),
        };
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut metas = txn.open_table(META).map_err(db_err)?;
            let mut table = txn.open_table(CHUNKS).map_err(db_err)?;
            let old_chunks = Self::read_meta(&metas, &key)?.map_or(0, |m| m.chunks);
            let mut buffer = Vec::new();
            for (i, chunk) in (0u32..).zip(&chunks) {
                encode_chunk(chunk, &mut buffer);
                table
                    .insert((key.as_str(), i), buffer.as_slice())
                    .map_err(db_err)?;
            }
            for i in chunk_count..old_chunks {
                table.remove((key.as_str(), i)).map_err(db_err)?;
            }
            metas
                .insert(key.as_str(), meta.encode().as_slice())
                .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    fn get_tags(&self, key: &RepoKey) -> Result<Option<Vec<String>>, StoreError> {
        let key = key.encode()?;
        let txn = self.db.begin_read().map_err(db_err)?;
        let metas = txn.open_table(META).map_err(db_err)?;
        let Some(meta) = Self::read_meta(&metas, &key)? else {
            return Ok(None);
        };
        let table = txn.open_table(CHUNKS).map_err(db_err)?;
        let mut tags = Vec::with_capacity(usize::try_from(meta.tag_count).unwrap_or(0));
        for i in 0..meta.chunks {
            read_chunk(&table, &key, i, 0, usize::MAX, &mut tags)?;
        }
        Ok(Some(tags))
    }

    fn get_page(
        &self,
        key: &RepoKey,
        continue_token: Option<&str>,
        limit: usize,
    ) -> Result<Option<TagPage>, StoreError> {
        let key = key.encode()?;
        let txn = self.db.begin_read().map_err(db_err)?;
        let metas = txn.open_table(META).map_err(db_err)?;
        let Some(meta) = Self::read_meta(&metas, &key)? else {
            return Ok(None);
        };
        let offset = parse_continue(continue_token, &meta.revision)?;
        let table = txn.open_table(CHUNKS).map_err(db_err)?;
        let total = usize::try_from(meta.tag_count).unwrap_or(usize::MAX);
        let end = offset.saturating_add(limit).min(total);
        let mut tags = Vec::with_capacity(end.saturating_sub(offset));
        let mut position = offset;
        while position < end {
            let chunk = position / CHUNK_TAGS;
            let skip = position % CHUNK_TAGS;
            let index = u32::try_from(chunk).map_err(|_| StoreError::InvalidContinue)?;
            let before = tags.len();
            read_chunk(&table, &key, index, skip, end - position, &mut tags)?;
            if tags.len() == before {
                return Err(StoreError::Corrupt {
                    key,
                    detail: "fewer tags than counted",
                });
            }
            position += tags.len() - before;
        }
        Ok(Some(page(meta.revision, meta.tag_count, tags, end, total)))
    }

    fn meta(&self, key: &RepoKey) -> Result<Option<TagMeta>, StoreError> {
        let key = key.encode()?;
        let txn = self.db.begin_read().map_err(db_err)?;
        let metas = txn.open_table(META).map_err(db_err)?;
        Ok(Self::read_meta(&metas, &key)?.map(StoredMeta::into_public))
    }

    fn delete(&self, key: &RepoKey) -> Result<bool, StoreError> {
        let key = key.encode()?;
        let txn = self.db.begin_write().map_err(db_err)?;
        let existed = {
            let mut metas = txn.open_table(META).map_err(db_err)?;
            let mut table = txn.open_table(CHUNKS).map_err(db_err)?;
            match Self::read_meta(&metas, &key)? {
                Some(meta) => {
                    for i in 0..meta.chunks {
                        table.remove((key.as_str(), i)).map_err(db_err)?;
                    }
                    metas.remove(key.as_str()).map_err(db_err)?;
                    true
                }
                None => false,
            }
        };
        txn.commit().map_err(db_err)?;
        Ok(existed)
    }

    fn keys(&self) -> Result<Vec<RepoKey>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
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
}

/// An in-memory [`TagStore`] for tests of the controller.
#[derive(Debug, Default)]
pub struct MemoryTagStore {
    entries: Mutex<BTreeMap<RepoKey, (TagMeta, Vec<String>)>>,
}

impl MemoryTagStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<RepoKey, (TagMeta, Vec<String>)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TagStore for MemoryTagStore {
    fn put(&self, key: &RepoKey, scan: &ScanResult) -> Result<(), StoreError> {
        key.encode()?;
        let meta = TagMeta {
            canonical_image: scan.canonical_image.clone(),
            revision: scan.revision.clone(),
            tag_count: scan.tags.len() as u64,
            scan_time: scan.scan_time,
        };
        self.lock().insert(key.clone(), (meta, scan.tags.clone()));
        Ok(())
    }

    fn get_tags(&self, key: &RepoKey) -> Result<Option<Vec<String>>, StoreError> {
        key.encode()?;
        Ok(self.lock().get(key).map(|(_, tags)| tags.clone()))
    }

    fn get_page(
        &self,
        key: &RepoKey,
        continue_token: Option<&str>,
        limit: usize,
    ) -> Result<Option<TagPage>, StoreError> {
        key.encode()?;
        let entries = self.lock();
        let Some((meta, tags)) = entries.get(key) else {
            return Ok(None);
        };
        let offset = parse_continue(continue_token, &meta.revision)?;
        let end = offset.saturating_add(limit).min(tags.len());
        let slice = tags.get(offset..end).unwrap_or_default().to_vec();
        Ok(Some(page(
            meta.revision.clone(),
            meta.tag_count,
            slice,
            end,
            tags.len(),
        )))
    }

    fn meta(&self, key: &RepoKey) -> Result<Option<TagMeta>, StoreError> {
        key.encode()?;
        Ok(self.lock().get(key).map(|(meta, _)| meta.clone()))
    }

    fn delete(&self, key: &RepoKey) -> Result<bool, StoreError> {
        key.encode()?;
        Ok(self.lock().remove(key).is_some())
    }

    fn keys(&self) -> Result<Vec<RepoKey>, StoreError> {
        Ok(self.lock().keys().cloned().collect())
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

fn encode_chunk(tags: &[String], out: &mut Vec<u8>) {
    out.clear();
    for tag in tags {
        // Tags are at most 128 bytes by spec; u32 copes with whatever a registry sends.
        let len = u32::try_from(tag.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&tag.as_bytes()[..len as usize]);
    }
}

/// Appends up to `limit` tags of chunk `index`, skipping the first `skip`.
fn read_chunk(
    table: &impl redb::ReadableTable<(&'static str, u32), &'static [u8]>,
    key: &str,
    index: u32,
    skip: usize,
    limit: usize,
    out: &mut Vec<String>,
) -> Result<(), StoreError> {
    let corrupt = |detail| StoreError::Corrupt {
        key: key.to_string(),
        detail,
    };
    let guard = table
        .get((key, index))
        .map_err(db_err)?
        .ok_or_else(|| corrupt("missing chunk"))?;
    let mut bytes = guard.value();
    let mut seen = 0usize;
    let mut taken = 0usize;
    while !bytes.is_empty() && taken < limit {
        let (len, rest) = bytes
            .split_at_checked(4)
            .ok_or_else(|| corrupt("truncated chunk"))?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (tag, rest) = rest
            .split_at_checked(len)
            .ok_or_else(|| corrupt("truncated chunk"))?;
        if seen >= skip {
            let tag = std::str::from_utf8(tag).map_err(|_| corrupt("tag is not UTF-8"))?;
            out.push(tag.to_string());
            taken += 1;
        }
        seen += 1;
        bytes = rest;
    }
    Ok(())
}

/// The `meta` table's value.
#[derive(Debug)]
struct StoredMeta {
    tag_count: u64,
    chunks: u32,
    scan_time: SystemTime,
    revision: String,
    canonical_image: String,
}

impl StoredMeta {
    /// Format 1: `1`, count u64, chunks u32, seconds i64, nanos u32 (little-endian), then
    /// revision and canonical image, each as u32 length + bytes.
    fn encode(&self) -> Vec<u8> {
        let (seconds, nanos) = match self.scan_time.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(_) => (0, 0),
        };
        let mut out = Vec::with_capacity(32 + self.revision.len() + self.canonical_image.len());
        out.push(META_FORMAT);
        out.extend_from_slice(&self.tag_count.to_le_bytes());
        out.extend_from_slice(&self.chunks.to_le_bytes());
        out.extend_from_slice(&seconds.to_le_bytes());
        out.extend_from_slice(&nanos.to_le_bytes());
        for s in [&self.revision, &self.canonical_image] {
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&s.as_bytes()[..len as usize]);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        if r.take(1)? != [META_FORMAT] {
            return None;
        }
        let tag_count = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let chunks = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
        let seconds = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let nanos = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
        let revision = r.string()?;
        let canonical_image = r.string()?;
        let scan_time =
            UNIX_EPOCH + Duration::new(u64::try_from(seconds).ok()?, nanos.min(999_999_999));
        Some(Self {
            tag_count,
            chunks,
            scan_time,
            revision,
            canonical_image,
        })
    }

    fn into_public(self) -> TagMeta {
        TagMeta {
            canonical_image: self.canonical_image,
            revision: self.revision,
            tag_count: self.tag_count,
            scan_time: self.scan_time,
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn string(&mut self) -> Option<String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}
