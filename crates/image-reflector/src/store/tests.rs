use super::damage::is_damage;
use super::*;
use std::sync::atomic::AtomicUsize;

fn scan(tags: &[&str]) -> ScanResult {
    ScanResult::new(
        "ghcr.io/a/b",
        tags.iter().map(|t| (*t).to_string()).collect(),
        &crate::registry::ExclusionList::default(),
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    )
}

/// Damage met after open (a redb "corrupted" error, or a panic inside redb): the file is
/// set aside once, the observer hears of it, the read answers "not stored", and the
/// store goes on working on a new, empty file.
#[test]
fn damage_after_open_quarantines_once_and_reads_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tags.redb");
    let heard = Arc::new(AtomicUsize::new(0));
    let observer: QuarantineObserver = {
        let heard = heard.clone();
        Arc::new(move |q: &Quarantined| {
            assert!(q.moved_to.as_ref().is_some_and(|p| p.exists()), "{q:?}");
            heard.fetch_add(1, Ordering::SeqCst);
        })
    };
    let store = RedbTagStore::open_with(&path, Some(observer)).unwrap();
    let key = RepoKey::new("apps", "web");
    store.put(&key, &scan(&["2.0.0", "1.0.0"])).unwrap();

    let corrupted = store.with_db(
        |_| -> Result<Option<u8>, StoreError> {
            Err(StoreError::Db(redb::Error::Corrupted("test damage".into())))
        },
        |_| Ok(None),
    );
    assert_eq!(corrupted.unwrap(), None);
    assert_eq!(heard.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.get_tags(&key).unwrap(),
        None,
        "the new store is empty"
    );

    let panicked = store.with_db(
        |_| -> Result<Option<u8>, StoreError> { panic!("Invalid page type byte 7") },
        |_| Ok(None),
    );
    assert_eq!(panicked.unwrap(), None);
    assert_eq!(heard.load(Ordering::SeqCst), 2);

    store.put(&key, &scan(&["3.0.0"])).unwrap();
    assert_eq!(
        store.get_tags(&key).unwrap(),
        Some(vec!["3.0.0".to_string()])
    );
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(QUARANTINE_SUFFIX))
        .collect();
    assert_eq!(aside.len(), 2);
}

/// Conditions a new file would not fix are errors, not damage.
#[test]
fn only_damage_is_quarantined() {
    assert!(is_damage(&redb::Error::Corrupted("x".into())));
    assert!(is_damage(&redb::Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "Not a redb database: magic number mismatch"
    ))));
    assert!(!is_damage(&redb::Error::DatabaseAlreadyOpen));
    for kind in [
        std::io::ErrorKind::PermissionDenied,
        std::io::ErrorKind::StorageFull,
        std::io::ErrorKind::Other,
    ] {
        assert!(!is_damage(&redb::Error::Io(kind.into())), "{kind:?}");
    }
}

/// Only the newest copies are kept.
#[test]
fn quarantine_keeps_the_newest_copies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tags.redb");
    for i in 0..(KEEP_QUARANTINED + 2) {
        std::fs::write(&path, format!("damage {i}")).unwrap();
        let q = quarantine_file(&path, "test".into()).unwrap();
        assert!(q.moved_to.is_some());
        assert!(!path.exists());
    }
    let count = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(count, KEEP_QUARANTINED);
}
