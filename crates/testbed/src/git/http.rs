//! Smart HTTP: lighttpd running `git http-backend` as CGI, behind basic auth.

use crate::leaks::percent_encode;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use tempfile::TempDir;

use super::{BareRepos, random_hex};
use crate::error::{Error, IoContext, Result};
use crate::process::{Process, free_port, port_open, run};
use crate::tls::Certificates;
use crate::tools;

/// The verified lighttpd configuration, with `@PLACEHOLDER@`s (see its header).
const CONFIG_TEMPLATE: &str = include_str!("../../../../e2e/templates/lighttpd-git.conf");

/// How [`GitHttpServer::start`] sets up.
#[derive(Debug, Clone, Default)]
pub struct GitHttpServerOptions {
    /// Basic-auth user; generated when `None`.
    pub username: Option<String>,
    /// Basic-auth password; generated when `None`.
    pub password: Option<String>,
    /// Repositories to serve; a new, empty root when `None`.
    pub repos: Option<BareRepos>,
    /// Serve HTTPS with this CA's server certificate (lighttpd's `mod_openssl`, Debian
    /// package `lighttpd-mod-openssl`); plain HTTP when `None`.
    pub tls: Option<Certificates>,
}

/// lighttpd + `git http-backend` on 127.0.0.1, every request behind basic auth, pushes
/// allowed, protocol v2 supported. Plain HTTP, or HTTPS with [`GitHttpServerOptions::tls`].
#[derive(Debug)]
pub struct GitHttpServer {
    // Declared first so it is killed before its directory goes away.
    process: Process,
    port: u16,
    scheme: &'static str,
    username: String,
    password: String,
    repos: BareRepos,
    dir: TempDir,
}

