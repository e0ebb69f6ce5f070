#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The git layer over SSH with a deploy key and pinned host keys (testbed sshd).

mod git_common;

use std::collections::BTreeMap;

use git_common::*;
use image_automation::git::{GitAuth, GitError, GitRef, PushSpec, RepoSpec};
use testbed::git::GitSshServer;

fn secret(identity: &str, known_hosts: &str) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("identity".to_string(), identity.as_bytes().to_vec()),
        ("known_hosts".to_string(), known_hosts.as_bytes().to_vec()),
    ])
}

#[tokio::test]
async fn ssh_commit_and_push_with_deploy_key() {
    let server = GitSshServer::start().await.unwrap();
    let repos = server.repos();
    let seeded = seed(repos, "fleet");
    let url = server.url("fleet");
    let auth = GitAuth::from_secret(
        &url,
        Some(&secret(server.identity_pem(), server.known_hosts())),
    )
    .unwrap();
    let (_storage, cache) = new_cache();
    let req = request(
        RepoSpec::new(url.clone(), auth),
        GitRef::branch("main"),
        PushSpec::default(),
    );

    let out = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap();
    let pushed = out.pushed.unwrap();
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(pushed.commit.clone())
    );
    assert_eq!(
        repos.commit_parents("fleet", &pushed.commit).unwrap(),
        [seeded]
    );
    assert_eq!(
        repos.commit_author("fleet", &pushed.commit).unwrap(),
        "Flux Bot <flux@example.invalid>"
    );
    assert!(
        repos
            .file_at("fleet", "main", FILE)
            .unwrap()
            .unwrap()
            .contains(&checkout_line("1.2.4"))
    );

    // Separate branch over SSH too, then a no-op.
    let push = PushSpec {
        branch: Some("automation".into()),
        ..PushSpec::default()
    };
    let req2 = request(req.repo.clone(), GitRef::branch("main"), push);
    let out = run(&cache, &req2, |d| set_tag(d, "1.2.4", "1.2.5"))
        .await
        .unwrap();
    let branch_commit = out.pushed.unwrap().commit;
    assert_eq!(
        repos.head_commit("fleet", "automation").unwrap(),
        Some(branch_commit)
    );
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(pushed.commit.clone())
    );
    let out = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap();
    assert_eq!(out.pushed, None);
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 2);
}

#[tokio::test]
async fn unknown_host_key_fails_typed_and_pushes_nothing() {
    let server = GitSshServer::start().await.unwrap();
    let repos = server.repos();
    let seeded = seed(repos, "fleet");
    let url = server.url("fleet");
    // Pin some other host's key for this host:port.
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("k");
    let (ok, o) = output(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    assert!(ok, "{o}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let host = server
        .known_hosts()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let wrong = format!(
        "{host} {}\n",
        public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let auth = GitAuth::from_secret(&url, Some(&secret(server.identity_pem(), &wrong))).unwrap();
    let err =
        wrong_credentials_push_nothing(RepoSpec::new(url, auth), (repos, "fleet"), &seeded).await;
    assert!(matches!(err, GitError::UnknownHostKey { .. }), "{err:?}");
}

#[tokio::test]
async fn missing_known_hosts_is_an_invalid_secret() {
    let server = GitSshServer::start().await.unwrap();
    let url = server.url("fleet");
    let data = BTreeMap::from([(
        "identity".to_string(),
        server.identity_pem().as_bytes().to_vec(),
    )]);
    let err = GitAuth::from_secret(&url, Some(&data)).unwrap_err();
    assert!(
        matches!(err, GitError::InvalidSecret(ref m) if m.contains("known_hosts")),
        "{err}"
    );
    assert_eq!(err.flux_reason(), "SourceManagerFailed");
}
