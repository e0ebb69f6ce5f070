//! Credentials from a Flux GitRepository secret, and how they reach gix and the git CLI
//! without ever appearing in argv, logs or error messages.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use kube_support::redact::Secrets;

use super::error::GitError;
use super::provider;
use api_types::GitRepositorySpec;
use kube_support::redact::percent_decode;

/// A secret value; `Debug` never prints it (the one newtype of both crates).
pub use cloud_identity::Secret;

/// How to authenticate to a git remote, read from a GitRepository secret the way Flux
/// reads it (source-controller's `git.asc`-free keys):
///
/// | URL | keys |
/// |---|---|
/// | `ssh://` (or scp-like) | `identity` (required), `known_hosts` (required), `password` (key passphrase) |
/// | `http(s)://` | `username` + `password`, or `bearerToken`; `ca.crt`; `tls.crt` + `tls.key` (mTLS) |
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GitAuth {
    pub(crate) http: HttpAuth,
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) client_cert: Option<(Vec<u8>, Secret)>,
    pub(crate) ssh: Option<SshAuth>,
    pub(crate) proxy: Option<ProxyAuth>,
}

/// An HTTP(S) or SOCKS5 proxy from a GitRepository's `proxySecretRef`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ProxyAuth {
    /// `scheme://host[:port]`, without credentials.
    pub(crate) address: String,
    pub(crate) credentials: Option<(String, Secret)>,
}

impl fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyAuth")
            .field("address", &self.address)
            .field("credentials", &self.credentials.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ProxyAuth {
    /// The proxy URL with its credentials (percent-encoded) in the userinfo, for git's
    /// `http.proxy`: a secret, passed through the environment only.
    pub(crate) fn url_with_credentials(&self) -> Secret {
        let Some((user, password)) = &self.credentials else {
            return Secret::new(self.address.clone());
        };
        match reqwest::Url::parse(&self.address) {
            Ok(mut url) => {
                let _ = url.set_username(user);
                let _ = url.set_password(Some(password.expose()));
                Secret::new(url.to_string())
            }
            Err(_) => Secret::new(self.address.clone()),
        }
    }
}

#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) enum HttpAuth {
    #[default]
    None,
    Basic {
        username: String,
        password: Secret,
    },
    Bearer(Secret),
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SshAuth {
    pub(crate) identity: Secret,
    pub(crate) passphrase: Option<Secret>,
    pub(crate) known_hosts: String,
}

impl fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let http = match &self.http {
            HttpAuth::None => "none",
            HttpAuth::Basic { .. } => "basic(***)",
            HttpAuth::Bearer(_) => "bearer(***)",
        };
        f.debug_struct("GitAuth")
            .field("http", &http)
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .field("ssh", &self.ssh.as_ref().map(|_| "identity(***)"))
            .field("proxy", &self.proxy.as_ref().map(|p| p.address.as_str()))
            .finish()
    }
}

/// True for `ssh://` and scp-like `user@host:path` URLs.
pub(crate) fn is_ssh_url(url: &str) -> bool {
    if let Some((scheme, _)) = url.split_once("://") {
        return scheme == "ssh" || scheme == "git+ssh" || scheme == "ssh+git";
    }
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    }
}

impl GitAuth {
    /// No credentials (public HTTP remotes).
    pub fn none() -> Self {
        Self::default()
    }

