//! Setters: rewrite the scalars marked with `# {"$imagepolicy": "NS:NAME[:FIELD]"}`.
//!
//! The logic is split in two:
//! - [`rewrite`] is pure: one file's text in, the edited text, the changes and the markers that
//!   were not applied out. No filesystem.
//! - [`apply`] does the I/O: it walks the update path, screens files for the marker token,
//!   calls [`rewrite`] and writes changed files atomically.
//!
//! Unlike Flux, which re-serialises every changed file with kyaml, we replace only the bytes of
//! the marked scalars, so blank lines, a leading `---`, CRLF line endings, comments, quoting,
//! indentation and flow style survive (Flux issues #117, #844, #616, flux2#5644).

mod fs;
mod marker;
mod rewrite;
mod scalar;

use std::collections::BTreeMap;

use api_types::ImageRef;
use api_types::http_api::ImagePolicyInfo;
use serde::{Deserialize, Serialize};

pub use fs::{Applied, FileEdit, apply, resolve_update_path, write_edits};
pub use marker::TOKEN;
pub use rewrite::{FileRewrite, rewrite};
pub use scalar::reads_as_string;

use marker::{Field, SetterName};

/// Errors that stop a whole run (Flux: `UpdateFailed`). Problems with single files or markers
/// are reported in [`UpdateResult::unmatched`] instead.
#[derive(Debug, thiserror::Error)]
pub enum SetterError {
    #[error("update path {path:?} escapes the root {root}")]
    PathEscapesRoot { root: String, path: String },
    #[error("update path {path}: {source}")]
    UpdatePath {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {namespace}/{name}: invalid latest image reference {reference:?}: {reason}")]
    InvalidPolicy {
        namespace: String,
        name: String,
        reference: String,
        reason: String,
    },
}

/// The setters of one automation: the latest images of the policies of its namespace (already
/// filtered by `policySelector`).
#[derive(Debug, Clone, Default)]
pub struct Setters {
    namespace: String,
    /// Policy name -> its latest image, or why it has none yet.
    policies: BTreeMap<String, PolicyResult>,
    /// Policies whose latest image is not a valid reference -> why. Skipped: their markers
    /// are reported unmatched, the other policies still apply.
    invalid: BTreeMap<String, String>,
}

/// A selected policy's result as the reflector reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PolicyResult {
    Latest(ImageRef),
    /// The policy exists but has no latest image yet; the reflector's Ready reason and
    /// message say why (empty when unknown).
    Pending {
        reason: String,
        message: String,
    },
}

/// The longest reflector message quoted in an unmatched marker's message.
const MAX_QUOTED_MESSAGE: usize = 300;

