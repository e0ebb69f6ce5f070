//! The manifests of standalone mode (read through `kube_support::manifests`) and the
//! `ObjectSource` over them.

use super::*;

/// One object read from a manifest file.
#[derive(Debug, Clone)]
pub(super) enum Object {
    // Shared with every snapshot (a snapshot clones the pointer, not the object).
    Repository(Arc<ImageRepository>),
    Policy(Arc<ImagePolicy>),
    Secret(Key, SecretData),
    ServiceAccount(Key, Vec<String>),
    Namespace(String, BTreeMap<String, String>),
}

/// Everything read from the directory.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub repositories: BTreeMap<Key, Arc<ImageRepository>>,
    pub policies: BTreeMap<Key, Arc<ImagePolicy>>,
    pub secrets: BTreeMap<Key, SecretData>,
    pub service_accounts: BTreeMap<Key, Vec<String>>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

pub(super) fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (namespace_of(meta).to_string(), name_of(meta).to_string())
}

/// Parses one document; `Ok(None)` for kinds we do not read.
pub(super) fn parse_object(doc: Value) -> Result<Option<Object>, String> {
    let (group, api_version, kind) = manifests::type_of(&doc);
    let object = match (group, api_version, kind) {
        (GROUP, _, REPOSITORY) => {
            let mut repo: ImageRepository =
                serde_json::from_value(doc).map_err(|e| e.to_string())?;
            // Status comes from our reconciles, never from a file.
            repo.status = None;
            Object::Repository(Arc::new(repo))
        }
        (GROUP, _, POLICY) => {
            let mut policy: ImagePolicy = serde_json::from_value(doc).map_err(|e| e.to_string())?;
            policy.status = None;
            Object::Policy(Arc::new(policy))
        }
        (_, "v1", "Secret") => {
            let secret = manifests::decode_secret(doc)?;
            let data = SecretData {
                name: secret.key.1.clone(),
                type_: secret.type_,
                data: secret.data,
            };
            Object::Secret(secret.key, data)
        }
        (_, "v1", "ServiceAccount") => {
            let sa: ServiceAccount = serde_json::from_value(doc).map_err(|e| e.to_string())?;
            let names = sa
                .image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .filter(|n| !n.is_empty())
                .collect();
            Object::ServiceAccount(key_of(&sa.metadata), names)
        }
        (_, "v1", "Namespace") => {
            let ns: Namespace = serde_json::from_value(doc).map_err(|e| e.to_string())?;
            Object::Namespace(
                ns.metadata.name.unwrap_or_default(),
                ns.metadata.labels.unwrap_or_default(),
            )
        }
        _ => {
            tracing::debug!(api_version, kind, "ignoring manifest of another kind");
            return Ok(None);
        }
    };
    Ok(Some(object))
}

/// The manifest files and their last good objects ([`kube_support::manifests`]).
#[derive(Debug, Default)]
pub(super) struct ManifestDir(manifests::ManifestDir<Object>);

impl ManifestDir {
    /// Re-reads changed files; returns whether anything changed.
    pub(super) fn refresh(&mut self, dir: &Path) -> std::io::Result<bool> {
        self.0.refresh(dir, parse_object)
    }

    pub(super) fn snapshot(&self, selector: Option<&LabelSelector>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let empty = BTreeMap::new();
        let selected = |labels: Option<&BTreeMap<String, String>>| {
            selector.is_none_or(|s| s.matches(labels.unwrap_or(&empty)))
        };
        for (path, object) in self.0.objects() {
            {
                let duplicate = match object.clone() {
                    Object::Repository(repo) => {
                        match insert_selected(&selected, &mut snapshot.repositories, repo) {
                            Some(duplicate) => duplicate,
                            None => continue,
                        }
                    }
                    Object::Policy(policy) => {
                        match insert_selected(&selected, &mut snapshot.policies, policy) {
                            Some(duplicate) => duplicate,
                            None => continue,
                        }
                    }
                    Object::Secret(key, secret) => snapshot.secrets.insert(key, secret).is_some(),
                    Object::ServiceAccount(key, names) => {
                        snapshot.service_accounts.insert(key, names).is_some()
                    }
                    Object::Namespace(name, labels) => {
                        snapshot.namespaces.insert(name, labels).is_some()
                    }
                };
                if duplicate {
                    tracing::warn!(path = %path.display(), "an object is defined twice; the last file (by path) wins");
                }
            }
        }
        snapshot
    }
}

/// Reads every manifest under `dir` once (for tools and tests).
pub fn load_manifests(dir: &Path) -> std::io::Result<Snapshot> {
    let mut manifests = ManifestDir::default();
    manifests.refresh(dir)?;
    Ok(manifests.snapshot(None))
}

// ---------------------------------------------------------------------------------------
// The ObjectSource over the manifests

#[derive(Debug, Default, Clone)]
pub(super) struct Objects(Arc<RwLock<Snapshot>>);

impl Objects {
    pub(super) fn read<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> T {
        f(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn replace(&self, snapshot: Snapshot) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }
}

pub(super) fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

impl ObjectSource for Objects {
    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> Lookup<'a, SecretData> {
        let found = self.read(|s| s.secrets.get(&key(namespace, name)).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn service_account_pull_secrets<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Lookup<'a, Vec<String>> {
        let found = self.read(|s| s.service_accounts.get(&key(namespace, name)).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn namespace_labels<'a>(&'a self, namespace: &'a str) -> Lookup<'a, BTreeMap<String, String>> {
        let found = self.read(|s| s.namespaces.get(namespace).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn image_repository<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Lookup<'a, ImageRepository> {
        let found = self.read(|s| {
            s.repositories
                .get(&key(namespace, name))
                .map(|r| ImageRepository::clone(r))
        });
        Box::pin(async move { Ok(found) })
    }
}

/// Adds `obj` to `objects` when `selected` picks its labels: `Some(whether it replaced one
/// with the same key)`, `None` when not selected.
fn insert_selected<K: kube::Resource>(
    selected: &impl Fn(Option<&BTreeMap<String, String>>) -> bool,
    objects: &mut BTreeMap<Key, Arc<K>>,
    obj: Arc<K>,
) -> Option<bool> {
    if !selected(obj.meta().labels.as_ref()) {
        return None;
    }
    Some(objects.insert(key_of(obj.meta()), obj).is_some())
}
