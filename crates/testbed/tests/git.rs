#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The git servers are real: the git CLI clones, commits and pushes over smart HTTP and
//! SSH, and what it pushed is read back from the bare repositories.

use std::path::Path;
use std::process::{Command, Output};

use testbed::git::{
    BareRepos, FIXTURE_AUTHOR, GitHttpServer, GitHttpServerOptions, GitServers, GitSshServer,
    auth_env, git_cli, seed_manifests, ssh_command,
};
use testbed::tls::Certificates;

const REGISTRY: &str = "registry.test:5000";

fn git(dir: &Path) -> Command {
    let mut command = git_cli().unwrap();
    command.current_dir(dir);
    command
}

fn succeed(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fail(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    assert!(!out.status.success(), "{command:?} unexpectedly succeeded");
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_stderr_contains(out: &Output, needle: &str) {
    assert!(stderr(out).contains(needle), "{}", stderr(out));
}

/// `git push -q origin HEAD:main` in `clone`.
fn push_main(clone: &Path) -> Command {
    let mut command = git(clone);
    command.args(["push", "-q", "origin", "HEAD:main"]);
    command
}

/// Edits a file in the clone and commits it; returns the new commit id.
fn commit_change(clone: &Path, path: &str, from: &str, to: &str, message: &str) -> String {
    let file = clone.join(path);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(from), "{path} lacks {from:?}:\n{text}");
    std::fs::write(&file, text.replace(from, to)).unwrap();
    succeed(git(clone).args(["commit", "-q", "-a", "-m", message]));
    stdout(&succeed(git(clone).args(["rev-parse", "HEAD"])))
}

fn checkout_yaml(tag: &str) -> String {
    format!("{REGISTRY}/team/checkout:{tag} # {{\"$imagepolicy\": \"flux-system:checkout\"}}")
}

#[tokio::test]
async fn http_clone_commit_push_read_back() {
    let server = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let repos = server.repos();
    let seeded = repos.create("fleet", &seed_manifests(REGISTRY)).unwrap();
    let work = tempfile::tempdir().unwrap();

    // Credentials travel in an http.extraHeader set through the environment, never argv.
    let url = server.url("fleet");
    assert!(!url.contains(server.password()));
    succeed(
        git(work.path())
            .args(["clone", "-q", &url, "clone"])
            .envs(server.auth_env()),
    );
    let clone = work.path().join("clone");
    assert_eq!(
        stdout(&succeed(git(&clone).args(["rev-parse", "HEAD"]))),
        seeded
    );
    let original = std::fs::read_to_string(clone.join("clusters/prod/checkout.yaml")).unwrap();
    assert!(original.contains(&checkout_yaml("1.2.3")), "{original}");

    let pushed = commit_change(
        &clone,
        "clusters/prod/checkout.yaml",
        &checkout_yaml("1.2.3"),
        &checkout_yaml("1.2.4"),
        "Update checkout to 1.2.4\n\nAutomated.",
    );
    succeed(
        git(&clone)
            .args([
                "push",
                "-q",
                "origin",
                "HEAD:main",
                "HEAD:refs/heads/automation",
            ])
            .envs(server.auth_env()),
    );

    assert_eq!(
        repos.head_commit("fleet", "main").unwrap().as_deref(),
        Some(pushed.as_str())
    );
    assert_eq!(
        repos.head_commit("fleet", "automation").unwrap().as_deref(),
        Some(pushed.as_str())
    );
    assert_eq!(repos.branches("fleet").unwrap(), ["automation", "main"]);
    assert_eq!(
        repos.commit_message("fleet", &pushed).unwrap(),
        "Update checkout to 1.2.4\n\nAutomated.\n"
    );
    assert_eq!(
        repos.commit_parents("fleet", &pushed).unwrap(),
        std::slice::from_ref(&seeded)
    );
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 2);
    let log = repos.log("fleet", "main").unwrap();
    assert_eq!(
        log,
        [
            (pushed.clone(), "Update checkout to 1.2.4".to_string()),
            (seeded, "Add fixtures".to_string())
        ]
    );
    let updated = repos
        .file_at("fleet", "main", "clusters/prod/checkout.yaml")
        .unwrap()
        .unwrap();
    assert_eq!(
        updated,
        original.replace(&checkout_yaml("1.2.3"), &checkout_yaml("1.2.4"))
    );
    assert_eq!(
        repos
            .file_at("fleet", "main", "clusters/prod/missing.yaml")
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn http_rejects_wrong_credentials_and_keeps_the_branch() {
    let server = GitHttpServer::start(GitHttpServerOptions {
        username: Some("flux".into()),
        password: Some("s3cret: with spaces & symbols".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let repos = server.repos();
    let seeded = repos.create("fleet", &seed_manifests(REGISTRY)).unwrap();
    let work = tempfile::tempdir().unwrap();

    // No credentials at all: 401 and git cannot ask anyone.
    fail(git(work.path()).args(["clone", "-q", &server.url("fleet"), "anonymous"]));

    // Credentials in the URL (percent-encoded) work for the CLI.
    succeed(git(work.path()).args([
        "clone",
        "-q",
        &server.url_with_credentials("fleet"),
        "clone",
    ]));
    let clone = work.path().join("clone");
    succeed(git(&clone).args(["remote", "set-url", "origin", &server.url("fleet")]));
    commit_change(
        &clone,
        "README.md",
        "# fleet",
        "# fleet (changed)",
        "Change the title",
    );

    // A wrong password in the header: the server answers 401 and nothing lands.
    let out = fail(
        push_main(&clone)
            .envs(auth_env("flux", "wrong"))
            .env("GIT_TRACE_CURL", "1")
            .env("GIT_TRACE_CURL_NO_DATA", "1"),
    );
    let trace = stderr(&out);
    assert!(trace.contains("HTTP/1.1 401 Unauthorized"), "{trace}");
    assert!(!trace.contains("HTTP/1.1 200"), "{trace}");

    // A wrong password through GIT_ASKPASS: git reports the authentication failure.
    let askpass = work.path().join("askpass.sh");
    std::fs::write(
        &askpass,
        "#!/bin/sh\ncase \"$1\" in Username*) echo flux ;; *) echo wrong ;; esac\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = fail(push_main(&clone).env("GIT_ASKPASS", &askpass));
    assert_stderr_contains(&out, "Authentication failed");

    assert_eq!(repos.head_commit("fleet", "main").unwrap(), Some(seeded));
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 1);
    assert_eq!(repos.branches("fleet").unwrap(), ["main"]);

    // The right password through the same header goes through.
    succeed(push_main(&clone).envs(server.auth_env()));
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 2);
}

#[tokio::test]
async fn http_speaks_protocol_v2_and_serves_shallow_clones() {
    let server = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let repos = server.repos();
    repos.create("fleet", &seed_manifests(REGISTRY)).unwrap();
    repos
        .commit_files("fleet", "main", &[("a.txt", "a\n")], "Add a\n")
        .unwrap();
    let tip = repos
        .commit_files("fleet", "main", &[("b.txt", "b\n")], "Add b\n")
        .unwrap();
    let work = tempfile::tempdir().unwrap();

    let out = succeed(
        git(work.path())
            .args([
                "-c",
                "protocol.version=2",
                "clone",
                "--depth",
                "1",
                &server.url("fleet"),
                "shallow",
            ])
            .envs(server.auth_env())
            .env("GIT_TRACE_PACKET", "1"),
    );
    let trace = stderr(&out);
    assert!(
        trace.contains("clone< version 2"),
        "no v2 greeting in:\n{trace}"
    );
    assert!(
        trace.contains("clone> command=fetch"),
        "no v2 fetch command in:\n{trace}"
    );
    assert!(trace.contains("clone> deepen 1"), "no deepen in:\n{trace}");
    let shallow = work.path().join("shallow");
    assert_eq!(
        stdout(&succeed(
            git(&shallow).args(["rev-parse", "--is-shallow-repository"])
        )),
        "true"
    );
    assert_eq!(
        stdout(&succeed(
            git(&shallow).args(["rev-list", "--count", "HEAD"])
        )),
        "1"
    );
    assert_eq!(
        stdout(&succeed(git(&shallow).args(["rev-parse", "HEAD"]))),
        tip
    );

    // Pushing from a shallow clone works, as the automation controller does.
    let pushed = commit_change(&shallow, "b.txt", "b", "bb", "Change b");
    succeed(push_main(&shallow).envs(server.auth_env()));
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(pushed.clone())
    );
    assert_eq!(repos.commit_parents("fleet", &pushed).unwrap(), [tip]);
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 4);
}

#[tokio::test]
async fn ssh_clone_commit_push_read_back() {
    let server = GitSshServer::start().await.unwrap();
    let repos = server.repos();
    let seeded = repos.create("fleet", &seed_manifests(REGISTRY)).unwrap();
    let work = tempfile::tempdir().unwrap();
    assert!(
        server
            .known_hosts()
            .starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", server.port()))
    );
    assert!(
        server
            .identity_pem()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    assert!(server.url("fleet").starts_with(&format!(
        "ssh://{}@127.0.0.1:{}/",
        server.user(),
        server.port()
    )));

    let out = succeed(
        git(work.path())
            .args([
                "-c",
                "protocol.version=2",
                "clone",
                &server.url("fleet"),
                "clone",
            ])
            .env("GIT_SSH_COMMAND", server.git_ssh_command())
            .env("GIT_TRACE_PACKET", "1"),
    );
    // sshd accepts GIT_PROTOCOL, so SSH speaks v2 as well.
    assert_stderr_contains(&out, "clone< version 2");
    let clone = work.path().join("clone");
    assert_eq!(
        stdout(&succeed(git(&clone).args(["rev-parse", "HEAD"]))),
        seeded
    );

    let pushed = commit_change(
        &clone,
        "clusters/prod/checkout.yaml",
        &checkout_yaml("1.2.3"),
        &checkout_yaml("2.0.0"),
        "Update checkout to 2.0.0",
    );
    succeed(push_main(&clone).env("GIT_SSH_COMMAND", server.git_ssh_command()));
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(pushed.clone())
    );
    assert_eq!(
        repos.commit_message("fleet", "main").unwrap(),
        "Update checkout to 2.0.0\n"
    );
    assert_eq!(
        repos.commit_author("fleet", "main").unwrap(),
        "Testbed User <user@testbed.invalid>"
    );
    let file = repos
        .file_at("fleet", &pushed, "clusters/prod/checkout.yaml")
        .unwrap()
        .unwrap();
    assert!(file.contains(&checkout_yaml("2.0.0")), "{file}");
}

#[tokio::test]
async fn ssh_rejects_unknown_host_and_unknown_key() {
    let server = GitSshServer::start().await.unwrap();
    let repos = server.repos();
    let seeded = repos.create("fleet", &seed_manifests(REGISTRY)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let empty_known_hosts = work.path().join("known_hosts.empty");
    std::fs::write(&empty_known_hosts, "").unwrap();
    let unknown_host = ssh_command(server.identity_path(), &empty_known_hosts);

    let out = fail(
        git(work.path())
            .args(["clone", "-q", &server.url("fleet"), "nope"])
            .env("GIT_SSH_COMMAND", &unknown_host),
    );
    assert_stderr_contains(&out, "Host key verification failed");

    succeed(
        git(work.path())
            .args(["clone", "-q", &server.url("fleet"), "clone"])
            .env("GIT_SSH_COMMAND", server.git_ssh_command()),
    );
    let clone = work.path().join("clone");
    commit_change(
        &clone,
        "README.md",
        "# fleet",
        "# fleet (changed)",
        "Change the title",
    );
    let out = fail(push_main(&clone).env("GIT_SSH_COMMAND", &unknown_host));
    assert_stderr_contains(&out, "Host key verification failed");

    // A key that is not in authorized_keys.
    let other_key = work.path().join("other_ed25519");
    succeed(
        Command::new(testbed::tools::ssh_keygen().unwrap())
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other_key),
    );
    let unknown_key = ssh_command(&other_key, server.known_hosts_path());
    let out = fail(push_main(&clone).env("GIT_SSH_COMMAND", &unknown_key));
    assert_stderr_contains(&out, "Permission denied (publickey)");

    assert_eq!(repos.head_commit("fleet", "main").unwrap(), Some(seeded));
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 1);
}

#[tokio::test]
async fn one_root_served_over_http_and_ssh() {
    let servers = GitServers::start().await.unwrap();
    servers
        .repos()
        .create("org/fleet", &seed_manifests(REGISTRY))
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    assert!(servers.http.url("org/fleet").ends_with("/org/fleet.git"));

    succeed(
        git(work.path())
            .args(["clone", "-q", &servers.http.url("org/fleet"), "clone"])
            .envs(servers.http.auth_env()),
    );
    let clone = work.path().join("clone");
    let pushed = commit_change(
        &clone,
        "README.md",
        "# fleet",
        "# fleet over http",
        "Over HTTP",
    );
    succeed(push_main(&clone).envs(servers.http.auth_env()));

    let out = succeed(
        git(work.path())
            .args([
                "ls-remote",
                &servers.ssh.url("org/fleet"),
                "refs/heads/main",
            ])
            .env("GIT_SSH_COMMAND", servers.ssh.git_ssh_command()),
    );
    assert_eq!(stdout(&out), format!("{pushed}\trefs/heads/main"));
}

#[test]
fn bare_repos_seed_deterministically_and_read_back() {
    let a = BareRepos::new().unwrap();
    let b = BareRepos::new().unwrap();
    let files = seed_manifests(REGISTRY);
    let head = a.create("fleet", &files).unwrap();
    assert_eq!(
        b.create("fleet", &files).unwrap(),
        head,
        "same fixture, same commit id"
    );
    assert!(
        a.create("fleet", &files).is_err(),
        "creating twice is an error"
    );

    assert_eq!(
        a.head_commit("fleet", "main").unwrap().as_deref(),
        Some(head.as_str())
    );
    assert_eq!(a.head_commit("fleet", "nope").unwrap(), None);
    assert!(a.head_commit("absent", "main").is_err());
    let head_ref = std::fs::read_to_string(a.path("fleet").join("HEAD")).unwrap();
    assert_eq!(head_ref.trim(), "ref: refs/heads/main");
    let receivepack = succeed(a.git("fleet").unwrap().args(["config", "http.receivepack"]));
    assert_eq!(stdout(&receivepack), "true");

    let mut paths: Vec<String> = files.iter().map(|(path, _)| path.clone()).collect();
    paths.sort();
    assert_eq!(a.files_at("fleet", "main").unwrap(), paths);
    for (path, contents) in &files {
        assert_eq!(
            a.file_at("fleet", &head, path).unwrap().as_ref(),
            Some(contents)
        );
    }
    let checkout = a
        .file_at("fleet", "main", "clusters/prod/checkout.yaml")
        .unwrap()
        .unwrap();
    assert!(checkout.contains(&checkout_yaml("1.2.3")), "{checkout}");
    assert_eq!(a.commit_message("fleet", "main").unwrap(), "Add fixtures\n");
    assert_eq!(
        a.commit_author("fleet", "main").unwrap(),
        format!("{} <{}>", FIXTURE_AUTHOR.0, FIXTURE_AUTHOR.1)
    );
    assert_eq!(
        a.commit_committer("fleet", "main").unwrap(),
        format!("{} <{}>", FIXTURE_AUTHOR.0, FIXTURE_AUTHOR.1)
    );

    // A later commit replaces one file, adds another and keeps the rest.
    let next = a
        .commit_files(
            "fleet",
            "main",
            &[("README.md", "changed\n"), ("new/file.txt", "new\n")],
            "Upstream change\n",
        )
        .unwrap();
    assert_eq!(
        a.commit_parents("fleet", &next).unwrap(),
        std::slice::from_ref(&head)
    );
    assert_eq!(
        a.file_at("fleet", "main", "README.md").unwrap().as_deref(),
        Some("changed\n")
    );
    assert_eq!(
        a.file_at("fleet", "main", "new/file.txt")
            .unwrap()
            .as_deref(),
        Some("new\n")
    );
    assert_eq!(a.file_at("fleet", &head, "new/file.txt").unwrap(), None);
    assert_eq!(a.files_at("fleet", "main").unwrap().len(), files.len() + 1);
    assert_eq!(a.commit_count("fleet", "main").unwrap(), 2);
    assert_eq!(
        a.log("fleet", "main").unwrap()[0],
        (next, "Upstream change".to_string())
    );

    // A new branch starts from nothing; an empty repository has no branches.
    a.commit_files("fleet", "orphan", &[("x", "x")], "Orphan")
        .unwrap();
    assert_eq!(a.branches("fleet").unwrap(), ["main", "orphan"]);
    a.create_empty("empty").unwrap();
    assert!(a.branches("empty").unwrap().is_empty());
    assert_eq!(a.head_commit("empty", "main").unwrap(), None);
}

#[tokio::test]
async fn https_clones_with_the_servers_ca_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["right", "other"] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
    }
    let certs = Certificates::generate(&dir.path().join("right")).unwrap();
    let other = Certificates::generate(&dir.path().join("other")).unwrap();
    let server = GitHttpServer::start(GitHttpServerOptions {
        tls: Some(certs.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let seeded = server
        .repos()
        .create("fleet", &seed_manifests(REGISTRY))
        .unwrap();
    let url = server.url_with_credentials("fleet");
    assert!(url.starts_with("https://"), "{url}");
    let work = tempfile::tempdir().unwrap();

    // Another CA: the certificate does not verify and nothing is cloned.
    let out = fail(
        git(work.path())
            .env("GIT_SSL_CAINFO", &other.ca_cert)
            .args(["clone", "-q", &url, "refused"]),
    );
    assert!(
        stderr(&out).contains("certificate verification failed"),
        "{}",
        stderr(&out)
    );

    // The server's CA: cloned over TLS, at the seeded commit.
    succeed(
        git(work.path())
            .env("GIT_SSL_CAINFO", &certs.ca_cert)
            .args(["clone", "-q", &url, "clone"]),
    );
    let head = succeed(git(&work.path().join("clone")).args(["rev-parse", "HEAD"]));
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), seeded);
}
