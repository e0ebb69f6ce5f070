//! Git remotes: bare repositories served over smart HTTP (lighttpd + `git http-backend`)
//! and over SSH (`sshd` with a deploy key), plus helpers to seed and inspect them with
//! the git CLI.
//!
//! [`BareRepos`] is a directory of bare repositories; [`GitHttpServer`] and
//! [`GitSshServer`] each serve one, and [`GitServers`] serves the same one both ways.
//! A repository named `NAME` lives in `ROOT/NAME.git`.

mod fixtures;
mod http;
mod repos;
mod ssh;

pub use fixtures::{FIXTURE_POLICIES, seed_manifests};
pub use http::{GitHttpServer, GitHttpServerOptions, auth_env, basic_auth_header};
pub use repos::{BareRepos, FIXTURE_AUTHOR, FIXTURE_DATE};
pub use ssh::{GitSshServer, ssh_command};

use std::fs::File;
use std::io::Read;
use std::process::Command;

use crate::error::{IoContext, Result};
use crate::tools;

/// A `git` command isolated from the user's and the system's configuration (no
/// credential helpers, signing or hooks from there), with a fixed committer identity
/// and no terminal prompts. Tests drive the git CLI through this.
pub fn git_cli() -> Result<Command> {
    let mut command = Command::new(tools::git()?);
    // Variables a surrounding git (a hook, `git rebase -x`) may have set would redirect us.
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_CEILING_DIRECTORIES",
    ] {
        command.env_remove(var);
    }
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Testbed User")
        .env("GIT_AUTHOR_EMAIL", "user@testbed.invalid")
        .env("GIT_COMMITTER_NAME", "Testbed User")
        .env("GIT_COMMITTER_EMAIL", "user@testbed.invalid");
    Ok(command)
}

/// Servers for one [`BareRepos`]: every repository is reachable over HTTP and over SSH.
#[derive(Debug)]
pub struct GitServers {
    pub http: GitHttpServer,
    pub ssh: GitSshServer,
}

impl GitServers {
    /// Starts both servers on a new, empty repository root.
    pub async fn start() -> Result<Self> {
        let repos = BareRepos::new()?;
        let http = GitHttpServer::start(GitHttpServerOptions {
            repos: Some(repos.clone()),
            ..Default::default()
        })
        .await?;
        let ssh = GitSshServer::start_serving(repos).await?;
        Ok(Self { http, ssh })
    }

    pub fn repos(&self) -> &BareRepos {
        self.http.repos()
    }
}

/// `bytes` random bytes as lowercase hex, for generated credentials.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context(|| "reading /dev/urandom".into())?;
    Ok(hex::encode(buf))
}

/// Quotes `value` for a POSIX shell (`GIT_SSH_COMMAND` is run by one).
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
