//! Helpers on the watched objects: the watcher config of `--watch-label-selector` and the
//! server-side-apply status write.

use std::fmt;

use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The watcher config for a label selector as given (empty or blank: every object).
pub fn watcher_config(label_selector: &str) -> watcher::Config {
    let config = watcher::Config::default();
    match label_selector.trim() {
        "" => config,
        selector => config.labels(selector),
    }
}

/// Writes `status` with a forced server-side apply under `field_manager` when it differs
/// from `current`; `Ok(false)` when nothing was written.
pub async fn write_status<K, S>(
    api: &Api<K>,
    field_manager: &str,
    name: &str,
    current: Option<&S>,
    status: &S,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}

/// What last triggered a reconcile of an object (its identity, generation and
/// `reconcile.fluxcd.io/requestedAt`): a new reconcile runs when this changes, so the
/// controllers' own status writes never trigger one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub uid: Option<String>,
    pub generation: Option<i64>,
    pub requested_at: Option<String>,
}

/// The object's current [`Fingerprint`].
pub fn fingerprint<K: Resource>(obj: &K) -> Fingerprint {
    let meta = obj.meta();
    Fingerprint {
        uid: meta.uid.clone(),
        generation: meta.generation,
        requested_at: meta.annotations.as_ref().and_then(|a| {
            a.get(api_types::meta::RECONCILE_REQUEST_ANNOTATION)
                .cloned()
        }),
    }
}

/// The last handled trigger of an object and when its next reconcile is due (`None`: only
/// on change).
#[derive(Debug, Clone)]
pub struct Handled {
    pub fingerprint: Fingerprint,
    pub due: Option<tokio::time::Instant>,
}
