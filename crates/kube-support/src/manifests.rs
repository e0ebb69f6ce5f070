//! The directory front end of both services' standalone modes (`serve --manifests DIR`).
//!
//! - [`ManifestDir`]: the YAML/JSON files under a directory (recursively; dot-files skipped;
//!   symlinks followed, as ConfigMap volumes are symlink farms), re-read when their
//!   modification time or size changes. A file that fails to parse keeps its last good
//!   objects: an editor's half-written save must not delete what it defined.
//! - [`documents`]: multi-document YAML with `kind: List` flattened and empty documents
//!   skipped; [`with_default_namespace`] (`default`, as `kubectl apply` would).
//! - [`decode_secret`]: the one Secret decoder (`data` base64-decoded, `stringData` merged
//!   over it as the API server does). Secret data is never logged.
//!
//! Each service parses documents into its own object type; what is selected by the label
//! selector and how objects are scheduled stays with the caller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

/// `(namespace, name)`.
pub type Key = (String, String);

/// What identifies a file version without reading it.
type Fingerprint = (SystemTime, u64);

/// A manifest file that could not be read or parsed.
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

/// The documents of one file's text, `kind: List` items flattened, empty documents skipped.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        if doc.is_null() {
            continue;
        }
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            out.extend(
                doc.get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        } else {
            out.push(doc);
        }
    }
    Ok(out)
}

/// `(group, apiVersion, kind)` of a document; the group is empty for the core `v1`.
pub fn type_of(doc: &Value) -> (&str, &str, &str) {
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    (group, api_version, kind)
}

/// Sets `metadata.namespace` to `default` when it is missing, as `kubectl apply` would.
pub fn with_default_namespace(doc: &mut Value) {
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.entry("namespace")
            .or_insert_with(|| Value::String("default".into()));
    }
}

/// A Secret read from a manifest.
#[derive(Clone, PartialEq, Eq)]
pub struct DecodedSecret {
    pub key: Key,
    /// `type`, `Opaque` when missing.
    pub type_: String,
    /// `data` decoded, with `stringData` merged over it.
    pub data: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for DecodedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedSecret")
            .field("key", &self.key)
            .field("type_", &self.type_)
            .field("data", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Decodes a `v1` Secret document (namespace defaulted).
pub fn decode_secret(mut doc: Value) -> Result<DecodedSecret, String> {
    with_default_namespace(&mut doc);
    let secret: Secret = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    Ok(secret_of(secret))
}

/// The one Secret decoder, for Secrets read from files and from the API server alike:
/// `data` with `stringData` merged over it (it wins, as the API server merges them).
pub fn secret_of(secret: Secret) -> DecodedSecret {
    let key = (
        secret.metadata.namespace.unwrap_or_default(),
        secret.metadata.name.unwrap_or_default(),
    );
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    DecodedSecret {
        key,
        type_: secret.type_.unwrap_or_else(|| "Opaque".into()),
        data,
    }
}

/// Parses one file with `parse` per document (`Ok(None)`: a kind the caller ignores). Any
/// error rejects the whole file.
pub fn parse_file<O>(
    path: &Path,
    parse: &impl Fn(Value) -> Result<Option<O>, String>,
) -> Result<Vec<O>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let parse_error = |message: String| ManifestError::Parse {
        path: path.display().to_string(),
        message,
    };
    let mut objects = Vec::new();
    for doc in documents(&text).map_err(parse_error)? {
        objects.extend(parse(doc).map_err(parse_error)?);
    }
    Ok(objects)
}

/// The manifest files under `dir`, recursively, with their fingerprints.
fn scan_dir(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, Fingerprint>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // Follows symlinks (ConfigMap volumes are symlink farms).
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
                let modified = meta.modified().unwrap_or(UNIX_EPOCH);
                files.insert(path, (modified, meta.len()));
            }
        }
    }
    Ok(files)
}

/// The manifest files of a directory and each one's last good objects.
#[derive(Debug)]
pub struct ManifestDir<O> {
    files: BTreeMap<PathBuf, (Fingerprint, Vec<O>)>,
}

impl<O> Default for ManifestDir<O> {
    fn default() -> Self {
        Self {
            files: BTreeMap::new(),
        }
    }
}

