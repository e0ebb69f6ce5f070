//! Damage handling: redb errors and panics that mean the file is damaged, and setting a
//! damaged file aside (`<file>.corrupt-<unix seconds>`, the newest few kept).

use super::*;

/// Opens (or creates) the database and its tables; damage is reported, not returned.
pub(super) fn open_database(path: &Path) -> Outcome<redb::Database> {
    guarded(|| {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(db_err)?;
        // Create the tables up front so readers never meet a missing table.
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(META).map_err(db_err)?;
        txn.open_table(CHUNKS).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(db)
    })
}

/// Runs `op`, turning redb errors that mean damage, and panics inside redb, into
/// [`Outcome::Damaged`].
pub(super) fn guarded<T>(op: impl FnOnce() -> Result<T, StoreError>) -> Outcome<T> {
    match catch_unwind(AssertUnwindSafe(op)) {
        Ok(Err(StoreError::Db(e))) if is_damage(&e) => Outcome::Damaged(e.to_string()),
        Ok(result) => Outcome::Done(result),
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Outcome::Damaged(format!("redb panicked: {text}"))
        }
    }
}

/// Whether a redb error means the file is damaged (so setting it aside fixes it), as
/// opposed to a condition that would fail a new file too or that is not ours to fix.
pub(super) fn is_damage(e: &redb::Error) -> bool {
    use std::io::ErrorKind;
    match e {
        redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::RepairAborted
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_) => true,
        // "Not a redb database" and reads past the end of a truncated file.
        redb::Error::Io(io) => {
            matches!(io.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof)
        }
        _ => false,
    }
}

/// Moves `path` aside as `<path>.corrupt-<unix seconds>`, keeping the newest
/// [`KEEP_QUARANTINED`] such files; deletes it if it cannot be moved (no room, say).
pub(super) fn quarantine_file(path: &Path, damage: String) -> Result<Quarantined, StoreError> {
    let io = |source: std::io::Error| {
        StoreError::Db(redb::Error::Io(std::io::Error::new(
            source.kind(),
            format!(
                "quarantining the damaged store {}: {source}",
                path.display()
            ),
        )))
    };
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!("{QUARANTINE_SUFFIX}{seconds}"));
    let mut aside = PathBuf::from(name);
    let mut n = 1;
    while aside.exists() {
        let mut name = path.as_os_str().to_owned();
        name.push(format!("{QUARANTINE_SUFFIX}{seconds}-{n}"));
        aside = PathBuf::from(name);
        n += 1;
    }
    let moved_to = match std::fs::rename(path, &aside) {
        Ok(()) => Some(aside),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => {
            std::fs::remove_file(path).map_err(io)?;
            None
        }
    };
    prune_quarantined(path);
    Ok(Quarantined {
        path: path.to_path_buf(),
        moved_to,
        damage,
    })
}

/// Deletes all but the newest [`KEEP_QUARANTINED`] quarantined copies of `path`.
pub(super) fn prune_quarantined(path: &Path) {
    let (Some(dir), Some(file)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let prefix = format!("{file}{QUARANTINE_SUFFIX}");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    // Ordered by the quarantine time in the name (a rename keeps the file's mtime).
    let mut copies: Vec<((u64, u64), PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let stamp = name.to_str()?.strip_prefix(&prefix)?;
            let (seconds, n) = stamp.split_once('-').unwrap_or((stamp, "0"));
            Some(((seconds.parse().ok()?, n.parse().ok()?), e.path()))
        })
        .collect();
    copies.sort();
    let excess = copies.len().saturating_sub(KEEP_QUARANTINED);
    for (_, old) in copies.into_iter().take(excess) {
        let _ = std::fs::remove_file(old);
    }
}
