//! Registry credentials from image pull secrets, matched to a registry the way the kubelet
//! (and ggcr's Kubernetes keychain, which Flux uses) does:
//! - a key is parsed as a URL (`https://` added when it has no scheme); a `/v1/` or `/v2/`
//!   path counts as host-only, so `https://index.docker.io/v1/` is `index.docker.io`;
//! - the key matches an image `host/path` when the port is the same, the host has the same
//!   number of dot-separated labels and each label glob-matches (`*.example.com`), and the
//!   key's path is a prefix of the image's path;
//! - keys are tried in reverse lexical order (longer, more specific keys first) and, for the
//!   same key, secrets in the order given (secretRef first, then the service account's
//!   imagePullSecrets); the first match wins;
//! - `auth` (base64 `user:pass`) overrides `username`/`password`.
//!
//! Deliberate difference: a key of plain `docker.io` also matches Docker Hub
//! (`index.docker.io`); Flux ignores it and silently scans anonymously.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

use crate::reference::{DOCKER_HUB, DOCKER_HUB_ALIAS, ImageReference};

/// `type` of a Secret holding a `config.json` (`.dockerconfigjson` key).
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// `type` of a Secret holding a legacy `.dockercfg` (the `auths` map itself).
pub const DOCKER_CFG_TYPE: &str = "kubernetes.io/dockercfg";
pub const DOCKER_CFG_KEY: &str = ".dockercfg";

/// A Secret's name, type and decoded data: what the controller reads from the API.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData {
    pub name: String,
    pub type_: String,
    pub data: BTreeMap<String, Vec<u8>>,
}

impl SecretData {
    pub fn new(name: impl Into<String>, type_: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            type_: type_.into(),
            data: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }

    /// A `kubernetes.io/dockerconfigjson` Secret with this `.dockerconfigjson`.
    pub fn docker_config_json(name: impl Into<String>, json: impl Into<Vec<u8>>) -> Self {
        Self::new(name, DOCKER_CONFIG_JSON_TYPE).with(DOCKER_CONFIG_JSON_KEY, json)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&[u8]> {
        self.data.get(key).map(Vec::as_slice)
    }
}

impl fmt::Debug for SecretData {
    // Values are secret: show the keys only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretData")
            .field("name", &self.name)
            .field("type", &self.type_)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A username and password for Basic auth or a token request.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A pull secret that cannot be used. Messages name the secret and the registry key,
/// never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("secret '{secret}': {key} is not valid docker config JSON: {reason}")]
    InvalidJson {
        secret: String,
        key: &'static str,
        reason: String,
    },
    #[error(
        "secret '{secret}': the auth field for registry '{registry}' must be base64(username:password)"
    )]
    InvalidAuthField { secret: String, registry: String },
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, DockerConfigEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

/// Credentials by registry key, from pull secrets.
#[derive(Debug, Clone, Default)]
pub struct Keychain {
    /// `(key, credentials)`, sorted by key descending; for one key, in secret order.
    entries: Vec<(String, Option<Credentials>)>,
}

impl Keychain {
    /// Reads `kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg` Secrets, in
    /// order; other types, and typed Secrets without their key, are ignored as Flux does.
    pub fn from_pull_secrets(secrets: &[SecretData]) -> Result<Self, CredentialsError> {
        let mut entries = Vec::new();
        for secret in secrets {
            let auths = match secret.type_.as_str() {
                DOCKER_CONFIG_JSON_TYPE => match secret.get(DOCKER_CONFIG_JSON_KEY) {
                    Some(bytes) => {
                        serde_json::from_slice::<DockerConfigJson>(bytes)
                            .map_err(|e| invalid_json(secret, DOCKER_CONFIG_JSON_KEY, &e))?
                            .auths
                    }
                    None => continue,
                },
                DOCKER_CFG_TYPE => match secret.get(DOCKER_CFG_KEY) {
                    Some(bytes) => serde_json::from_slice(bytes)
                        .map_err(|e| invalid_json(secret, DOCKER_CFG_KEY, &e))?,
                    None => continue,
                },
                _ => continue,
            };
            for (registry, entry) in auths {
                let credentials = entry_credentials(secret, &registry, entry)?;
                if let Some(key) = normalize_key(&registry) {
                    entries.push((key, credentials));
                }
            }
        }
        // Stable: for equal keys the secret order is kept.
        entries.sort_by(|(a, _), (b, _)| b.cmp(a));
        Ok(Self { entries })
    }