impl Setters {
    /// Setters for an automation in `namespace`, without policies yet.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            policies: BTreeMap::new(),
            invalid: BTreeMap::new(),
        }
    }

    /// Setters from policies as the reflector's API lists them. Policies of other namespaces
    /// are ignored, as Flux only ever selects policies of the automation's namespace.
    ///
    /// A policy whose latest image is not a valid reference is skipped, not fatal (Flux fails
    /// the whole run, so one bad tag stopped every policy): its markers are reported as
    /// [`UnmatchedReason::InvalidLatestImage`] and [`Setters::invalid_policies`] lists it.
    pub fn from_policies<'a>(
        namespace: impl Into<String>,
        policies: impl IntoIterator<Item = &'a ImagePolicyInfo>,
    ) -> Self {
        let mut setters = Self::new(namespace);
        for policy in policies {
            if policy.namespace != setters.namespace {
                continue;
            }
            match &policy.latest_ref {
                Some(latest) => {
                    if let Err(error) = setters.add(&policy.name, Some(latest.clone())) {
                        setters.policies.remove(&policy.name);
                        setters
                            .invalid
                            .insert(policy.name.clone(), error.to_string());
                    }
                }
                None => setters.add_pending(
                    &policy.name,
                    &policy.readiness.reason,
                    &policy.readiness.message,
                ),
            }
        }
        setters
    }

    /// Policies skipped for an invalid latest image, with why (for logs and reports).
    pub fn invalid_policies(&self) -> &BTreeMap<String, String> {
        &self.invalid
    }

    /// Adds one policy of the automation's namespace; an invalid latest image is an error
    /// (writing it would produce broken manifests) and the policy is not added.
    pub fn add(&mut self, name: &str, latest: Option<ImageRef>) -> Result<(), SetterError> {
        if let Some(image) = &latest {
            validate_image(image).map_err(|reason| SetterError::InvalidPolicy {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                reference: image.to_string(),
                reason,
            })?;
        }
        let result = match latest {
            Some(image) => PolicyResult::Latest(image),
            None => PolicyResult::Pending {
                reason: String::new(),
                message: String::new(),
            },
        };
        self.policies.insert(name.to_owned(), result);
        Ok(())
    }

    /// Adds a policy that exists but has no latest image yet, with the reflector's Ready
    /// `reason` and `message` for it.
    pub fn add_pending(&mut self, name: &str, reason: &str, message: &str) {
        let message = match message.char_indices().nth(MAX_QUOTED_MESSAGE) {
            Some((cut, _)) => format!("{}...", &message[..cut]),
            None => message.to_owned(),
        };
        self.policies.insert(
            name.to_owned(),
            PolicyResult::Pending {
                reason: reason.to_owned(),
                message,
            },
        );
    }

    /// The automation's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The latest image of a policy of the automation's namespace.
    pub fn image(&self, policy: &str) -> Option<&ImageRef> {
        match self.policies.get(policy) {
            Some(PolicyResult::Latest(image)) => Some(image),
            _ => None,
        }
    }

    /// The value a setter writes, or why the marker is not applied.
    pub(crate) fn resolve(&self, setter: &str) -> Result<String, (UnmatchedReason, String)> {
        let Some(SetterName {
            namespace,
            policy,
            field,
            suffix,
        }) = marker::split(setter)
        else {
            return Err((
                UnmatchedReason::InvalidMarker,
                format!("setter {setter:?} is not NAMESPACE:POLICY[:tag|:name|:digest]"),
            ));
        };
        if namespace != self.namespace {
            return Err((
                UnmatchedReason::OtherNamespace,
                format!(
                    "policy namespace {namespace:?} is not the automation's namespace {:?}",
                    self.namespace
                ),
            ));
        }
        if let Some(why) = self.invalid.get(policy) {
            return Err((
                UnmatchedReason::InvalidLatestImage,
                format!("skipped: {why}"),
            ));
        }
        let image = match self.policies.get(policy) {
            None => {
                return Err((
                    UnmatchedReason::UnknownPolicy,
                    format!(
                        "no selected ImagePolicy {policy:?} in namespace {namespace:?} \
                         (typo, or excluded by policySelector)"
                    ),
                ));
            }
            Some(PolicyResult::Pending { reason, message }) => {
                let why = match (reason.is_empty(), message.is_empty()) {
                    (true, true) => String::new(),
                    (false, true) => format!(" (reflector: {reason})"),
                    (true, false) => format!(" (reflector: {message})"),
                    (false, false) => format!(" (reflector: {reason}: {message})"),
                };
                return Err((
                    UnmatchedReason::PolicyNotReady,
                    format!(
                        "ImagePolicy {namespace}/{policy} exists but has no latest image yet{why}"
                    ),
                ));
            }
            Some(PolicyResult::Latest(image)) => image,
        };
        match field {
            Some(Field::Image) => Ok(image.to_string()),
            Some(Field::Tag) => Ok(image.tag.clone()),
            Some(Field::Name) => Ok(image.name.clone()),
            Some(Field::Digest) => Ok(image.digest.clone().unwrap_or_default()),
            None => Err((
                UnmatchedReason::UnknownField,
                format!(
                    "unknown setter field {:?}; Flux defines only :tag, :name and :digest",
                    suffix.unwrap_or_default()
                ),
            )),
        }
    }
}

