//! SSH: `sshd` with its own host key and config, accepting one generated deploy key.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::AsyncReadExt;

use super::{BareRepos, shell_quote};
use crate::error::{Error, IoContext, Result};
use crate::process::{Process, free_port, run};
use crate::tools;

/// `sshd` on 127.0.0.1 serving bare repositories to the current user (root here and in
/// CI; any user works, since a non-root sshd can only log that user in), who
/// authenticates with a generated ed25519 deploy key. The host key is generated too, so
/// clients check it against [`known_hosts`](Self::known_hosts).
#[derive(Debug)]
pub struct GitSshServer {
    // Declared first so it is killed before its directory goes away.
    process: Process,
    port: u16,
    user: String,
    repos: BareRepos,
    identity: PathBuf,
    identity_pem: String,
    known_hosts_file: PathBuf,
    known_hosts: String,
    host_public_key: String,
    _dir: TempDir,
}

impl GitSshServer {
    /// Starts on a new, empty repository root.
    pub async fn start() -> Result<Self> {
        Self::start_serving(BareRepos::new()?).await
    }

    /// Starts serving `repos` (e.g. the root a [`super::GitHttpServer`] serves).
    pub async fn start_serving(repos: BareRepos) -> Result<Self> {
        let sshd = tools::sshd()?;
        let keygen = tools::ssh_keygen()?;
        let git = tools::git()?;
        let (user, uid) = current_user()?;
        if uid == 0 {
            // sshd started as root insists on its privilege separation directory.
            std::fs::create_dir_all("/run/sshd").context(|| "sshd: creating /run/sshd".into())?;
        }

        let dir = tempfile::Builder::new()
            .prefix("testbed-git-ssh-")
            .tempdir()
            .context(|| "sshd: creating a state directory".into())?;
        let path = |name: &str| dir.path().join(name);
        let host_key = path("ssh_host_ed25519_key");
        let identity = path("deploy_ed25519");
        generate_key(&keygen, &host_key, "testbed-sshd-host")?;
        generate_key(&keygen, &identity, "testbed-deploy-key")?;
        let host_public_key = public_key(&host_key.with_extension("pub"))?;
        let client_public_key = public_key(&identity.with_extension("pub"))?;
        let identity_pem = std::fs::read_to_string(&identity)
            .context(|| format!("sshd: reading {}", identity.display()))?;
        let authorized_keys = path("authorized_keys");
        std::fs::write(
            &authorized_keys,
            format!("{client_public_key} testbed-deploy-key\n"),
        )
        .context(|| "sshd: writing authorized_keys".into())?;
        // sshd runs sessions with a fixed PATH; put the testbed's git first so
        // git-upload-pack and git-receive-pack are the ones the tests use.
        let git_dir = git.parent().map(Path::to_path_buf).unwrap_or_default();

        let mut last_error = None;
        for attempt in 0..3 {
            let port = free_port()?;
            let config = format!(
                "ListenAddress 127.0.0.1\n\
                 Port {port}\n\
                 HostKey {host_key}\n\
                 PidFile {pid}\n\
                 AuthorizedKeysFile {authorized_keys}\n\
                 AuthenticationMethods publickey\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 AllowUsers {user}\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 UseDNS no\n\
                 PrintMotd no\n\
                 PrintLastLog no\n\
                 # git sends GIT_PROTOCOL=version=2 over SSH; without it the server speaks v0.\n\
                 AcceptEnv GIT_PROTOCOL\n\
                 SetEnv PATH={git_dir}:/usr/local/bin:/usr/bin:/bin\n\
                 MaxStartups 64:30:128\n\
                 LogLevel VERBOSE\n",
                host_key = host_key.display(),
                pid = path("sshd.pid").display(),
                authorized_keys = authorized_keys.display(),
                git_dir = git_dir.display(),
            );
            let config_file = path(&format!("sshd_config-{attempt}"));
            std::fs::write(&config_file, config)
                .context(|| format!("sshd: writing {}", config_file.display()))?;
            let mut command = Command::new(&sshd);
            command.arg("-D").arg("-e").arg("-f").arg(&config_file);
            let mut process = Process::spawn("sshd", command, &path("sshd.log"))?;
            match process
                .wait_ready(Duration::from_secs(10), || ssh_banner(port))
                .await
            {
                Ok(()) => {
                    let known_hosts = format!("[127.0.0.1]:{port} {host_public_key}\n");
                    let known_hosts_file = path("known_hosts");
                    std::fs::write(&known_hosts_file, &known_hosts)
                        .context(|| "sshd: writing known_hosts".into())?;
                    return Ok(Self {
                        process,
                        port,
                        user,
                        repos,
                        identity,
                        identity_pem,
                        known_hosts_file,
                        known_hosts,
                        host_public_key,
                        _dir: dir,
                    });
                }
                Err(err @ Error::Exited { .. }) => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Command {
            context: "sshd".into(),
            message: "could not start".into(),
        }))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user clients log in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `ssh://USER@127.0.0.1:PORT/ABSOLUTE/ROOT/NAME.git`.
    pub fn url(&self, repo: &str) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            self.repos.path(repo).display()
        )
    }

    /// The deploy key's private key file (mode 0600, as ssh requires).
    pub fn identity_path(&self) -> &Path {
        &self.identity
    }

    /// The deploy key's private key (OpenSSH format), what a Flux `identity` secret key holds.
    pub fn identity_pem(&self) -> &str {
        &self.identity_pem
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...` and a newline, what a Flux `known_hosts`
    /// secret key holds.
    pub fn known_hosts(&self) -> &str {
        &self.known_hosts
    }

    /// A file holding [`known_hosts`](Self::known_hosts).
    pub fn known_hosts_path(&self) -> &Path {
        &self.known_hosts_file
    }

    /// The host's public key, `ssh-ed25519 AAAA...`.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// A `GIT_SSH_COMMAND` using the deploy key and checking the host key strictly
    /// against [`known_hosts`](Self::known_hosts). The port is in [`url`](Self::url).
    pub fn git_ssh_command(&self) -> String {
        ssh_command(&self.identity, &self.known_hosts_file)
    }

    pub fn repos(&self) -> &BareRepos {
        &self.repos
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }
}

/// An `ssh` command line for `GIT_SSH_COMMAND` that ignores the user's ssh config and
/// agent, authenticates with `identity` only and accepts only host keys listed in
/// `known_hosts` (never asking, never adding).
pub fn ssh_command(identity: &Path, known_hosts: &Path) -> String {
    format!(
        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile={} \
         -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes",
        shell_quote(&identity.display().to_string()),
        shell_quote(&known_hosts.display().to_string()),
    )
}

/// The user name and uid this process runs as.
fn current_user() -> Result<(String, u32)> {
    let id = |flag: &str| -> Result<String> {
        let out = run(
            "sshd: finding the current user",
            Command::new("id").arg(flag),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let name = id("-un")?;
    let uid = id("-u")?;
    let uid = uid.parse().map_err(|_| Error::Command {
        context: "sshd: finding the current user".into(),
        message: format!("`id -u` printed {uid:?}"),
    })?;
    Ok((name, uid))
}

fn generate_key(keygen: &Path, file: &Path, comment: &str) -> Result<()> {
    run(
        &format!("sshd: generating {}", file.display()),
        Command::new(keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(file),
    )?;
    Ok(())
}

/// `TYPE BASE64` from a `.pub` file, without the comment.
fn public_key(file: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(file).context(|| format!("sshd: reading {}", file.display()))?;
    let fields: Vec<&str> = text.split_whitespace().take(2).collect();
    if fields.len() == 2 {
        Ok(fields.join(" "))
    } else {
        Err(Error::Path(
            file.to_path_buf(),
            "not an OpenSSH public key".into(),
        ))
    }
}

/// True once something on the port greets with an SSH-2.0 banner.
async fn ssh_banner(port: u16) -> bool {
    let greet = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let mut buf = [0u8; 64];
        let mut len = 0;
        while len < 8 {
            let n = stream.read(&mut buf[len..]).await.ok()?;
            if n == 0 {
                break;
            }
            len += n;
        }
        Some(buf[..len].starts_with(b"SSH-2.0-"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), greet).await,
        Ok(Some(true))
    )
}
