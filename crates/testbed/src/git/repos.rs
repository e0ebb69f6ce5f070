//! A directory of bare repositories, seeded and read back with the git CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use tempfile::TempDir;

use super::git_cli;
use crate::error::{Error, IoContext, Result};
use crate::process::run;

/// Author and committer of the commits [`BareRepos`] makes.
pub const FIXTURE_AUTHOR: (&str, &str) = ("Testbed Fixtures", "fixtures@testbed.invalid");
/// Their date (2024-01-01T00:00:00Z): with a fixed identity it makes commit ids
/// deterministic, so the same fixture always has the same head.
pub const FIXTURE_DATE: &str = "1704067200 +0000";

/// Bare repositories `ROOT/NAME.git`. Clones share the directory; a temporary root is
/// removed when the last clone (and so the last server using it) is dropped.
#[derive(Debug, Clone)]
pub struct BareRepos {
    root: PathBuf,
    _dir: Option<Arc<TempDir>>,
}

impl BareRepos {
    /// A new, empty, temporary root.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("testbed-git-repos-")
            .tempdir()
            .context(|| "git: creating a repository root".into())?;
        Ok(Self {
            root: dir.path().to_path_buf(),
            _dir: Some(Arc::new(dir)),
        })
    }

    /// Uses an existing directory (kept after use).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            _dir: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of repository `name` (`name` may carry `.git` or not, and may
    /// have sub-directories: `org/app`).
    pub fn path(&self, name: &str) -> PathBuf {
        let name = name.trim_start_matches('/');
        let name = name.strip_suffix(".git").unwrap_or(name);
        self.root.join(format!("{name}.git"))
    }

    /// Creates the bare repository `name` with `files` (path, contents) committed on
    /// `main` as the fixture author at the fixture date, HEAD pointing to `main`, and
    /// pushes allowed. Returns the commit id.
    pub fn create<P, C>(&self, name: &str, files: &[(P, C)]) -> Result<String>
    where
        P: AsRef<str>,
        C: AsRef<[u8]>,
    {
        self.create_empty(name)?;
        self.commit_files(name, "main", files, "Add fixtures\n")
    }

    /// Creates the bare repository `name` with no commits (`main` unborn).
    pub fn create_empty(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        if path.exists() {
            return Err(Error::Path(path, "repository already exists".into()));
        }
        let context = format!("git: creating {}", path.display());
        run(
            &context,
            git_cli()?
                .args(["init", "--quiet", "--bare", "--initial-branch=main"])
                .arg(&path),
        )?;
        // An authenticated http-backend allows pushes anyway; this also covers a server
        // without auth.
        run(
            &context,
            self.git(name)?.args(["config", "http.receivepack", "true"]),
        )?;
        Ok(())
    }

    /// Commits `files` (added or replaced; other files stay) on top of `branch` (or as
    /// its first commit), as the fixture author at the fixture date, and moves
    /// `branch` there. Returns the new commit id. For a remote change a controller has
    /// to notice.
    pub fn commit_files<P, C>(
        &self,
        name: &str,
        branch: &str,
        files: &[(P, C)],
        message: &str,
    ) -> Result<String>
    where
        P: AsRef<str>,
        C: AsRef<[u8]>,
    {
        let context = format!("git: committing to {name} {branch}");
        let parent = self.head_commit(name, branch)?;
        // A private index and scratch files, so the repository itself needs no work tree.
        let scratch = tempfile::tempdir().context(|| format!("{context}: scratch dir"))?;
        let index = scratch.path().join("index");
        let git = || -> Result<Command> {
            let mut command = self.git(name)?;
            command.env("GIT_INDEX_FILE", &index);
            Ok(command)
        };
        if let Some(parent) = &parent {
            run(&context, git()?.args(["read-tree", parent]))?;
        }
        if !files.is_empty() {
            let mut blobs = Vec::with_capacity(files.len());
            for (i, (_, contents)) in files.iter().enumerate() {
                let blob = scratch.path().join(format!("blob-{i}"));
                std::fs::write(&blob, contents)
                    .context(|| format!("{context}: writing {}", blob.display()))?;
                blobs.push(blob);
            }
            let out = run(
                &context,
                git()?
                    .args(["hash-object", "-w", "--no-filters", "--"])
                    .args(&blobs),
            )?;
            let ids = lines(&out);
            let mut update = git()?;
            update.args(["update-index", "--add"]);
            for ((path, _), id) in files.iter().zip(&ids) {
                update.arg("--cacheinfo").arg(format!(
                    "100644,{id},{}",
                    path.as_ref().trim_start_matches('/')
                ));
            }
            run(&context, &mut update)?;
        }
        let tree = first_line(&run(&context, git()?.arg("write-tree"))?);
        let message_file = scratch.path().join("message");
        std::fs::write(&message_file, message)
            .context(|| format!("{context}: writing the message"))?;
        let mut commit = git()?;
        commit.args(["commit-tree", &tree, "-F"]).arg(&message_file);
        if let Some(parent) = &parent {
            commit.args(["-p", parent]);
        }
        let id = first_line(&run(&context, &mut commit)?);
        let old = parent.unwrap_or_else(|| "0".repeat(id.len()));
        run(
            &context,
            git()?.args(["update-ref", &format!("refs/heads/{branch}"), &id, &old]),
        )?;
        Ok(id)
    }

    /// The branch names, sorted.
    pub fn branches(&self, name: &str) -> Result<Vec<String>> {
        let out = run(
            &format!("git: listing branches of {name}"),
            self.git(name)?.args([
                "for-each-ref",
                "--format=%(refname:lstrip=2)",
                "refs/heads/",
            ]),
        )?;
        Ok(lines(&out))
    }

    /// The commit `branch` points to, `None` when there is no such branch.
    pub fn head_commit(&self, name: &str, branch: &str) -> Result<Option<String>> {
        let rev = format!("refs/heads/{branch}^{{commit}}");
        let out = self.output(name, &["rev-parse", "--verify", "--quiet", &rev])?;
        Ok(out.status.success().then(|| first_line(&out)))
    }

    /// The commit message of `rev`, exactly as stored.
    pub fn commit_message(&self, name: &str, rev: &str) -> Result<String> {
        let raw = self.cat_commit(name, rev)?;
        Ok(raw
            .split_once("\n\n")
            .map(|(_, message)| message.to_string())
            .unwrap_or_default())
    }

    /// The author of `rev` as `Name <email>`.
    pub fn commit_author(&self, name: &str, rev: &str) -> Result<String> {
        self.show_format(name, rev, "%an <%ae>")
    }

    /// The committer of `rev` as `Name <email>`.
    pub fn commit_committer(&self, name: &str, rev: &str) -> Result<String> {
        self.show_format(name, rev, "%cn <%ce>")
    }

    /// The parents of `rev`.
    pub fn commit_parents(&self, name: &str, rev: &str) -> Result<Vec<String>> {
        Ok(self
            .show_format(name, rev, "%P")?
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }

    /// The contents of `path` at `rev`, `None` when the file does not exist there.
    pub fn file_at(&self, name: &str, rev: &str, path: &str) -> Result<Option<String>> {
        let object = format!("{rev}:{}", path.trim_start_matches('/'));
        if !self
            .output(name, &["cat-file", "-e", &object])?
            .status
            .success()
        {
            return Ok(None);
        }
        let out = run(
            &format!("git: reading {object} in {name}"),
            self.git(name)?.args(["cat-file", "blob", &object]),
        )?;
        Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// The paths of all files at `rev`, sorted.
    pub fn files_at(&self, name: &str, rev: &str) -> Result<Vec<String>> {
        let out = run(
            &format!("git: listing files of {name} at {rev}"),
            self.git(name)?
                .args(["ls-tree", "-r", "--name-only", "--full-tree", rev]),
        )?;
        Ok(lines(&out))
    }

    /// `(commit id, subject)` from `rev` back, newest first.
    pub fn log(&self, name: &str, rev: &str) -> Result<Vec<(String, String)>> {
        let out = run(
            &format!("git: log of {name} {rev}"),
            self.git(name)?.args(["log", "--format=%H %s", rev, "--"]),
        )?;
        Ok(lines(&out)
            .into_iter()
            .map(|line| match line.split_once(' ') {
                Some((id, subject)) => (id.to_string(), subject.to_string()),
                None => (line, String::new()),
            })
            .collect())
    }

    /// How many commits `rev` has, itself included.
    pub fn commit_count(&self, name: &str, rev: &str) -> Result<usize> {
        let out = run(
            &format!("git: counting commits of {name} {rev}"),
            self.git(name)?.args(["rev-list", "--count", rev, "--"]),
        )?;
        let count = first_line(&out);
        count.parse().map_err(|_| Error::Command {
            context: format!("git: counting commits of {name} {rev}"),
            message: format!("unexpected output {count:?}"),
        })
    }

    /// A git command on repository `name` (which must exist), committing as the fixture
    /// author at the fixture date.
    pub fn git(&self, name: &str) -> Result<Command> {
        let path = self.path(name);
        if !path.is_dir() {
            return Err(Error::Path(path, "no such repository".into()));
        }
        let mut command = git_cli()?;
        command
            .arg("--git-dir")
            .arg(path)
            .env("GIT_AUTHOR_NAME", FIXTURE_AUTHOR.0)
            .env("GIT_AUTHOR_EMAIL", FIXTURE_AUTHOR.1)
            .env("GIT_AUTHOR_DATE", FIXTURE_DATE)
            .env("GIT_COMMITTER_NAME", FIXTURE_AUTHOR.0)
            .env("GIT_COMMITTER_EMAIL", FIXTURE_AUTHOR.1)
            .env("GIT_COMMITTER_DATE", FIXTURE_DATE);
        Ok(command)
    }

    /// Runs a query whose failure means "no" rather than an error.
    fn output(&self, name: &str, args: &[&str]) -> Result<Output> {
        let mut command = self.git(name)?;
        command
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .context(|| format!("git: running {args:?} in {name}"))
    }

    fn cat_commit(&self, name: &str, rev: &str) -> Result<String> {
        let out = run(
            &format!("git: reading commit {rev} in {name}"),
            self.git(name)?.args(["cat-file", "commit", rev]),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn show_format(&self, name: &str, rev: &str, format: &str) -> Result<String> {
        let out = run(
            &format!("git: reading commit {rev} in {name}"),
            self.git(name)?
                .args(["show", "-s", &format!("--format={format}"), rev, "--"]),
        )?;
        Ok(first_line(&out))
    }
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

fn first_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}
