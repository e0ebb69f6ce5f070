//! The in-memory [`TagStore`] the controller's tests use.

use super::*;

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

    fn get_page(&self, key: &RepoKey, continue_token: Option<&str>, limit: usize) -> PageResult {
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