impl GitHttpServer {
    pub async fn start(options: GitHttpServerOptions) -> Result<Self> {
        let lighttpd = tools::lighttpd()?;
        let backend = tools::git_http_backend()?;
        let htpasswd = tools::htpasswd()?;
        let repos = match options.repos {
            Some(repos) => repos,
            None => BareRepos::new()?,
        };
        let username = match options.username {
            Some(user) => user,
            None => format!("git-{}", random_hex(4)?),
        };
        let password = match options.password {
            Some(password) => password,
            None => random_hex(16)?,
        };
        if username.contains(':') {
            return Err(Error::Command {
                context: "git-http: basic-auth user".into(),
                message: format!("{username:?} contains ':'"),
            });
        }

        let dir = tempfile::Builder::new()
            .prefix("testbed-git-http-")
            .tempdir()
            .context(|| "git-http: creating a state directory".into())?;
        let htpasswd_file = dir.path().join("htpasswd");
        // bcrypt, as a real deployment would use.
        run(
            "git-http: writing htpasswd",
            Command::new(&htpasswd)
                .arg("-c")
                .arg("-b")
                .arg("-B")
                .arg(&htpasswd_file)
                .arg(&username)
                .arg(&password),
        )?;

        // A racing process may take the free port before lighttpd binds it: try again.
        let mut last_error = None;
        for attempt in 0..3 {
            let port = free_port()?;
            let mut config =
                render_config(port, repos.root(), &htpasswd_file, &backend, dir.path())?;
            if let Some(certs) = &options.tls {
                config.push_str(&tls_config(certs)?);
            }
            let config_file = dir.path().join(format!("lighttpd-{attempt}.conf"));
            std::fs::write(&config_file, config)
                .context(|| format!("git-http: writing {}", config_file.display()))?;
            let mut command = Command::new(&lighttpd);
            command.arg("-D").arg("-f").arg(&config_file);
            let mut process = Process::spawn(
                "git-http (lighttpd)",
                command,
                &dir.path().join("lighttpd.log"),
            )?;
            match process
                .wait_ready(Duration::from_secs(10), || port_open(port))
                .await
            {
                Ok(()) => {
                    return Ok(Self {
                        process,
                        port,
                        scheme: if options.tls.is_some() {
                            "https"
                        } else {
                            "http"
                        },
                        username,
                        password,
                        repos,
                        dir,
                    });
                }
                Err(err @ Error::Exited { .. }) => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Command {
            context: "git-http".into(),
            message: "could not start".into(),
        }))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/NAME.git` (`https://` with TLS).
    pub fn url(&self, repo: &str) -> String {
        format!(
            "{}://127.0.0.1:{}/{}",
            self.scheme,
            self.port,
            repo_path(repo)
        )
    }

    /// [`url`](Self::url) with the credentials in it, for git CLI calls in tests.
    pub fn url_with_credentials(&self, repo: &str) -> String {
        format!(
            "{}://{}:{}@127.0.0.1:{}/{}",
            self.scheme,
            percent_encode(&self.username),
            percent_encode(&self.password),
            self.port,
            repo_path(repo)
        )
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The `Authorization` header value: `Basic BASE64(user:password)`.
    pub fn basic_auth_header(&self) -> String {
        basic_auth_header(&self.username, &self.password)
    }

    /// Environment that makes the git CLI send `Authorization: Basic ...` without the
    /// credentials appearing in argv or URLs (`http.extraHeader` through
    /// `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/`GIT_CONFIG_VALUE_0`).
    pub fn auth_env(&self) -> Vec<(String, String)> {
        auth_env(&self.username, &self.password)
    }

    pub fn repos(&self) -> &BareRepos {
        &self.repos
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// lighttpd's error log (CGI errors from `git http-backend` land here).
    pub fn error_log(&self) -> String {
        crate::process::log_tail(&self.dir.path().join("error.log"), 50)
    }

    /// lighttpd's access log: one line per request, with status codes. lighttpd writes
    /// it in batches, so the latest requests may be missing for a second or so.
    pub fn access_log(&self) -> String {
        crate::process::log_tail(&self.dir.path().join("access.log"), 200)
    }
}

/// `Basic BASE64(user:password)`.
pub fn basic_auth_header(username: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {token}")
}

/// See [`GitHttpServer::auth_env`]; with any credentials, for negative tests.
pub fn auth_env(username: &str, password: &str) -> Vec<(String, String)> {
    vec![
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
        (
            "GIT_CONFIG_VALUE_0".into(),
            format!("Authorization: {}", basic_auth_header(username, password)),
        ),
    ]
}

fn repo_path(repo: &str) -> String {
    let repo = repo.trim_start_matches('/');
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    format!("{repo}.git")
}

fn render_config(
    port: u16,
    root: &Path,
    htpasswd: &Path,
    backend: &Path,
    state: &Path,
) -> Result<String> {
    let mut config = CONFIG_TEMPLATE.to_string();
    for (placeholder, value) in [
        ("@PORT@", port.to_string()),
        ("@GIT_ROOT@", path_value(root)?),
        ("@HTPASSWD@", path_value(htpasswd)?),
        ("@GIT_HTTP_BACKEND@", path_value(backend)?),
        ("@STATE_DIR@", path_value(state)?),
    ] {
        config = config.replace(placeholder, &value);
    }
    // lighttpd answers bad credentials only after a second (brute-force damping); tests
    // that check rejections should not wait for it.
    config.push_str("\nserver.feature-flags += ( \"auth.delay-invalid-creds\" => \"disable\" )\n");
    Ok(config)
}

/// HTTPS on the same socket: the server certificate of `certs` (valid for 127.0.0.1).
fn tls_config(certs: &Certificates) -> Result<String> {
    Ok(format!(
        "\nserver.modules += ( \"mod_openssl\" )\nssl.engine = \"enable\"\n\
         ssl.pemfile = \"{}\"\nssl.privkey = \"{}\"\n",
        path_value(&certs.server_cert)?,
        path_value(&certs.server_key)?
    ))
}

/// A path for a double-quoted lighttpd string.
fn path_value(path: &Path) -> Result<String> {
    let text = path.to_str().filter(|t| !t.contains(['"', '\\', '$']));
    text.map(str::to_string).ok_or_else(|| {
        Error::Path(
            path.to_path_buf(),
            "not usable in a lighttpd config string".into(),
        )
    })
}
