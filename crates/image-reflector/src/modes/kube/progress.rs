//! The in-progress status of a repository while its scan runs.

use super::*;

/// Writes a repository's in-progress status ("scanning: <reason>") once before its scan,
/// as Flux patches it, and keeps what the server now holds for the final comparison.
pub(super) struct StatusProgress<'a> {
    pub(super) api: &'a Api<ImageRepository>,
    pub(super) repo: &'a ImageRepository,
    pub(super) ctx: &'a Ctx,
    pub(super) written: Mutex<Option<ImageRepositoryStatus>>,
}

impl StatusProgress<'_> {
    /// The status the server holds: the one written before the scan, else the object's.
    pub(super) fn current(&self) -> Option<ImageRepositoryStatus> {
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.clone().or_else(|| self.repo.status.clone())
    }
}

impl ScanProgress for StatusProgress<'_> {
    fn scanning<'a>(&'a self, status: &'a ImageRepositoryStatus) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let name = name_of(&self.repo.metadata);
            let current = self.repo.status.as_ref();
            match self
                .ctx
                .kit
                .write_status(self.api, name, current, status)
                .await
            {
                Ok(_) => {
                    *self.written.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(status.clone());
                    let mut updated = self.repo.clone();
                    updated.status = Some(status.clone());
                    self.ctx.state.upsert_repository(repository_info(&updated));
                }
                // Only informative: the scan goes on, and the final write follows.
                Err(error) => {
                    tracing::warn!(namespace = namespace_of(&self.repo.metadata), name, %error, "cannot write the scanning status");
                }
            }
        })
    }
}