/// A loose form of go-containerregistry's `name.ParseReference(WeakValidation)`, which Flux
/// applies to every policy's latest image before updating.
fn validate_image(image: &ImageRef) -> Result<(), String> {
    let name = image.name.as_str();
    if name.is_empty() {
        return Err("empty repository name".into());
    }
    if name.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err("repository name contains whitespace or '@'".into());
    }
    // The repository path (after an optional registry host) must be lowercase.
    let path = match name.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => name,
    };
    if path.is_empty()
        || !path.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        })
    {
        return Err(format!("invalid repository path {path:?}"));
    }
    let tag = image.tag.as_str();
    if tag.is_empty()
        || tag.len() > 128
        || tag.starts_with(['.', '-'])
        || !tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(format!("invalid tag {tag:?}"));
    }
    if let Some(digest) = image.digest.as_deref().filter(|d| !d.is_empty()) {
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(format!(
                "invalid digest {digest:?} (expected sha256:<64 hex>)"
            ));
        }
    }
    Ok(())
}

/// One value a setter changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub old_value: String,
    pub new_value: String,
    /// The marker's setter name as Flux writes it, e.g. `flux-system:podinfo:tag`.
    pub setter: String,
    /// 1-based line of the changed scalar (not in Flux; for reports).
    pub line: usize,
}

/// The object a change belongs to. Empty fields for non-Kubernetes YAML. Field order gives the
/// ordering Go uses for the struct key (`APIVersion`, `Kind`, `Name`, `Namespace`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectId {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

/// The changes of one object in one file, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectChanges {
    #[serde(flatten)]
    pub id: ObjectId,
    pub changes: Vec<Change>,
}

/// The changes in one file; `path` is relative to the update path, with `/` separators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChanges {
    pub path: String,
    pub objects: Vec<ObjectChanges>,
}

/// Why a marker (or file) was not applied. Flux ignores all of these silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum UnmatchedReason {
    /// The marker names a policy of another namespace.
    OtherNamespace,
    /// No such policy among the selected ones (typo, or excluded by `policySelector`).
    UnknownPolicy,
    /// The policy has no latest image yet.
    PolicyNotReady,
    /// The policy's latest image is not a valid image reference; the policy was skipped.
    InvalidLatestImage,
    /// A suffix other than `:tag`, `:name`, `:digest`.
    UnknownField,
    /// The comment mentions `"$imagepolicy"` but is not a valid marker.
    InvalidMarker,
    /// A valid marker in a place Flux does not read (above a mapping key, after a key, ...).
    NotAttached,
    /// A marker on a scalar we do not rewrite (block scalar, non-string tag, alias).
    UnsupportedScalar,
    /// The file mentions `"$imagepolicy"` but is not valid YAML (or not UTF-8).
    UnparseableFile,
    /// A symlink pointing outside the root; not followed.
    SymlinkOutsideRoot,
}

/// A marker or file that was not applied, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unmatched {
    pub path: String,
    /// 1-based line, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub reason: UnmatchedReason,
    /// The marker's setter name, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setter: Option<String>,
    pub message: String,
}

/// Everything one run of the setters found: files -> objects -> changes, sorted by path, and
/// the markers that were not applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateResult {
    pub files: Vec<FileChanges>,
    pub unmatched: Vec<Unmatched>,
}

impl UpdateResult {
    /// Whether no value changed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Changes per object merged across files (Flux `Result.Objects()`; the same object in two
    /// files gets the changes of both, fix #1042), ordered by object identifier.
    pub fn objects(&self) -> BTreeMap<ObjectId, Vec<Change>> {
        let mut out: BTreeMap<ObjectId, Vec<Change>> = BTreeMap::new();
        for file in &self.files {
            for object in &file.objects {
                out.entry(object.id.clone())
                    .or_default()
                    .extend(object.changes.iter().cloned());
            }
        }
        out
    }

