//! Standalone manifests: ImageUpdateAutomation (`image.toolkit.fluxcd.io`, any version),
//! GitRepository (`source.toolkit.fluxcd.io`) and Secret (`v1`) objects read from the
//! YAML/JSON files under a directory (recursively, multi-document, `kind: List` expanded,
//! dot-files skipped, other kinds ignored).
//!
//! `metadata.namespace` defaults to `default`, as `kubectl apply` would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use api_types::{GitRepository, ImageUpdateAutomation};
use base64::Engine as _;
use serde_json::Value;

use crate::controller::Objects;

/// `(namespace, name)`.
pub type Key = (String, String);

/// A manifest that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

/// The objects of a manifest directory.
#[derive(Clone, Default)]
pub struct Manifests {
    pub automations: BTreeMap<Key, ImageUpdateAutomation>,
    pub repositories: BTreeMap<Key, GitRepository>,
    /// Secret data (`data` decoded, `stringData` merged). Never logged.
    secrets: BTreeMap<Key, BTreeMap<String, Vec<u8>>>,
}

impl std::fmt::Debug for Manifests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifests")
            .field("automations", &self.automations.keys().collect::<Vec<_>>())
            .field(
                "repositories",
                &self.repositories.keys().collect::<Vec<_>>(),
            )
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Manifests {
    /// Reads every manifest under `dir`. Any unparseable file is an error naming it.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let mut out = Self::default();
        for file in files(dir)? {
            out.add_file(&file)?;
        }
        Ok(out)
    }

    /// Adds a Secret's data (for tests and tools).
    pub fn insert_secret(&mut self, key: Key, data: BTreeMap<String, Vec<u8>>) {
        self.secrets.insert(key, data);
    }

    fn add_file(&mut self, path: &Path) -> Result<(), ManifestError> {
        let parse_err = |message: String| ManifestError::Parse {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| parse_err(e.to_string()))?;
        for doc in docs {
            if doc.get("kind").and_then(Value::as_str) == Some("List") {
                for item in doc
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.add_doc(item.clone()).map_err(parse_err)?;
                }
            } else if !doc.is_null() {
                self.add_doc(doc).map_err(parse_err)?;
            }
        }
        Ok(())
    }

    fn add_doc(&mut self, mut doc: Value) -> Result<(), String> {
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("namespace")
                .or_insert_with(|| Value::String("default".into()));
        }
        let namespace = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned();
        let what = format!("{kind} {namespace}/{name}");
        match (group, api_version.as_str(), kind.as_str()) {
            (api_types::GROUP, _, "ImageUpdateAutomation") => {
                if doc.pointer("/metadata/generation").is_none()
                    && let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    meta.insert("generation".into(), Value::from(1));
                }
                let obj: ImageUpdateAutomation =
                    serde_json::from_value(doc).map_err(|e| format!("{what}: {e}"))?;
                self.automations.insert((namespace, name), obj);
            }
            ("source.toolkit.fluxcd.io", _, "GitRepository") => {
                let obj: GitRepository =
                    serde_json::from_value(doc).map_err(|e| format!("{what}: {e}"))?;
                self.repositories.insert((namespace, name), obj);
            }
            (_, "v1", "Secret") => {
                let mut data = BTreeMap::new();
                for (k, v) in doc
                    .get("data")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    let text = v.as_str().unwrap_or_default();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .map_err(|_| format!("{what}: data.{k} is not base64"))?;
                    data.insert(k.clone(), bytes);
                }
                for (k, v) in doc
                    .get("stringData")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    data.insert(
                        k.clone(),
                        v.as_str().unwrap_or_default().as_bytes().to_vec(),
                    );
                }
                self.secrets.insert((namespace, name), data);
            }
            _ => {}
        }
        Ok(())
    }
}

impl Objects for Manifests {
    fn git_repository(&self, namespace: &str, name: &str) -> Option<GitRepository> {
        self.repositories
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        self.secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

/// The manifest files under `dir`, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ManifestError::Io { path, source }
    };
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).map_err(io(&current))? {
            let entry = entry.map_err(io(&current))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file()
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1beta1_automation_repository_and_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("all.yaml"),
            "apiVersion: image.toolkit.fluxcd.io/v1beta1
kind: ImageUpdateAutomation
metadata:
  name: flux-image-updates
  namespace: flux-system
spec:
  interval: 1m
  sourceRef:
    kind: GitRepository
    name: flux-system
  git:
    checkout:
      ref: { branch: main }
    commit:
      author:
        name: fluxcdbot
        email: bot@example.invalid
      messageTemplate: |
        Auto-update images
        {{ range .Updated.Images }}
        - {{.}}
        {{ end }}
    push:
      branch: main
  update:
    path: ./clusters/prod
    strategy: Setters
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: { name: flux-system, namespace: flux-system }
spec:
  url: https://git.invalid/fleet.git
  secretRef: { name: git }
---
apiVersion: v1
kind: Secret
metadata: { name: git, namespace: flux-system }
data: { username: Ym90 }
stringData: { password: s3cret }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: other }
",
        )
        .unwrap();
        let m = Manifests::load(dir.path()).unwrap();
        let key = ("flux-system".to_string(), "flux-image-updates".to_string());
        let a = &m.automations[&key];
        assert_eq!(a.metadata.generation, Some(1));
        assert_eq!(
            a.spec.git.as_ref().unwrap().push.as_ref().unwrap().branch,
            Some("main".into())
        );
        assert!(m.git_repository("flux-system", "flux-system").is_some());
        let s = m.secret("flux-system", "git").unwrap();
        assert_eq!(s["username"], b"bot");
        assert_eq!(s["password"], b"s3cret");
        // Secrets never show in Debug output of the parsed objects' holders' logs: the
        // caller logs keys only; here just check nothing else leaked into automations.
        assert_eq!(m.automations.len(), 1);
    }

    #[test]
    fn bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "a: [").unwrap();
        let err = Manifests::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad.yaml"), "{err}");
    }
}
