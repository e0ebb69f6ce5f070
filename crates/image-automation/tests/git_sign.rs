#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Signed commits (OpenPGP via rPGP, SSH via ssh-keygen) verify with `git verify-commit`.

mod git_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use git_common::*;
use image_automation::git::{GitAuth, GitCache, GitError, GitRef, PushSpec, RepoSpec, SigningKey};
use testbed::git::{GitHttpServer, GitHttpServerOptions};

async fn setup() -> (GitHttpServer, RepoSpec) {
    let server = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    seed(server.repos(), "fleet");
    let url = server.url("fleet");
    let data = BTreeMap::from([
        (
            "username".to_string(),
            server.username().as_bytes().to_vec(),
        ),
        (
            "password".to_string(),
            server.password().as_bytes().to_vec(),
        ),
    ]);
    let auth = GitAuth::from_secret(&url, Some(&data)).unwrap();
    (server, RepoSpec::new(url, auth))
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home)
        .args(["--batch", "--pinentry-mode", "loopback"]);
    c
}

#[tokio::test]
async fn openpgp_signed_commit_verifies() {
    let (server, repo) = setup().await;
    let home = tempfile::tempdir().unwrap();
    let params = home.path().join("params");
    std::fs::write(
        &params,
        "Key-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign\nName-Real: Flux Bot\n\
         Name-Email: flux@example.invalid\nExpire-Date: 0\nPassphrase: s3cret-pass\n%commit\n",
    )
    .unwrap();
    let (ok, o) = output(gpg(home.path()).arg("--gen-key").arg(&params));
    assert!(ok, "{o}");
    let out = gpg(home.path())
        .args([
            "--passphrase",
            "s3cret-pass",
            "--armor",
            "--export-secret-keys",
            "flux@example.invalid",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let armored = String::from_utf8(out.stdout).unwrap();
    let data = |pass: &str| {
        BTreeMap::from([
            ("git.asc".to_string(), armored.as_bytes().to_vec()),
            ("passphrase".to_string(), pass.as_bytes().to_vec()),
        ])
    };
    let key = SigningKey::from_secret(None, &data("s3cret-pass")).unwrap();
    assert!(!format!("{key:?}").contains("PGP"));
    let storage = tempfile::tempdir().unwrap();
    let cache = Arc::new(GitCache::new(storage.path()));
    let req = with_signing(
        request(repo.clone(), GitRef::branch("main"), PushSpec::default()),
        key,
    );
    let pushed = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap()
        .pushed
        .unwrap();

    let repos = server.repos();
    let (ok, text) = output(
        repos
            .git("fleet")
            .unwrap()
            .env("GNUPGHOME", home.path())
            .args(["verify-commit", "-v", &pushed.commit]),
    );
    assert!(ok, "{text}");
    assert!(text.contains("Good signature"), "{text}");
    let (ok, log) = output(
        repos
            .git("fleet")
            .unwrap()
            .env("GNUPGHOME", home.path())
            .args(["log", "-1", "--show-signature", &pushed.commit]),
    );
    assert!(ok && log.contains("Good signature"), "{log}");
    assert_eq!(
        repos.commit_message("fleet", &pushed.commit).unwrap(),
        pushed.message
    );

    // A wrong passphrase fails the run with a signing error; nothing is pushed.
    let bad = SigningKey::from_secret(Some("gpg"), &data("bad-pass-7731")).unwrap();
    let req = with_signing(
        request(repo, GitRef::branch("main"), PushSpec::default()),
        bad,
    );
    let err = run(&cache, &req, |d| set_tag(d, "1.2.4", "1.2.5"))
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::Signing(_)), "{err:?}");
    assert!(!format!("{err}").contains("bad-pass-7731"), "{err}");
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(pushed.commit)
    );

    let missing = SigningKey::from_secret(None, &BTreeMap::new()).unwrap_err();
    assert!(missing.to_string().contains("'git.asc'"), "{missing}");
}

#[tokio::test]
async fn ssh_signed_commit_verifies() {
    let (server, repo) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sign");
    // An encrypted key, so the passphrase path is exercised too.
    let (ok, o) = output(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "ssh-pass-1", "-C", "bot", "-f"])
            .arg(&key),
    );
    assert!(ok, "{o}");
    let data = BTreeMap::from([
        ("identity".to_string(), std::fs::read(&key).unwrap()),
        ("password".to_string(), b"ssh-pass-1".to_vec()),
    ]);
    let signing = SigningKey::from_secret(Some("ssh"), &data).unwrap();
    let storage = tempfile::tempdir().unwrap();
    let cache = Arc::new(GitCache::new(storage.path()));
    let req = with_signing(
        request(repo, GitRef::branch("main"), PushSpec::default()),
        signing,
    );
    let pushed = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap()
        .pushed
        .unwrap();

    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = dir.path().join("allowed_signers");
    let public = public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(
        &allowed,
        format!("flux@example.invalid namespaces=\"git\" {public}\n"),
    )
    .unwrap();
    let (ok, text) = output(
        server
            .repos()
            .git("fleet")
            .unwrap()
            .arg("-c")
            .arg("gpg.format=ssh")
            .arg("-c")
            .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
            .args(["verify-commit", "-v", &pushed.commit]),
    );
    assert!(ok, "{text}");
    assert!(text.contains("Good \"git\" signature"), "{text}");
}
