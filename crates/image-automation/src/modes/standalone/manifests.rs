//! Standalone manifests: ImageUpdateAutomation (`image.toolkit.fluxcd.io`, any version),
//! GitRepository (`source.toolkit.fluxcd.io`) and Secret (`v1`) objects read from the
//! YAML/JSON files under a directory through the kit's directory front end
//! ([`kube_support::manifests`]: recursive, multi-document, `kind: List` expanded, dot-files
//! skipped, other kinds ignored, `metadata.namespace` defaulting to `default`).
//!
//! [`ManifestSource`] is the long-running mode's view: each file keeps its last good objects
//! when an edit breaks it. [`Manifests::load`] reads once and fails on the first bad file
//! (`--once`, where a skipped file would go unnoticed).

use std::collections::BTreeMap;
use std::path::Path;

use api_types::{GitRepository, ImageUpdateAutomation};
use kube_support::manifests::{self, DecodedSecret, ManifestDir};
use kube_support::selector::LabelSelector;
use serde_json::Value;

use crate::reconcile::ObjectMap;

pub use kube_support::manifests::{Key, ManifestError};

/// One object read from a manifest file.
#[derive(Debug, Clone)]
enum Object {
    Automation(Box<ImageUpdateAutomation>),
    Repository(Box<GitRepository>),
    Secret(DecodedSecret),
}

/// Parses one document; `Ok(None)` for kinds we do not read.
fn parse_object(mut doc: Value) -> Result<Option<Object>, String> {
    manifests::with_default_namespace(&mut doc);
    let (group, api_version, kind) = manifests::type_of(&doc);
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let what = format!("{kind} {namespace}/{name}");
    let object = match (group, api_version, kind) {
        (api_types::GROUP, _, "ImageUpdateAutomation") => {
            if doc.pointer("/metadata/generation").is_none()
                && let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
            {
                meta.insert("generation".into(), Value::from(1));
            }
            let obj: ImageUpdateAutomation =
                serde_json::from_value(doc).map_err(|e| format!("{what}: {e}"))?;
            Object::Automation(Box::new(obj))
        }
        ("source.toolkit.fluxcd.io", _, "GitRepository") => {
            let obj: GitRepository =
                serde_json::from_value(doc).map_err(|e| format!("{what}: {e}"))?;
            Object::Repository(Box::new(obj))
        }
        (_, "v1", "Secret") => {
            Object::Secret(manifests::decode_secret(doc).map_err(|e| format!("{what}: {e}"))?)
        }
        _ => return Ok(None),
    };
    Ok(Some(object))
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The objects of a manifest directory: the automations, and the GitRepositories and
/// Secrets their runs read.
#[derive(Clone, Default)]
pub struct Manifests {
    pub automations: BTreeMap<Key, ImageUpdateAutomation>,
    pub objects: ObjectMap,
}

impl std::fmt::Debug for Manifests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifests")
            .field("automations", &self.automations.keys().collect::<Vec<_>>())
            .field("objects", &self.objects)
            .finish()
    }
}

impl Manifests {
    /// Reads every manifest under `dir` once; any unparseable file is an error naming it.
    /// Only automations `selector` matches are kept.
    pub fn load(dir: &Path, selector: Option<&LabelSelector>) -> Result<Self, ManifestError> {
        let objects = manifests::load_strict(dir, parse_object)?;
        Ok(Self::from_objects(objects.iter(), selector))
    }

    /// Later objects replace earlier ones with the same key. The selector picks the
    /// automations only: a selected automation may use any GitRepository and Secret.
    fn from_objects<'a>(
        objects: impl Iterator<Item = &'a Object>,
        selector: Option<&LabelSelector>,
    ) -> Self {
        let mut out = Self::default();
        let empty = BTreeMap::new();
        for object in objects {
            match object {
                Object::Automation(obj) => {
                    let labels = obj.metadata.labels.as_ref().unwrap_or(&empty);
                    if selector.is_none_or(|s| s.matches(labels)) {
                        out.automations
                            .insert(key_of(&obj.metadata), (**obj).clone());
                    }
                }
                Object::Repository(obj) => {
                    let key = key_of(&obj.metadata);
                    out.objects.repositories.insert(key, (**obj).clone());
                }
                Object::Secret(secret) => {
                    let data = secret.data.clone();
                    out.objects.insert_secret(secret.key.clone(), data);
                }
            }
        }
        out
    }
}

/// The long-running mode's manifest directory: files re-read when they change, each
/// keeping its last good objects.
#[derive(Debug, Default)]
pub struct ManifestSource {
    dir: ManifestDir<Object>,
}

impl ManifestSource {
    /// Re-reads changed files; returns whether anything changed.
    pub fn refresh(&mut self, dir: &Path) -> std::io::Result<bool> {
        self.dir.refresh(dir, parse_object)
    }

    /// The objects now, automations filtered by `selector`.
    pub fn snapshot(&self, selector: Option<&LabelSelector>) -> Manifests {
        Manifests::from_objects(self.dir.objects().map(|(_, o)| o), selector)
    }
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
        let m = Manifests::load(dir.path(), None).unwrap();
        let key = ("flux-system".to_string(), "flux-image-updates".to_string());
        let a = &m.automations[&key];
        assert_eq!(a.metadata.generation, Some(1));
        assert_eq!(
            a.spec.git.as_ref().unwrap().push.as_ref().unwrap().branch,
            Some("main".into())
        );
        use crate::reconcile::Objects as _;
        assert!(
            m.objects
                .git_repository("flux-system", "flux-system")
                .is_some()
        );
        let s = m.objects.secret("flux-system", "git").unwrap();
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
        let err = Manifests::load(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("bad.yaml"), "{err}");
    }
}