    /// The credentials for `image`, or `None` (anonymous) when no key matches.
    pub fn resolve(&self, image: &ImageReference) -> Option<&Credentials> {
        self.resolve_target(&image.canonical_name())
    }

    /// As [`Keychain::resolve`], for a schemeless `host/path` target.
    pub fn resolve_target(&self, target: &str) -> Option<&Credentials> {
        self.entries
            .iter()
            .find(|(key, _)| urls_match(key, target))
            .and_then(|(_, credentials)| credentials.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn invalid_json(secret: &SecretData, key: &'static str, e: &serde_json::Error) -> CredentialsError {
    // serde_json's message can quote the offending value (`invalid type: string "hunter2",
    // expected struct ...`), which may be a password: keep only the kind and the position.
    let kind = match e.classify() {
        serde_json::error::Category::Syntax => "malformed JSON",
        serde_json::error::Category::Eof => "unexpected end of the document",
        serde_json::error::Category::Data => "a value of the wrong type or shape",
        serde_json::error::Category::Io => "unreadable data",
    };
    CredentialsError::InvalidJson {
        secret: secret.name.clone(),
        key,
        reason: format!("{kind} at line {} column {}", e.line(), e.column()),
    }
}

fn entry_credentials(
    secret: &SecretData,
    registry: &str,
    entry: DockerConfigEntry,
) -> Result<Option<Credentials>, CredentialsError> {
    let invalid = || CredentialsError::InvalidAuthField {
        secret: secret.name.clone(),
        registry: registry.to_string(),
    };
    let (username, password) = match entry.auth.filter(|a| !a.is_empty()) {
        Some(auth) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| invalid())?;
            let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
            let (user, pass) = decoded.split_once(':').ok_or_else(invalid)?;
            (user.to_string(), pass.to_string())
        }
        None => (
            entry.username.unwrap_or_default(),
            entry.password.unwrap_or_default(),
        ),
    };
    if username.is_empty() && password.is_empty() {
        // An empty entry matches but means anonymous.
        return Ok(None);
    }
    Ok(Some(Credentials { username, password }))
}

/// The kubelet's key: `host[/path]` without scheme, `/v1/` and `/v2/` meaning host only.
fn normalize_key(registry: &str) -> Option<String> {
    let without_scheme = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let (host, path) = split_host_path(without_scheme);
    if host.is_empty() {
        return None;
    }
    let mut host = host.to_ascii_lowercase();
    if host == DOCKER_HUB_ALIAS {
        host = DOCKER_HUB.to_string();
    }
    let path = if path.starts_with("/v1/") || path.starts_with("/v2/") {
        &path[3..]
    } else {
        path
    };
    if path.is_empty() || path == "/" {
        Some(host)
    } else {
        Some(format!("{host}{path}"))
    }
}

/// `host` and `/path` (path empty when absent); query and fragment dropped.
fn split_host_path(s: &str) -> (&str, &str) {
    let s = s.split(['?', '#']).next().unwrap_or(s);
    match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Go's `net.SplitHostPort`, leniently: the port is empty when absent.
fn split_port(authority: &str) -> (&str, &str) {
    if let Some(rest) = authority.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (host, after.strip_prefix(':').unwrap_or(""));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port),
        _ => (authority, ""),
    }
}

/// The kubelet's `URLsMatch` on schemeless URLs: `glob` is a keychain key.
fn urls_match(glob: &str, target: &str) -> bool {
    let (glob_authority, glob_path) = split_host_path(glob);
    let (target_authority, target_path) = split_host_path(target);
    let (glob_host, glob_port) = split_port(glob_authority);
    let (target_host, target_port) = split_port(target_authority);
    if glob_port != target_port || !target_path.starts_with(glob_path) {
        return false;
    }
    let target_host = target_host.to_ascii_lowercase();
    let glob_labels: Vec<&str> = glob_host.split('.').collect();
    let target_labels: Vec<&str> = target_host.split('.').collect();
    glob_labels.len() == target_labels.len()
        && glob_labels
            .iter()
            .zip(&target_labels)
            .all(|(g, t)| glob_match(g.as_bytes(), t.as_bytes()))
}

/// `filepath.Match` for one host label: `*` and `?` (a label has no separators).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests;