impl<O> ManifestDir<O> {
    /// Re-reads the files that changed with `parse`; returns whether anything changed. A
    /// file that fails keeps its previous objects (none when new) and is logged once per
    /// version.
    pub fn refresh(
        &mut self,
        dir: &Path,
        parse: impl Fn(Value) -> Result<Option<O>, String>,
    ) -> std::io::Result<bool> {
        let current = scan_dir(dir)?;
        let before = self.files.len();
        self.files.retain(|path, _| current.contains_key(path));
        let mut changed = before != self.files.len();
        for (path, fingerprint) in current {
            if self
                .files
                .get(&path)
                .is_some_and(|(f, _)| *f == fingerprint)
            {
                continue;
            }
            changed = true;
            match parse_file(&path, &parse) {
                Ok(objects) => {
                    tracing::debug!(path = %path.display(), objects = objects.len(), "read manifests");
                    self.files.insert(path, (fingerprint, objects));
                }
                Err(error) => {
                    // Record the fingerprint so that the same error is not logged every poll.
                    tracing::warn!(%error, "cannot parse manifest file; keeping its previous objects");
                    let previous = self.files.remove(&path).map(|(_, o)| o).unwrap_or_default();
                    self.files.insert(path, (fingerprint, previous));
                }
            }
        }
        Ok(changed)
    }

    /// Every object, files in path order.
    pub fn objects(&self) -> impl Iterator<Item = (&Path, &O)> {
        self.files
            .iter()
            .flat_map(|(path, (_, objects))| objects.iter().map(move |o| (path.as_path(), o)))
    }
}

/// Reads every file under `dir` once; the first file that fails is the error (for one-shot
/// runs, where a skipped file would go unnoticed).
pub fn load_strict<O>(
    dir: &Path,
    parse: impl Fn(Value) -> Result<Option<O>, String>,
) -> Result<Vec<O>, ManifestError> {
    let files = scan_dir(dir).map_err(|source| ManifestError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut objects = Vec::new();
    for path in files.keys() {
        objects.extend(parse_file(path, &parse)?);
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(doc: Value) -> Result<Option<String>, String> {
        let (_, _, kind) = type_of(&doc);
        if kind == "Bad" {
            return Err("bad kind".into());
        }
        Ok(doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    fn all(dir: &ManifestDir<String>) -> Vec<String> {
        dir.objects().map(|(_, o)| o.clone()).collect()
    }

    #[test]
    fn lists_flatten_and_empty_documents_are_skipped() {
        let docs = documents("---\n---\nkind: List\nitems: [{metadata: {name: a}}, {metadata: {name: b}}]\n---\nmetadata: {name: c}\n").unwrap();
        let names: Vec<_> = docs
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn each_file_keeps_its_last_good_objects() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "metadata: {name: a}\n").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "metadata: {name: h}\n").unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: [").unwrap();
        let mut manifests = ManifestDir::default();
        assert!(manifests.refresh(dir.path(), names).unwrap());
        assert_eq!(all(&manifests), ["a"]);
        assert!(!manifests.refresh(dir.path(), names).unwrap(), "unchanged");
        // a.yaml breaks (a document the parser rejects) while c.yaml is added.
        std::fs::write(
            dir.path().join("a.yaml"),
            "kind: Bad\nmetadata: {name: a2}\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c.yml"), "metadata: {name: c}\n").unwrap();
        assert!(manifests.refresh(dir.path(), names).unwrap());
        assert_eq!(all(&manifests), ["a", "c"]);
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        assert!(manifests.refresh(dir.path(), names).unwrap());
        assert_eq!(all(&manifests), ["c"]);
        let err = load_strict(dir.path(), names).unwrap_err().to_string();
        assert!(err.contains("bad.yaml"), "{err}");
    }

    #[test]
    fn secrets_decode_data_and_merge_string_data() {
        let doc: Value = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "git"},
            "data": {"username": "Ym90", "password": "b2xk"},
            "stringData": {"password": "s3cret"}
        });
        let secret = decode_secret(doc).unwrap();
        assert_eq!(secret.key, ("default".to_owned(), "git".to_owned()));
        assert_eq!(secret.type_, "Opaque");
        assert_eq!(secret.data["username"], b"bot");
        assert_eq!(secret.data["password"], b"s3cret");
        assert!(!format!("{secret:?}").contains("s3cret"));
        let bad = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "x"}, "data": {"k": "%%%"}});
        assert!(decode_secret(bad).is_err());
    }
}