    /// All changes, de-duplicated by (old, new, setter) like Flux's `Result.Changes()`, in
    /// path then document order.
    pub fn changes(&self) -> Vec<Change> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for file in &self.files {
            for object in &file.objects {
                for change in &object.changes {
                    let key = (
                        change.old_value.as_str(),
                        change.new_value.as_str(),
                        change.setter.as_str(),
                    );
                    if seen.insert(key) {
                        out.push(change.clone());
                    }
                }
            }
        }
        out
    }

    /// The number of changed values.
    pub fn change_count(&self) -> usize {
        self.files
            .iter()
            .flat_map(|f| &f.objects)
            .map(|o| o.changes.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setters() -> Setters {
        let mut s = Setters::new("ns");
        s.add(
            "app",
            Some(ImageRef {
                name: "ghcr.io/team/app".into(),
                tag: "1.2.3".into(),
                digest: None,
            }),
        )
        .unwrap();
        s.add("pending", None).unwrap();
        s
    }

    #[test]
    fn resolves_each_field() {
        let s = setters();
        assert_eq!(s.resolve("ns:app").unwrap(), "ghcr.io/team/app:1.2.3");
        assert_eq!(s.resolve("ns:app:tag").unwrap(), "1.2.3");
        assert_eq!(s.resolve("ns:app:name").unwrap(), "ghcr.io/team/app");
        assert_eq!(s.resolve("ns:app:digest").unwrap(), "");
    }

    #[test]
    fn explains_unresolved_setters() {
        let s = setters();
        let reason = |m: &str| s.resolve(m).unwrap_err().0;
        assert_eq!(reason("other:app"), UnmatchedReason::OtherNamespace);
        assert_eq!(reason("ns:typo"), UnmatchedReason::UnknownPolicy);
        assert_eq!(reason("ns:pending"), UnmatchedReason::PolicyNotReady);
        assert_eq!(reason("ns:app:repository"), UnmatchedReason::UnknownField);
        assert_eq!(reason("ns"), UnmatchedReason::InvalidMarker);
        assert_eq!(reason(" ns:app"), UnmatchedReason::OtherNamespace);
    }

    #[test]
    fn rejects_invalid_latest_images() {
        let mut s = Setters::new("ns");
        let bad = |name: &str, tag: &str, digest: Option<&str>| ImageRef {
            name: name.into(),
            tag: tag.into(),
            digest: digest.map(Into::into),
        };
        assert!(s.add("a", Some(bad("Upper/Case", "v1", None))).is_err());
        assert!(s.add("a", Some(bad("app", "bad tag", None))).is_err());
        assert!(
            s.add("a", Some(bad("app", "v1", Some("sha256:abc"))))
                .is_err()
        );
        assert!(
            s.add("a", Some(bad("localhost:5000/app", "v1", None)))
                .is_ok()
        );
        assert!(s.add("a", Some(bad("Registry.IO/app", "v1", None))).is_ok());
    }

    /// One policy with an invalid latest image is skipped and reported; the others still
    /// resolve (before, `from_policies` failed and no policy applied).
    #[test]
    fn an_invalid_latest_image_skips_only_its_policy() {
        let info = |name: &str, image: &str, tag: &str| ImagePolicyInfo {
            namespace: "ns".into(),
            name: name.into(),
            latest_ref: Some(ImageRef {
                name: image.into(),
                tag: tag.into(),
                digest: None,
            }),
            ..ImagePolicyInfo::default()
        };
        let policies = [
            info("good", "reg.io/app", "v2"),
            info("bad", "reg.io/other", "bad tag!"),
        ];
        let s = Setters::from_policies("ns", &policies);
        assert_eq!(s.resolve("ns:good:tag"), Ok("v2".to_string()));
        let (reason, message) = s.resolve("ns:bad").unwrap_err();
        assert_eq!(reason, UnmatchedReason::InvalidLatestImage);
        assert!(
            message.contains("policy ns/bad: invalid latest image reference"),
            "{message}"
        );
        assert_eq!(s.invalid_policies().len(), 1);
        assert!(s.image("bad").is_none());
    }
}
