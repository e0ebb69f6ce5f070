//! A real `docker-registry` (CNCF distribution 2.8) on a free loopback port.
//!
//! Three auth modes, each optionally over TLS:
//! - [`AuthMode::Anonymous`]: no auth;
//! - [`AuthMode::Htpasswd`]: HTTP Basic against a bcrypt htpasswd file;
//! - [`AuthMode::Token`]: the Docker Bearer-token flow, with a token issuer running in this
//!   process that signs RS256 JWTs the registry verifies against the issuer's certificate.
//!
//! Helpers push tags, images and multi-arch indexes with plain HTTP calls (blob upload and
//! manifest PUT), delete tags and list them, always using the mode's auth. With on-disk
//! storage, [`Registry::seed_tags`] writes thousands of tags straight into the storage.

mod client;
mod token;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::process::{Process, free_port, run};
use crate::tls::Certificates;
use crate::tools;

use client::{Client, ClientAuth};
use token::TokenIssuer;

/// Media types the helpers push and accept.
pub mod media_type {
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
}

/// How clients authenticate to the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    #[default]
    Anonymous,
    /// HTTP Basic, checked against a bcrypt htpasswd file.
    Htpasswd,
    /// `WWW-Authenticate: Bearer` challenges answered by our token issuer.
    Token,
}

#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    pub auth: AuthMode,
    /// Serve HTTPS with a certificate from a throwaway CA (see [`Registry::ca_cert`]).
    pub tls: bool,
    /// Keep the registry's storage in files (distribution's `filesystem` driver), in a
    /// fresh directory under this one, instead of in memory: needed by
    /// [`Registry::seed_tags`].
    pub disk_storage: Option<PathBuf>,
    /// The htpasswd or token-issuer user and password; generated when `None`. Lets a test
    /// put a credential someone else issued (e.g. an ECR token from moto) in front of the
    /// registry.
    pub credentials: Option<(String, String)>,
}

impl RegistryOptions {
    pub fn anonymous() -> Self {
        Self {
            auth: AuthMode::Anonymous,
            tls: false,
            disk_storage: None,
            credentials: None,
        }
    }

    pub fn htpasswd() -> Self {
        Self {
            auth: AuthMode::Htpasswd,
            tls: false,
            disk_storage: None,
            credentials: None,
        }
    }

    pub fn token() -> Self {
        Self {
            auth: AuthMode::Token,
            tls: false,
            disk_storage: None,
            credentials: None,
        }
    }

    /// Basic (or token-issuer) credentials of the caller's choosing.
    pub fn with_credentials(mut self, username: &str, password: &str) -> Self {
        self.credentials = Some((username.to_string(), password.to_string()));
        self
    }

    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Storage in files under the system's temporary directory, so [`Registry::seed_tags`]
    /// can write tags straight into it.
    pub fn with_disk_storage(self) -> Self {
        self.with_disk_storage_in(std::env::temp_dir())
    }

    /// Storage in files under `parent` (a tmpfs such as `/dev/shm` makes seeding and
    /// removing hundreds of thousands of tags fast).
    pub fn with_disk_storage_in(mut self, parent: impl Into<PathBuf>) -> Self {
        self.disk_storage = Some(parent.into());
        self
    }
}

/// The Bearer-token `service` (the JWT audience) and `issuer` the registry expects.
pub const TOKEN_SERVICE: &str = "testbed-registry";
const TOKEN_ISSUER: &str = "testbed-token-issuer";
const USERNAME: &str = "testbed";

/// A running registry; stopped on drop (its storage, in memory or in its temporary
/// directory, goes too).
#[derive(Debug)]
pub struct Registry {
    // Field order is drop order: the process stops before its directory goes.
    process: Process,
    token: Option<TokenIssuer>,
    client: Client,
    options: RegistryOptions,
    port: u16,
    credentials: Option<(String, String)>,
    certs: Option<Certificates>,
    dir: tempfile::TempDir,
    /// The filesystem driver's root directory, with [`RegistryOptions::disk_storage`].
    storage: Option<tempfile::TempDir>,
}