    /// From the secret's `data` for a remote at `url`. SSH remotes need a secret:
    /// `known_hosts` is mandatory, there is no fallback to the system's known hosts.
    pub fn from_secret(
        url: &str,
        data: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<Self, GitError> {
        let text = |key: &str| -> Result<Option<String>, GitError> {
            match data.and_then(|d| d.get(key)) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.clone())
                    .map(Some)
                    .map_err(|_| GitError::InvalidSecret(format!("key '{key}' is not UTF-8"))),
            }
        };
        if is_ssh_url(url) {
            if data.is_none() {
                return Err(GitError::InvalidSecret(
                    "an SSH URL needs a secret with 'identity' and 'known_hosts'".into(),
                ));
            }
            let identity = text("identity")?
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| {
                    GitError::InvalidSecret("secret does not contain an 'identity' key".into())
                })?;
            let known_hosts = text("known_hosts")?
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| {
                    GitError::InvalidSecret(
                        "secret does not contain a 'known_hosts' key: SSH host keys must be pinned"
                            .into(),
                    )
                })?;
            let passphrase = text("password")?.filter(|s| !s.is_empty()).map(Secret::new);
            return Ok(Self {
                ssh: Some(SshAuth {
                    identity: Secret::new(normalise_pem(&identity)),
                    passphrase,
                    known_hosts,
                }),
                ..Self::default()
            });
        }
        let username = text("username")?.filter(|s| !s.is_empty());
        let password = text("password")?.filter(|s| !s.is_empty());
        let token = text("bearerToken")?.filter(|s| !s.is_empty());
        let http = match (username, password, token) {
            (Some(_) | None, Some(_), Some(_)) | (Some(_), None, Some(_)) => {
                return Err(GitError::InvalidSecret(
                    "basic auth ('username'/'password') and 'bearerToken' cannot both be set"
                        .into(),
                ));
            }
            (None, Some(_), None) => {
                return Err(GitError::InvalidSecret(
                    "'password' is set but 'username' is not".into(),
                ));
            }
            (Some(username), password, None) => HttpAuth::Basic {
                username,
                password: Secret::new(password.unwrap_or_default()),
            },
            (None, None, Some(token)) => HttpAuth::Bearer(Secret::new(token)),
            (None, None, None) => HttpAuth::None,
        };
        let ca_pem = data
            .and_then(|d| d.get("ca.crt").or_else(|| d.get("caFile")))
            .cloned();
        let client_cert = match (text("tls.crt")?, text("tls.key")?) {
            (Some(cert), Some(key)) => Some((cert.into_bytes(), Secret::new(key))),
            (None, None) => None,
            _ => {
                return Err(GitError::InvalidSecret(
                    "'tls.crt' and 'tls.key' must be set together".into(),
                ));
            }
        };
        Ok(Self {
            http,
            ca_pem,
            client_cert,
            ssh: None,
            proxy: None,
        })
    }

    /// Adds the proxy of a `proxySecretRef` Secret (Flux's keys: `address`, required, an
    /// `http`, `https`, `socks5` or `socks5h` URL; optional `username` and `password`). It applies to HTTP(S)
    /// remotes, to gix's fetches and the git CLI's push alike, and replaces any proxy
    /// from the environment.
    pub fn with_proxy_secret(
        mut self,
        url: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, GitError> {
        let text = |key: &str| -> Result<Option<String>, GitError> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.clone())
                    .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
                    .map_err(|_| {
                        GitError::InvalidSecret(format!("proxy secret key '{key}' is not UTF-8"))
                    }),
            }
        };
        let Some(address) = text("address")? else {
            return Err(GitError::InvalidSecret(
                "proxy secret does not contain an 'address' key".into(),
            ));
        };
        if address.len() > 2048 {
            return Err(GitError::InvalidSecret(
                "proxy 'address' is longer than 2048 characters".into(),
            ));
        }
        let mut parsed = reqwest::Url::parse(&address)
            .map_err(|_| GitError::InvalidSecret("proxy 'address' is not a valid URL".into()))?;
        match parsed.scheme() {
            // socks5 resolves the Git host locally, socks5h through the proxy; gix's
            // reqwest and git's libcurl both speak them, with RFC 1929 credentials.
            "http" | "https" | "socks5" | "socks5h" => {}
            other => {
                return Err(GitError::InvalidSecret(format!(
                    "proxy 'address' has the unsupported scheme {other:?} (http, https, socks5 or socks5h)"
                )));
            }
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(GitError::InvalidSecret(
                "proxy 'address' has no host".into(),
            ));
        }
        if is_ssh_url(url) {
            return Err(GitError::Unsupported(
                "proxySecretRef is supported for HTTP(S) Git URLs only".into(),
            ));
        }
        // Credentials in the address itself count when the keys are absent.
        let in_url = (!parsed.username().is_empty()).then(|| {
            (
                percent_decode(parsed.username()),
                Secret::new(percent_decode(parsed.password().unwrap_or_default())),
            )
        });
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let credentials = match (text("username")?, text("password")?) {
            (Some(user), password) => Some((user, Secret::new(password.unwrap_or_default()))),
            (None, Some(_)) => {
                return Err(GitError::InvalidSecret(
                    "proxy secret has a 'password' but no 'username'".into(),
                ));
            }
            (None, None) => in_url,
        };
        self.proxy = Some(ProxyAuth {
            address: parsed.as_str().trim_end_matches('/').to_string(),
            credentials,
        });
        Ok(self)
    }

    /// Applies the GitRepository's `spec.provider` ([`super::provider`]): checks it against
    /// the `secretRef`'s data, then for `github` replaces the HTTP credentials with the
    /// App's installation token (Basic `x-access-token`), as Flux's provider credentials
    /// overwrite the Secret's. Call after [`Self::with_proxy_secret`]: the token calls use
    /// the GitRepository's proxy. `namespace` is the GitRepository's; `context` names the
    /// automation (whose namespace holds the ServiceAccount of object-level identity).
    pub async fn with_provider(
        mut self,
        spec: &GitRepositorySpec,
        namespace: &str,
        secret: Option<&BTreeMap<String, Vec<u8>>>,
        context: &provider::ProviderContext<'_>,
    ) -> Result<Self, GitError> {
        let settings = provider::settings();
        let plan = provider::plan(
            spec,
            namespace,
            secret,
            settings.object_level_workload_identity,
            settings.default_service_account.as_deref(),
        )?;
        if let Some(http) = provider::fetch(&plan, self.proxy.as_ref(), context).await? {
            self.http = http;
        }
        Ok(self)
    }

    /// The `Authorization` header value, if any.
    pub(crate) fn authorization(&self) -> Option<Secret> {
        match &self.http {
            HttpAuth::None => None,
            HttpAuth::Basic { username, password } => {
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()));
                Some(Secret::new(format!("Basic {token}")))
            }
            HttpAuth::Bearer(token) => Some(Secret::new(format!("Bearer {}", token.expose()))),
        }
    }

    /// Every credential this auth sends, for [`Secrets::scrub`]: the only way text from
    /// gix, git, ssh or the remote reaches a message. `url` is the remote's (credentials
    /// in its userinfo count). Without a `proxySecretRef`, the environment's proxy URLs
    /// are used, so their credentials count too.
    pub(crate) fn secrets(&self, url: &str) -> Secrets {
        let mut secrets = Secrets::new().with_url(url);
        match &self.http {
            HttpAuth::None => {}
            HttpAuth::Basic { username, password } => {
                secrets = secrets.with_basic(username, password.expose());
            }
            HttpAuth::Bearer(token) => secrets = secrets.with_token(token.expose()),
        }
        if let Some(SshAuth {
            passphrase: Some(passphrase),
            ..
        }) = &self.ssh
        {
            secrets = secrets.with_secret(passphrase.expose());
        }
        match &self.proxy {
            Some(ProxyAuth {
                credentials: Some((user, password)),
                ..
            }) => secrets = secrets.with_basic(user, password.expose()),
            Some(_) => {}
            None => {
                for key in PROXY_ENV {
                    if let Some(value) = std::env::var_os(key) {
                        secrets = secrets.with_url(&value.to_string_lossy());
                    }
                }
            }
        }
        secrets
    }
}

