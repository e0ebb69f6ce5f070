//! One operation on the cached bare repository of a URL: fetch and ls-remote with gix,
//! push with the git CLI.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gix::ObjectId;
use gix::remote::Direction;

use kube_support::redact::Secrets;

use super::auth::{CredFiles, GitAuth, is_ssh_url};
use super::cli::{self, RunError};
use super::error::{Class, GitError, classify};

/// How often a blocked operation looks at the shutdown flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// How the cache fetches a ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depth {
    /// Only the tip (first fetch of a ref).
    Shallow,
    /// Whatever is new since the last fetch.
    Incremental,
    /// All history (commit checkouts, and to unshallow).
    Full,
}

/// A bare repository in the cache, opened for one locked operation.
pub(crate) struct Session {
    pub(crate) repo: gix::Repository,
    pub(crate) dir: PathBuf,
    pub(crate) url: String,
    pub(crate) creds: CredFiles,
    /// Every credential sent to the remote: whatever gix, git, ssh or the remote say
    /// reaches a message only through [`Secrets::scrub`].
    pub(crate) secrets: Secrets,
    pub(crate) timeout: Duration,
    /// Set at shutdown: fetches stop, git children are killed.
    pub(crate) cancel: Arc<AtomicBool>,
    ssh: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("dir", &self.dir)
            .field("url", &self.secrets.scrub(&self.url))
            .finish_non_exhaustive()
    }
}

/// The local ref the cache keeps a remote ref in: `refs/heads/main` → `refs/iua/heads/main`.
pub(crate) fn tracking_ref(remote_ref: &str) -> String {
    match remote_ref.strip_prefix("refs/") {
        Some(rest) => format!("refs/iua/{rest}"),
        None => format!("refs/iua/{remote_ref}"),
    }
}

fn remote_ref_parts(r: &gix::protocol::handshake::Ref) -> (&[u8], Option<ObjectId>) {
    use gix::protocol::handshake::Ref;
    match r {
        Ref::Peeled {
            full_ref_name,
            object,
            ..
        } => (full_ref_name.as_slice(), Some(*object)),
        Ref::Direct {
            full_ref_name,
            object,
        } => (full_ref_name.as_slice(), Some(*object)),
        Ref::Symbolic {
            full_ref_name,
            object,
            ..
        } => (full_ref_name.as_slice(), Some(*object)),
        Ref::Unborn { full_ref_name, .. } => (full_ref_name.as_slice(), None),
    }
}