impl Registry {
    pub async fn start(options: RegistryOptions) -> Result<Self> {
        let binary = tools::docker_registry()?;
        let dir = tempfile::Builder::new()
            .prefix("testbed-registry-")
            .tempdir()
            .context(|| "docker-registry: creating a temporary directory".into())?;
        let port = free_port()?;
        let credentials = match options.auth {
            AuthMode::Anonymous => None,
            AuthMode::Htpasswd | AuthMode::Token => Some(
                options
                    .credentials
                    .clone()
                    .unwrap_or_else(|| (USERNAME.to_string(), random_password(dir.path()))),
            ),
        };
        let certs = if options.tls {
            Some(Certificates::generate(dir.path())?)
        } else {
            None
        };

        let mut auth_config = String::new();
        let mut token = None;
        let client_auth = match (&options.auth, &credentials) {
            (AuthMode::Htpasswd, Some((user, pass))) => {
                let file = dir.path().join("htpasswd");
                write_htpasswd(&file, user, pass)?;
                auth_config = format!(
                    "auth:\n  htpasswd:\n    realm: testbed\n    path: {}\n",
                    yaml_path(&file)
                );
                ClientAuth::Basic {
                    username: user.clone(),
                    password: pass.clone(),
                }
            }
            (AuthMode::Token, Some((user, pass))) => {
                let issuer =
                    TokenIssuer::start(dir.path(), user, pass, TOKEN_SERVICE, TOKEN_ISSUER)?;
                auth_config = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    issuer.realm(),
                    yaml_path(issuer.cert_path()),
                );
                token = Some(issuer);
                ClientAuth::Token {
                    username: user.clone(),
                    password: pass.clone(),
                }
            }
            _ => ClientAuth::Anonymous,
        };
        let tls_config = match &certs {
            Some(c) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                yaml_path(&c.server_cert),
                yaml_path(&c.server_key)
            ),
            None => String::new(),
        };
        // Distribution's in-memory storage driver by default: on a disk-backed filesystem
        // each tag's link files made pushing 3,000 tags 3-4x slower, and tmpfs may be tiny
        // in containers. The filesystem driver only when tags are to be seeded on disk.
        let storage = match &options.disk_storage {
            Some(parent) => Some(
                tempfile::Builder::new()
                    .prefix("testbed-registry-storage-")
                    .tempdir_in(parent)
                    .context(|| {
                        format!(
                            "docker-registry: creating a storage directory in {}",
                            parent.display()
                        )
                    })?,
            ),
            None => None,
        };
        let storage_driver = match &storage {
            Some(storage) => format!(
                "filesystem:\n    rootdirectory: {}",
                yaml_path(storage.path())
            ),
            None => "inmemory: {}".to_string(),
        };
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  {storage_driver}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: testbed-secret\n{tls_config}\
             {auth_config}",
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)
            .context(|| "docker-registry: writing config.yml".into())?;

        let scheme = if certs.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://127.0.0.1:{port}");
        let ca_pem = match &certs {
            Some(c) => Some(
                std::fs::read(&c.ca_cert)
                    .context(|| format!("docker-registry: reading {}", c.ca_cert.display()))?,
            ),
            None => None,
        };
        let client = Client::new(&base_url, ca_pem.as_deref(), client_auth)?;

        let mut command = Command::new(binary);
        command.arg("serve").arg(&config_path);
        let mut process =
            Process::spawn("docker-registry", command, &dir.path().join("registry.log"))?;
        let http = client.http().clone();
        let ping = format!("{base_url}/v2/");
        process
            .wait_ready(Duration::from_secs(30), || {
                let request = http.get(&ping);
                async move {
                    request
                        .send()
                        .await
                        .is_ok_and(|r| matches!(r.status().as_u16(), 200 | 401))
                }
            })
            .await?;

        Ok(Self {
            process,
            token,
            client,
            options,
            port,
            credentials,
            certs,
            dir,
            storage,
        })
    }

    /// `127.0.0.1:PORT`: what image names (an ImageRepository's `spec.image`) start with.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `HOST/repo`: a full image name.
    pub fn image(&self, repo: &str) -> String {
        format!("{}/{repo}", self.host())
    }

    /// `http(s)://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.client.base_url().to_string()
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// The user name clients must present (htpasswd and token modes).
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(user, _)| user.as_str())
    }

    /// The password clients must present (htpasswd and token modes); random per registry.
    pub fn password(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(_, pass)| pass.as_str())
    }

    /// The CA certificate (PEM) that signed the registry's server certificate, when TLS.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.certs.as_ref().map(|c| c.ca_cert.as_path())
    }

    /// The token issuer's URL (the Bearer challenge's realm), in token mode.
    pub fn token_realm(&self) -> Option<String> {
        self.token.as_ref().map(TokenIssuer::realm)
    }

    /// How many tokens the issuer has handed out (to anyone), for asserting token caching.
    pub fn tokens_issued(&self) -> usize {
        self.token.as_ref().map_or(0, TokenIssuer::issued)
    }

    /// A `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson` value for this host
    /// (`{"auths":{}}` when anonymous).
    pub fn docker_config_json(&self) -> String {
        use base64::Engine as _;
        let mut auths = serde_json::Map::new();
        if let Some((user, pass)) = &self.credentials {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            auths.insert(
                self.host(),
                serde_json::json!({ "username": user, "password": pass, "auth": auth }),
            );
        }
        serde_json::json!({ "auths": auths }).to_string()
    }

    /// A client trusting the registry's CA, without credentials: for raw requests in tests.
    pub fn http_client(&self) -> reqwest::Client {
        self.client.http().clone()
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The temporary directory holding config, credentials, certificates and the log.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Tags one image manifest as every one of `tags` (one manifest PUT per tag) and returns
    /// its digest. The tags share the manifest: deleting any one by digest deletes them all,
    /// so use [`Registry::push_image`] for tags that will be deleted.
    pub async fn push_tags(&self, repo: &str, tags: &[impl AsRef<str>]) -> Result<String> {
        let manifest = self
            .client
            .image_manifest(repo, &serde_json::json!({ "repo": repo }))
            .await?;
        let tags: Vec<String> = tags.iter().map(|t| t.as_ref().to_string()).collect();
        self.client
            .put_manifest_many(repo, &tags, media_type::DOCKER_MANIFEST, manifest)
            .await
    }

    /// Pushes a manifest unique to `repo:tag` and returns its digest.
    pub async fn push_image(&self, repo: &str, tag: &str) -> Result<String> {
        let manifest = self
            .client
            .image_manifest(repo, &serde_json::json!({ "repo": repo, "tag": tag }))
            .await?;
        self.client
            .put_manifest(repo, tag, media_type::DOCKER_MANIFEST, manifest)
            .await
    }

    /// Pushes an OCI image index over one OCI manifest per `(os, architecture)` and tags it;
    /// returns the index digest.
    pub async fn push_index(
        &self,
        repo: &str,
        tag: &str,
        platforms: &[(&str, &str)],
    ) -> Result<String> {
        let mut entries = Vec::new();
        for (os, arch) in platforms {
            let manifest = self.client.oci_manifest(repo, tag, os, arch).await?;
            let size = manifest.len();
            let digest = sha256_digest(&manifest);
            self.client
                .put_manifest(repo, &digest, media_type::OCI_MANIFEST, manifest)
                .await?;
            entries.push(serde_json::json!({
                "mediaType": media_type::OCI_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": { "os": os, "architecture": arch },
            }));
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": entries,
        });
        self.client
            .put_manifest(repo, tag, media_type::OCI_INDEX, json_bytes(&index))
            .await
    }

    /// Tags one image manifest of `repo` as every one of `tags`, fast: the first tag is
    /// pushed through the API (blobs, manifest, and the link files the registry writes for
    /// a tag: `_manifests/tags/<tag>/current/link` and `.../index/sha256/<hex>/link`, each
    /// holding the digest); every other tag is written straight into the registry's storage
    /// as a directory `_manifests/tags/<tag>` whose `current` is a symbolic link to the first
    /// tag's `current` (so `current/link` holds the same digest). The registry lists tags by
    /// that directory's names, resolves a tag and finds the tags of a deleted manifest by
    /// reading `current/link`, and removes a tag's directory on delete: seeded tags behave
    /// like tags pushed with [`Registry::push_tags`]. Two file-system entries per tag instead
    /// of a validated manifest PUT: 500,000 tags take seconds on tmpfs. Needs
    /// [`RegistryOptions::with_disk_storage`]; tags must be valid and new.
    pub async fn seed_tags(&self, repo: &str, tags: &[impl AsRef<str>]) -> Result<String> {
        let fail = |message: String| Error::Command {
            context: format!("docker-registry: seeding tags of {repo}"),
            message,
        };
        let Some(storage) = &self.storage else {
            return Err(fail(
                "the registry keeps its storage in memory; start it with \
                 RegistryOptions::with_disk_storage()"
                    .into(),
            ));
        };
        let Some((first, rest)) = tags.split_first() else {
            return Err(fail("no tags given".into()));
        };
        let first = first.as_ref();
        if let Some(bad) = tags.iter().map(AsRef::as_ref).find(|t| !valid_tag(t)) {
            return Err(fail(format!("invalid tag name {bad:?}")));
        }
        let digest = self.push_tags(repo, &[first]).await?;
        let tags_dir = storage
            .path()
            .join("docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags");
        let link_file = tags_dir.join(first).join("current/link");
        let linked = std::fs::read_to_string(&link_file)
            .context(|| format!("docker-registry: reading {}", link_file.display()))?;
        if linked.trim() != digest {
            return Err(fail(format!(
                "{} holds {linked:?}, not the pushed {digest}: unexpected storage layout",
                link_file.display()
            )));
        }
        let target = Path::new("..").join(first).join("current");
        let rest: Vec<String> = rest.iter().map(|t| t.as_ref().to_string()).collect();
        // Thousands of file-system calls: off the async workers.
        tokio::task::spawn_blocking(move || -> Result<()> {
            for tag in rest {
                let entry = tags_dir.join(tag);
                std::fs::create_dir(&entry)
                    .context(|| format!("docker-registry: creating {}", entry.display()))?;
                // Relative, so the storage directory could move.
                let current = entry.join("current");
                std::os::unix::fs::symlink(&target, &current)
                    .context(|| format!("docker-registry: creating {}", current.display()))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| fail(format!("the seeding task failed: {e}")))??;
        Ok(digest)
    }

    /// Makes `alias` a second name of the existing repository `existing`, sharing its
    /// storage: `repositories/<alias>` becomes a symbolic link to `repositories/<existing>`.
    /// distribution's filesystem driver follows it (tags list, manifest by tag, blobs), so
    /// the alias answers exactly as `existing` does, with one file-system entry instead of
    /// a copy of its tags (5,000 repositories of 1,000 seeded tags would need 10 million
    /// entries; `/dev/shm` allows about 3 million). Needs
    /// [`RegistryOptions::with_disk_storage`]; `alias` must be new.
    pub fn alias_repository(&self, existing: &str, alias: &str) -> Result<()> {
        let fail = |message: String| Error::Command {
            context: format!("docker-registry: aliasing {existing} as {alias}"),
            message,
        };
        let Some(storage) = &self.storage else {
            return Err(fail(
                "the registry keeps its storage in memory; start it with \
                 RegistryOptions::with_disk_storage()"
                    .into(),
            ));
        };
        if !valid_repository(existing) || !valid_repository(alias) {
            return Err(fail("invalid repository name".into()));
        }
        let repositories = storage.path().join("docker/registry/v2/repositories");
        let target = repositories.join(existing);
        if !target.join("_manifests").is_dir() {
            return Err(fail(format!("{} holds no manifests", target.display())));
        }
        let link = repositories.join(alias);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)
                .context(|| format!("docker-registry: creating {}", parent.display()))?;
        }
        std::os::unix::fs::symlink(&target, &link)
            .context(|| format!("docker-registry: creating {}", link.display()))?;
        Ok(())
    }

    /// Deletes the manifest `tag` points to (and with it every tag sharing that manifest).
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        let digest = self.manifest_digest(repo, tag).await?;
        self.client.delete_manifest(repo, &digest).await
    }

    /// Every tag of `repo`, following `Link` pagination.
    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        self.client.list_tags(repo).await
    }

    /// The digest `repo:tag` resolves to (a HEAD accepting manifests, lists and indexes).
    pub async fn manifest_digest(&self, repo: &str, tag: &str) -> Result<String> {
        self.client.manifest_digest(repo, tag).await
    }
}

pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub(crate) fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// The distribution spec's tag grammar, `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`: also keeps a
/// seeded tag from naming a path outside its directory.
fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A repository name of lower-case path components (`[a-z0-9._-]`, not starting with a
/// dot) joined by `/`: also keeps an alias from naming a path outside the storage.
fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        })
}

/// A double-quoted YAML scalar (JSON strings are valid YAML).
fn yaml_path(path: &Path) -> String {
    serde_json::Value::String(path.display().to_string()).to_string()
}

/// Unique per registry so credentials of one never work against another.
fn random_password(salt: &Path) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!("{}:{}:{nanos}", salt.display(), std::process::id());
    hex::encode(&Sha256::digest(seed.as_bytes())[..12])
}

fn write_htpasswd(file: &Path, user: &str, pass: &str) -> Result<()> {
    // Cost 4 (the minimum): the registry checks bcrypt on every request.
    let output = run(
        "docker-registry: hashing the htpasswd password",
        Command::new(tools::htpasswd()?).args(["-B", "-C", "4", "-b", "-n", user, pass]),
    )?;
    std::fs::write(file, &output.stdout)
        .context(|| format!("docker-registry: writing {}", file.display()))
}