/// The proxy settings of the process's environment, which gix and git honour when the
/// GitRepository names no proxy of its own.
const PROXY_ENV: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Secrets pasted from YAML often lose the final newline; OpenSSH insists on it.
fn normalise_pem(text: &str) -> String {
    let mut text = text.replace("\r\n", "\n");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Credentials written to a private temporary directory (0700, files 0600) for one
/// operation: the SSH key (decrypted when it has a passphrase), known_hosts, CA and
/// client certificates. Removed on drop.
#[derive(Debug)]
pub(crate) struct CredFiles {
    dir: tempfile::TempDir,
    pub(crate) ssh_key: Option<PathBuf>,
    pub(crate) known_hosts: Option<PathBuf>,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
    pub(crate) authorization: Option<Secret>,
    pub(crate) proxy: Option<ProxyAuth>,
    pub(crate) timeout: Duration,
}

pub(crate) fn write_private(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> GitError + '_ {
    move |e| GitError::Git(format!("{what}: {e}"))
}

/// A script that prints the environment variable `IUA_ASKPASS_VALUE`: hands a
/// passphrase to `ssh-keygen` without argv.
pub(crate) fn write_askpass(dir: &Path) -> Result<PathBuf, GitError> {
    let path = dir.join("askpass.sh");
    write_private(
        &path,
        b"#!/bin/sh\nprintf '%s\\n' \"$IUA_ASKPASS_VALUE\"\n",
        0o700,
    )
    .map_err(io_err("writing askpass helper"))?;
    Ok(path)
}

/// Writes `key` to a 0600 file in `dir`; with a passphrase, decrypts it in place with
/// `ssh-keygen -p` (passphrase through an askpass helper) so ssh can run in batch mode.
pub(crate) fn write_ssh_key(
    dir: &Path,
    name: &str,
    key: &Secret,
    passphrase: Option<&Secret>,
) -> Result<PathBuf, GitError> {
    let path = dir.join(name);
    write_private(&path, key.expose().as_bytes(), 0o600).map_err(io_err("writing SSH key"))?;
    if let Some(passphrase) = passphrase {
        let askpass = write_askpass(dir)?;
        let out = Command::new("ssh-keygen")
            .args(["-q", "-p", "-N", "", "-f"])
            .arg(&path)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .env("IUA_ASKPASS_VALUE", passphrase.expose())
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(io_err("running ssh-keygen"))?;
        if !out.status.success() {
            return Err(GitError::InvalidSecret(
                "could not decrypt the SSH private key with the given 'password'".into(),
            ));
        }
    }
    Ok(path)
}

impl CredFiles {
    pub(crate) fn new(auth: &GitAuth, timeout: Duration) -> Result<Self, GitError> {
        let dir = tempfile::Builder::new()
            .prefix("iua-cred-")
            .tempdir()
            .map_err(io_err("creating a credentials directory"))?;
        let mut files = Self {
            ssh_key: None,
            known_hosts: None,
            ca: None,
            client_cert: None,
            authorization: auth.authorization(),
            proxy: auth.proxy.clone(),
            timeout,
            dir,
        };
        let d = files.dir.path().to_path_buf();
        if let Some(ssh) = &auth.ssh {
            files.ssh_key = Some(write_ssh_key(
                &d,
                "identity",
                &ssh.identity,
                ssh.passphrase.as_ref(),
            )?);
            let kh = d.join("known_hosts");
            write_private(&kh, ssh.known_hosts.as_bytes(), 0o600)
                .map_err(io_err("writing known_hosts"))?;
            files.known_hosts = Some(kh);
        }
        if let Some(ca) = &auth.ca_pem {
            let path = d.join("ca.crt");
            write_private(&path, ca, 0o600).map_err(io_err("writing ca.crt"))?;
            files.ca = Some(path);
        }
        if let Some((cert, key)) = &auth.client_cert {
            let (c, k) = (d.join("tls.crt"), d.join("tls.key"));
            write_private(&c, cert, 0o600).map_err(io_err("writing tls.crt"))?;
            write_private(&k, key.expose().as_bytes(), 0o600).map_err(io_err("writing tls.key"))?;
            files.client_cert = Some((c, k));
        }
        Ok(files)
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the ssh started by gix writes its stderr (gix itself drops most of it).
    pub(crate) fn ssh_stderr(&self) -> PathBuf {
        self.dir.path().join("ssh-stderr")
    }

    /// The ssh command line: pinned host keys, only our key, never prompting.
    pub(crate) fn ssh_command(&self, stderr_to: Option<&Path>) -> Option<String> {
        let (key, kh) = (self.ssh_key.as_ref()?, self.known_hosts.as_ref()?);
        let secs = self.timeout.as_secs().clamp(1, 3600);
        let mut cmd = format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none \
             -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
             -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout={secs} \
             -o ServerAliveInterval=15 -o LogLevel=ERROR",
            shell_quote(&key.display().to_string()),
            shell_quote(&kh.display().to_string()),
        );
        if let Some(file) = stderr_to {
            cmd.push_str(&format!(" 2>>{}", shell_quote(&file.display().to_string())));
        }
        Some(cmd)
    }

    /// Environment for the git CLI: isolated configuration, no prompts, C locale, and
    /// the credentials as `http.extraHeader`/TLS files through `GIT_CONFIG_*` or as
    /// `GIT_SSH_COMMAND`.
    pub(crate) fn git_env(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        let mut set = |k: &str, v: &OsString| env.push((k.into(), v.clone()));
        set(
            "PATH",
            &std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        );
        set("HOME", &self.dir().as_os_str().to_owned());
        set("GIT_CONFIG_NOSYSTEM", &"1".into());
        set("GIT_CONFIG_GLOBAL", &"/dev/null".into());
        set("GIT_TERMINAL_PROMPT", &"0".into());
        set("GIT_ASKPASS", &"/bin/false".into());
        set("SSH_ASKPASS", &"/bin/false".into());
        set("LC_ALL", &"C".into());
        set("LANG", &"C".into());
        if self.proxy.is_none() {
            // Like gix's HTTP client, honour the process's proxy settings unless the
            // GitRepository names its own proxy.
            for key in PROXY_ENV.iter().chain(&["NO_PROXY", "no_proxy"]) {
                if let Some(value) = std::env::var_os(key) {
                    set(key, &value);
                }
            }
        }
        let mut config: Vec<(String, OsString)> = vec![
            ("credential.helper".into(), "".into()),
            ("core.hooksPath".into(), "/dev/null".into()),
            ("http.lowSpeedLimit".into(), "1000".into()),
            (
                "http.lowSpeedTime".into(),
                self.timeout.as_secs().clamp(1, 3600).to_string().into(),
            ),
        ];
        if let Some(auth) = &self.authorization {
            config.push((
                "http.extraHeader".into(),
                format!("Authorization: {}", auth.expose()).into(),
            ));
        }
        if let Some(ca) = &self.ca {
            config.push(("http.sslCAInfo".into(), ca.as_os_str().to_owned()));
        }
        if let Some((cert, key)) = &self.client_cert {
            config.push(("http.sslCert".into(), cert.as_os_str().to_owned()));
            config.push(("http.sslKey".into(), key.as_os_str().to_owned()));
        }
        if let Some(proxy) = &self.proxy {
            config.push((
                "http.proxy".into(),
                proxy.url_with_credentials().expose().into(),
            ));
            config.push(("http.proxyAuthMethod".into(), "basic".into()));
        }
        env.push(("GIT_CONFIG_COUNT".into(), config.len().to_string().into()));
        for (i, (k, v)) in config.into_iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}").into(), k.into()));
            env.push((format!("GIT_CONFIG_VALUE_{i}").into(), v));
        }
        if let Some(ssh) = self.ssh_command(None) {
            env.push(("GIT_SSH_COMMAND".into(), ssh.into()));
            env.push(("GIT_SSH_VARIANT".into(), "ssh".into()));
        }
        env
    }
}

/// Quotes for a POSIX shell (`core.sshCommand` runs through one).
pub(crate) fn shell_quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:@+,".contains(&b))
    {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests;
