//! The on-disk encoding: length-prefixed tag chunks and the `meta` value.

use super::*;

pub(super) fn encode_chunk(tags: &[String], out: &mut Vec<u8>) {
    out.clear();
    for tag in tags {
        // Tags are at most 128 bytes by spec; u32 copes with whatever a registry sends.
        let len = u32::try_from(tag.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&tag.as_bytes()[..len as usize]);
    }
}

/// Appends up to `limit` tags of chunk `index`, skipping the first `skip`.
pub(super) fn read_chunk(
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
pub(super) struct StoredMeta {
    pub(super) tag_count: u64,
    pub(super) chunks: u32,
    pub(super) scan_time: SystemTime,
    pub(super) revision: String,
    pub(super) canonical_image: String,
}

impl StoredMeta {
    /// Format 1: `1`, count u64, chunks u32, seconds i64, nanos u32 (little-endian), then
    /// revision and canonical image, each as u32 length + bytes.
    pub(super) fn encode(&self) -> Vec<u8> {
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

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
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

    pub(super) fn into_public(self) -> TagMeta {
        TagMeta {
            canonical_image: self.canonical_image,
            revision: self.revision,
            tag_count: self.tag_count,
            scan_time: self.scan_time,
        }
    }
}

pub(super) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    pub(super) fn string(&mut self) -> Option<String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}