impl Session {
    /// Opens the cache in `dir`, creating it when missing. A directory that exists but
    /// is no repository gix can open (broken HEAD, config, refs layout) is
    /// [`GitError::CacheDamaged`]: the caller quarantines it and calls again.
    pub(crate) fn open(
        dir: &Path,
        url: &str,
        auth: &GitAuth,
        timeout: Duration,
        cancel: Arc<AtomicBool>,
    ) -> Result<Self, GitError> {
        let creds = CredFiles::new(auth, timeout)?;
        let secrets = auth.secrets(url);
        let ssh = is_ssh_url(url);
        let mut overrides = vec![
            "protocol.version=2".to_string(),
            "gc.auto=0".to_string(),
            "core.bare=true".to_string(),
        ];
        if let Some(cmd) = creds.ssh_command(Some(&creds.ssh_stderr())) {
            overrides.push(format!("core.sshCommand={cmd}"));
            overrides.push("ssh.variant=ssh".to_string());
        }
        let open = |dir: &Path| {
            gix::open_opts(
                dir,
                gix::open::Options::isolated().config_overrides(overrides.clone()),
            )
        };
        let repo = match open(dir) {
            Ok(repo) => repo,
            Err(e) if dir.exists() && !is_empty_dir(dir) => {
                return Err(GitError::CacheDamaged(
                    secrets.scrub(&format!("opening the repository: {e}")),
                ));
            }
            Err(_) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| GitError::Git(format!("creating cache {}: {e}", dir.display())))?;
                gix::init_bare(dir)
                    .map_err(|e| GitError::Git(format!("initialising the cache: {e}")))?;
                open(dir).map_err(|e| GitError::Git(format!("opening the cache: {e}")))?
            }
        };
        Ok(Self {
            secrets,
            repo,
            dir: dir.to_path_buf(),
            url: url.to_string(),
            creds,
            timeout,
            cancel,
            ssh,
        })
    }

    /// Whether the cached repository is damaged: `git fsck` over everything it holds
    /// (refs, HEAD, config, loose objects and packs). Run only after a local failure, to
    /// tell a damaged cache from a remote's fault. `Some(what fsck said)` when damaged.
    pub(crate) fn damage(&self) -> Result<Option<String>, GitError> {
        let out = self.git(&["fsck", "--no-dangling", "--no-progress", "--no-reflogs"])?;
        if out.success {
            return Ok(None);
        }
        let said: String = out
            .stderr
            .lines()
            .chain(out.stdout.lines())
            .filter(|l| !l.trim().is_empty())
            .take(5)
            .collect::<Vec<_>>()
            .join("; ");
        Ok(Some(self.secrets.scrub(&said)))
    }

    /// Turns a gix failure into a typed error, consulting ssh's stderr.
    fn gix_error(&self, err: &gix::Error, interrupted: bool) -> GitError {
        if interrupted {
            return self.interrupted();
        }
        let mut text = String::new();
        for e in err.iter_errors() {
            text.push_str(&e.to_string());
            text.push_str(": ");
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::PermissionDenied
            {
                text.push_str("permission denied: ");
            }
        }
        if self.ssh {
            if let Ok(stderr) = std::fs::read_to_string(self.creds.ssh_stderr()) {
                text.push_str(&stderr);
            }
            let _ = std::fs::remove_file(self.creds.ssh_stderr());
        }
        if err.classify().is_unauthenticated() {
            text.push_str(" authentication required");
        }
        self.typed(&text)
    }

    /// A typed error from a failure text (gix chain or git/ssh stderr).
    pub(crate) fn typed(&self, text: &str) -> GitError {
        let detail = self.secrets.scrub(text.trim());
        let url = self.secrets.scrub(&self.url);
        match classify(&detail) {
            Class::HostKey => GitError::UnknownHostKey { url },
            Class::Auth => GitError::AuthFailed {
                url,
                detail: "authentication failed (check the secret's credentials)".into(),
            },
            Class::ProxyAuth => GitError::AuthFailed {
                url,
                detail: "the proxy refused the credentials (check the proxySecretRef secret)"
                    .into(),
            },
            Class::Network => GitError::Network { url, detail },
            Class::NotFound => GitError::RefNotFound(detail),
            Class::Other => GitError::Git(detail),
        }
    }

    fn http_options(&self) -> Result<Option<Box<dyn std::any::Any>>, GitError> {
        use gix::protocol::transport::client::blocking_io::http;
        if self.ssh {
            return Ok(None);
        }
        let base = self
            .repo
            .transport_options(self.url.as_str(), None)
            .map_err(|e| GitError::Git(self.secrets.scrub(&format!("transport options: {e}"))))?;
        let mut opts = base
            .and_then(|b| b.downcast::<http::Options>().ok())
            .map(|b| *b)
            .unwrap_or_default();
        if let Some(auth) = &self.creds.authorization {
            // Sent up front, like `http.extraHeader`: no 401 round trip, no helpers.
            opts.extra_headers
                .push(format!("Authorization: {}", auth.expose()));
        }
        opts.connect_timeout = Some(self.timeout.min(Duration::from_secs(60)));
        let mut roots = Vec::new();
        if let Some(ca) = &self.creds.ca {
            let pem = std::fs::read(ca).map_err(|e| GitError::Git(format!("ca.crt: {e}")))?;
            roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| GitError::InvalidSecret("'ca.crt' is not a PEM bundle".into()))?;
        }
        let mut identity = None;
        if let Some((cert, key)) = &self.creds.client_cert {
            let mut pem =
                std::fs::read(cert).map_err(|e| GitError::Git(format!("tls.crt: {e}")))?;
            pem.push(b'\n');
            pem.extend(std::fs::read(key).map_err(|e| GitError::Git(format!("tls.key: {e}")))?);
            identity = Some(reqwest::Identity::from_pem(&pem).map_err(|_| {
                GitError::InvalidSecret(
                    "'tls.crt'/'tls.key' are not a PEM certificate and key".into(),
                )
            })?);
        }
        let proxy = match &self.creds.proxy {
            Some(p) => {
                let mut proxy = reqwest::Proxy::all(p.address.as_str()).map_err(|_| {
                    GitError::InvalidSecret("proxy 'address' is not a valid proxy URL".into())
                })?;
                if let Some((user, password)) = &p.credentials {
                    proxy = proxy.basic_auth(user, password.expose());
                }
                Some(proxy)
            }
            None => None,
        };
        let timeout = self.timeout;
        let configure: Box<http::reqwest::ConfigureClientFn> = Box::new(move |mut builder| {
            builder = builder.timeout(timeout);
            if let Some(proxy) = &proxy {
                builder = builder.proxy(proxy.clone());
            }
            for cert in &roots {
                builder = builder.add_root_certificate(cert.clone());
            }
            if let Some(id) = &identity {
                builder = builder.identity(id.clone());
            }
            Ok(builder)
        });
        opts.backend = Some(Arc::new(Mutex::new(http::reqwest::Options {
            configure_client: Some(configure),
            configure_request: None,
        })));
        Ok(Some(Box::new(opts)))
    }

    fn connect<'a>(
        &self,
        remote: &'a gix::Remote<'a>,
    ) -> Result<
        gix::remote::Connection<
            'a,
            'static,
            'a,
            Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>,
        >,
        GitError,
    > {
        let mut conn = remote
            .connect(Direction::Fetch)
            .map_err(|e| self.gix_error(&e, false))?;
        // Never fall back to credential helpers or prompts.
        conn.set_credentials(|_| Ok(None));
        if let Some(opts) = self.http_options()? {
            conn.set_transport_options(opts);
        }
        Ok(conn)
    }

    /// The remote at our URL with `refspecs` (fetch direction, no tags).
    fn remote<'s>(
        &self,
        refspecs: impl IntoIterator<Item = &'s str>,
    ) -> Result<gix::Remote<'_>, GitError> {
        self.repo
            .remote_at(self.url.as_str())
            .map_err(|e| GitError::InvalidConfig(self.secrets.scrub(&format!("invalid URL: {e}"))))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(refspecs, Direction::Fetch)
            .map_err(|e| GitError::InvalidConfig(format!("invalid ref: {e}")))
    }

    /// ls-remote: the commit each of `refs` (full names) points to, peeled.
    pub(crate) fn ls_remote(&self, refs: &[String]) -> Result<Vec<Option<ObjectId>>, GitError> {
        let remote = self.remote(refs.iter().map(String::as_str))?;
        let conn = self.connect(&remote)?;
        let (map, _) = conn
            .ref_map(gix::progress::Discard, Default::default())
            .map_err(|e| self.gix_error(&e, false))?;
        Ok(refs
            .iter()
            .map(|wanted| {
                map.remote_refs.iter().find_map(|r| {
                    let (name, id) = remote_ref_parts(r);
                    (name == wanted.as_bytes()).then_some(id).flatten()
                })
            })
            .collect())
    }

    /// ls-remote of `refs/tags/*`: the tag names (without `refs/tags/`, peeled entries
    /// once), for a semver checkout.
    pub(crate) fn ls_tags(&self) -> Result<Vec<String>, GitError> {
        let remote = self.remote(["refs/tags/*:refs/tags/*"])?;
        let conn = self.connect(&remote)?;
        let (map, _) = conn
            .ref_map(gix::progress::Discard, Default::default())
            .map_err(|e| self.gix_error(&e, false))?;
        let mut tags: Vec<String> = map
            .remote_refs
            .iter()
            .filter_map(|r| {
                let (name, _) = remote_ref_parts(r);
                let tag = name.strip_prefix(b"refs/tags/")?;
                std::str::from_utf8(tag).ok().map(str::to_string)
            })
            .collect();
        tags.sort_unstable();
        tags.dedup();
        Ok(tags)
    }

    /// Fetches `remote_refs` into their [`tracking_ref`]s. Fails with `RefNotFound` when
    /// `remote_refs[0]` is missing; the others are optional. Returns which exist, and
    /// the time the fetch took and the pack bytes it received.
    pub(crate) fn fetch(
        &self,
        remote_refs: &[String],
        depth: Depth,
    ) -> Result<(Vec<bool>, Duration, u64), GitError> {
        let started = Instant::now();
        let specs: Vec<String> = remote_refs
            .iter()
            .map(|r| format!("+{r}:{}", tracking_ref(r)))
            .collect();
        let remote = self.remote(specs.iter().map(String::as_str))?;
        let conn = self.connect(&remote)?;
        let prepare = conn
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| self.gix_error(&e, false))?;
        let present: Vec<bool> = remote_refs
            .iter()
            .map(|wanted| {
                prepare
                    .ref_map()
                    .remote_refs
                    .iter()
                    .any(|r| remote_ref_parts(r).0 == wanted.as_bytes())
            })
            .collect();
        if !present.first().copied().unwrap_or(false) {
            return Err(GitError::RefNotFound(format!(
                "couldn't find remote ref {}",
                remote_refs.first().map(String::as_str).unwrap_or("")
            )));
        }
        let shallow = match depth {
            Depth::Shallow => gix::remote::fetch::Shallow::DepthAtRemote(std::num::NonZeroU32::MIN),
            Depth::Incremental => gix::remote::fetch::Shallow::NoChange,
            Depth::Full => match std::num::NonZeroU32::new(0x7fff_ffff) {
                Some(all) if self.repo.is_shallow().unwrap_or(true) => {
                    gix::remote::fetch::Shallow::DepthAtRemote(all)
                }
                _ => gix::remote::fetch::Shallow::NoChange,
            },
        };
        let interrupt = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let watchdog = {
            let interrupt = interrupt.clone();
            let cancel = self.cancel.clone();
            let deadline = Instant::now() + self.timeout;
            std::thread::spawn(move || {
                // gix checks the flag while it reads the pack: set it at the deadline or
                // as soon as shutdown begins.
                loop {
                    let now = Instant::now();
                    if cancel.load(Ordering::SeqCst) || now >= deadline {
                        interrupt.store(true, Ordering::SeqCst);
                        return;
                    }
                    let step = (deadline - now).min(CANCEL_POLL);
                    if done_rx.recv_timeout(step).is_ok() {
                        return;
                    }
                }
            })
        };
        let result = prepare
            .with_shallow(shallow)
            .receive(gix::progress::Discard, &interrupt);
        let _ = done_tx.send(());
        let _ = watchdog.join();
        match result {
            Ok(_) if interrupt.load(Ordering::SeqCst) => Err(self.interrupted()),
            Ok(outcome) => {
                let bytes = match &outcome.status {
                    gix::remote::fetch::Status::Change {
                        write_pack_bundle, ..
                    } => {
                        // The refs point into the pack now: the `.keep` guard is done.
                        if let Some(keep) = &write_pack_bundle.keep_path {
                            let _ = std::fs::remove_file(keep);
                        }
                        write_pack_bundle
                            .data_path
                            .as_ref()
                            .and_then(|p| std::fs::metadata(p).ok())
                            .map_or(0, |m| m.len())
                    }
                    gix::remote::fetch::Status::NoPackReceived { .. } => 0,
                };
                Ok((present, started.elapsed(), bytes))
            }
            Err(e) => Err(self.gix_error(&e, interrupt.load(Ordering::SeqCst))),
        }
    }

    /// Why an interrupted operation stopped: shutdown or the timeout.
    fn interrupted(&self) -> GitError {
        if self.cancel.load(Ordering::SeqCst) {
            GitError::Cancelled(format!(
                "fetch from {} stopped; nothing was changed on the remote",
                self.secrets.scrub(&self.url)
            ))
        } else {
            GitError::Timeout {
                url: self.secrets.scrub(&self.url),
                timeout: self.timeout,
            }
        }
    }

    /// The commit a local ref points to, peeled through tags.
    pub(crate) fn local_commit(&self, name: &str) -> Result<Option<ObjectId>, GitError> {
        let Some(mut r) = self
            .repo
            .try_find_reference(name)
            .map_err(|e| GitError::Git(format!("reading {name}: {e}")))?
        else {
            return Ok(None);
        };
        let id = r
            .peel_to_commit()
            .map_err(|e| GitError::Git(format!("{name} does not point to a commit: {e}")))?
            .id;
        Ok(Some(id))
    }

    pub(crate) fn has_commit(&self, id: ObjectId) -> bool {
        self.repo.find_commit(id).is_ok()
    }

    /// Points `name` at `id` (cache bookkeeping after a push).
    pub(crate) fn set_ref(&self, name: &str, id: ObjectId) -> Result<(), GitError> {
        self.repo
            .reference(
                name,
                id,
                gix::refs::transaction::PreviousValue::Any,
                "image-automation",
            )
            .map_err(|e| GitError::Git(format!("updating {name}: {e}")))?;
        Ok(())
    }

    /// Points HEAD at `refs/heads/<branch>` (so a `push.refspec` naming `HEAD` or the
    /// branch means the new commit, as in Flux's clone).
    pub(crate) fn set_head(&self, branch: &str) -> Result<(), GitError> {
        let out = self.git(&["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")])?;
        if out.success {
            Ok(())
        } else {
            Err(GitError::Git(format!(
                "setting HEAD: {}",
                self.secrets.scrub(out.stderr.trim())
            )))
        }
    }

    /// Runs git on the cache with isolated config and the credentials in the environment.
    pub(crate) fn git(&self, args: &[&str]) -> Result<cli::Output, GitError> {
        let mut command = std::process::Command::new("git");
        command
            .env_clear()
            .envs(self.creds.git_env())
            .arg("--git-dir")
            .arg(&self.dir)
            .args(args);
        let started = Instant::now();
        match cli::run(&mut command, None, self.timeout, Some(&self.cancel)) {
            Ok(out) => Ok(out),
            Err(RunError::TimedOut) => Err(GitError::Timeout {
                url: self.secrets.scrub(&self.url),
                timeout: started.elapsed(),
            }),
            Err(RunError::Cancelled) => Err(GitError::Cancelled(format!(
                "git {} stopped",
                args.first().copied().unwrap_or_default()
            ))),
            Err(RunError::Spawn(e)) => Err(GitError::Git(format!("running git: {e}"))),
        }
    }

    /// `git push --porcelain --atomic` of `refspec`.
    pub(crate) fn push(
        &self,
        refspec: &str,
        target: &str,
        force: bool,
        options: &[String],
    ) -> Result<(), GitError> {
        let mut args: Vec<String> = vec!["push".into(), "--porcelain".into(), "--atomic".into()];
        if force {
            args.push("--force".into());
        }
        for o in options {
            args.push(format!("--push-option={o}"));
        }
        args.push("--".into());
        args.push(self.url.clone());
        args.push(refspec.into());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = match self.git(&argv) {
            Err(GitError::Cancelled(_)) => {
                // git, its remote helper and pack-objects were killed together: the server
                // updates the ref only after the whole pack arrived, so the branch is
                // either untouched or (if the server had it all) at the new commit.
                return Err(GitError::Cancelled(format!(
                    "push of {refspec} to {} killed mid-way; the remote branch is unchanged unless the server had already received the whole push",
                    self.secrets.scrub(&self.url)
                )));
            }
            other => other?,
        };
        if out.success {
            return Ok(());
        }
        // Porcelain: `!\t<src>:<dst>\t[rejected] (fetch first)`.
        let rejected = out.stdout.lines().find(|l| l.starts_with('!'));
        let stderr = self.secrets.scrub(&out.stderr);
        match rejected {
            Some(line)
                if line.contains("[rejected]")
                    && (line.contains("fetch first")
                        || line.contains("non-fast-forward")
                        || line.contains("stale info")) =>
            {
                Err(GitError::PushRejected {
                    branch: target.to_string(),
                    detail: self.secrets.scrub(line.trim()),
                })
            }
            Some(line) => Err(GitError::PushFailed(format!(
                "{}: {}",
                self.secrets.scrub(line.trim()),
                stderr.trim()
            ))),
            None => match self.typed(&stderr) {
                GitError::Git(detail) => Err(GitError::PushFailed(detail)),
                other => Err(other),
            },
        }
    }
}
