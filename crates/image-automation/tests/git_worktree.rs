#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The persistent worktree (over the testbed's smart-HTTP server): a second run reuses it
//! and rewrites nothing it does not have to, remote changes (edits, deletions, new
//! directories, executable bits, symlinks) are picked up, and whatever an aborted run left
//! behind (edits, junk, deletions, a commit whose push failed, a damaged state file) never
//! reaches the next commit.

mod git_common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use git_common::*;
use image_automation::git::{GitError, GitRef, PushSpec};
use testbed::git::BareRepos;

/// Every file (and symlink) under `dir` with its content (a link's target).
fn tree_on_disk(dir: &Path) -> BTreeMap<String, (bool, bool, Vec<u8>)> {
    fn go(dir: &Path, prefix: &str, out: &mut BTreeMap<String, (bool, bool, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                out.insert(
                    rel,
                    (true, false, target.as_os_str().as_encoded_bytes().to_vec()),
                );
            } else if meta.is_dir() {
                go(&e.path(), &rel, out);
            } else {
                let exec = meta.mode() & 0o111 != 0;
                out.insert(rel, (false, exec, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, "", &mut out);
    out
}

/// What `rev` holds, read with the git CLI from the bare repository.
fn tree_in_git(
    repos: &BareRepos,
    name: &str,
    rev: &str,
) -> BTreeMap<String, (bool, bool, Vec<u8>)> {
    let out = repos
        .git(name)
        .unwrap()
        .args(["ls-tree", "-r", "-z", "--full-tree", rev])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut files = BTreeMap::new();
    for record in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let record = String::from_utf8(record.to_vec()).unwrap();
        let (meta, path) = record.split_once('\t').unwrap();
        let parts: Vec<&str> = meta.split(' ').collect();
        let blob = repos
            .git(name)
            .unwrap()
            .args(["cat-file", "blob", parts[2]])
            .output()
            .unwrap();
        assert!(blob.status.success());
        files.insert(
            path.to_string(),
            (parts[0] == "120000", parts[0] == "100755", blob.stdout),
        );
    }
    files
}

/// Changes the remote's `main` with the git CLI in a scratch clone: `edit` gets the
/// clone's directory; everything it leaves is committed and pushed.
fn remote_edit(repos: &BareRepos, name: &str, edit: impl FnOnce(&Path)) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("c");
    let (ok, text) = output(
        git_in(scratch.path())
            .args(["clone", "-q", "--branch", "main"])
            .arg(repos.path(name))
            .arg(&dir),
    );
    assert!(ok, "{text}");
    edit(&dir);
    for args in [
        &["add", "-A"][..],
        &[
            "-c",
            "user.name=Human",
            "-c",
            "user.email=h@example.invalid",
            "commit",
            "-q",
            "-m",
            "remote edit",
        ][..],
        &["push", "-q", "origin", "HEAD:main"][..],
    ] {
        let (ok, text) = output(git_in(&dir).args(args));
        assert!(ok, "git {args:?}: {text}");
    }
    let (ok, head) = output(git_in(&dir).args(["rev-parse", "HEAD"]));
    assert!(ok);
    head.trim().to_string()
}

#[tokio::test]
async fn second_run_reuses_the_worktree_and_pushes_exact_bytes() {
    let (server, seeded) = http_fleet().await;
    let repos = server.repos();
    let (_storage, cache) = new_cache();
    let spec = http_spec(&server, "fleet");
    let main = GitRef::branch("main");

    // First checkout: a full one, matching the commit exactly.
    let (root, readme_ino) = {
        let locked = cache.open(&spec).unwrap();
        let co = locked.checkout(&main, None).unwrap();
        assert!(co.prepared.full);
        assert_eq!(
            co.prepared.written,
            repos.files_at("fleet", &seeded).unwrap().len()
        );
        assert_eq!(
            tree_on_disk(co.worktree.path()),
            tree_in_git(repos, "fleet", &seeded)
        );
        let ino = std::fs::metadata(co.worktree.path().join("README.md"))
            .unwrap()
            .ino();
        (co.worktree.path().to_path_buf(), ino)
    };

    // A run: one commit, only the marked line of one file changed.
    let req = request(spec.clone(), main.clone(), PushSpec::default());
    let mut seen = None;
    let out = run(&cache, &req, move |d| {
        assert!(seen.replace(d.to_path_buf()).is_none(), "one attempt");
        set_tag(d, "1.2.3", "1.2.4")
    })
    .await
    .unwrap();
    let pushed = out.pushed.unwrap();
    assert_only_tag_changed(repos, "fleet", &seeded, &pushed.commit, "1.2.3", "1.2.4");

    // The next checkout is the same directory, already at the pushed commit: nothing is
    // written, nothing removed, untouched files keep their inode.
    let locked = cache.open(&spec).unwrap();
    let co = locked.checkout(&main, None).unwrap();
    assert_eq!(co.worktree.path(), root);
    assert_eq!(co.worktree.base().to_string(), pushed.commit);
    assert!(!co.prepared.full);
    assert!(co.prepared.scanned, "every run verifies the tree");
    assert_eq!(
        (
            co.prepared.written,
            co.prepared.removed,
            co.prepared.drifted
        ),
        (0, 0, 0)
    );
    assert_eq!(
        std::fs::metadata(root.join("README.md")).unwrap().ino(),
        readme_ino
    );
    assert_eq!(
        tree_on_disk(&root),
        tree_in_git(repos, "fleet", &pushed.commit)
    );
    drop(co);
    drop(locked);

    // A second run on top of the first.
    let second = push_tag_on(
        &cache,
        &req,
        (repos, "fleet"),
        &pushed.commit,
        ("1.2.4", "1.2.5"),
    )
    .await;
    assert_only_tag_changed(repos, "fleet", &seeded, &second.commit, "1.2.3", "1.2.5");
    assert_eq!(
        tree_on_disk(&root),
        tree_in_git(repos, "fleet", &second.commit)
    );
}

#[tokio::test]
async fn remote_changes_between_runs_are_picked_up() {
    let (server, _) = http_fleet().await;
    let repos = server.repos();
    let (_storage, cache) = new_cache();
    let spec = http_spec(&server, "fleet");
    let main = GitRef::branch("main");
    let req = request(spec.clone(), main.clone(), PushSpec::default());
    run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap()
        .pushed
        .unwrap();

    // Someone edits a file, deletes one (emptying its directory), adds a file in a new
    // directory, an executable and a symlink, and turns a file into a directory.
    let theirs = remote_edit(repos, "fleet", |d| {
        std::fs::write(d.join("README.md"), "# fleet\n\nedited by a human\n").unwrap();
        std::fs::remove_dir_all(d.join("clusters/staging")).unwrap();
        std::fs::create_dir_all(d.join("apps/new")).unwrap();
        std::fs::write(d.join("apps/new/app.yaml"), "kind: App\n").unwrap();
        std::fs::write(d.join("apps/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(
            d.join("apps/run.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("../clusters/prod/checkout.yaml", d.join("apps/link.yaml"))
            .unwrap();
        std::fs::remove_file(d.join("clusters/prod/configmap.yaml")).unwrap();
        std::fs::create_dir(d.join("clusters/prod/configmap.yaml")).unwrap();
        std::fs::write(d.join("clusters/prod/configmap.yaml/data.yaml"), "a: b\n").unwrap();
    });
    assert!(
        tree_in_git(repos, "fleet", &theirs)["apps/run.sh"].1,
        "the executable bit reached the remote"
    );

    {
        let locked = cache.open(&spec).unwrap();
        let co = locked.checkout(&main, None).unwrap();
        assert!(!co.prepared.full);
        assert_eq!(co.worktree.base().to_string(), theirs);
        assert!(co.prepared.written >= 5, "{:?}", co.prepared);
        assert_eq!(
            tree_on_disk(co.worktree.path()),
            tree_in_git(repos, "fleet", &theirs)
        );
        assert!(!co.worktree.path().join("clusters/staging").exists());
    }

    // And the next commit builds on their commit, changing only our file.
    let ours = push_tag_on(&cache, &req, (repos, "fleet"), &theirs, ("1.2.4", "1.2.5")).await;
    assert_only_file_differs(repos, "fleet", &theirs, &ours.commit);
}

#[tokio::test]
async fn an_aborted_run_leaves_nothing_for_the_next() {
    let (server, seeded) = http_fleet().await;
    let repos = server.repos();
    let (_storage, cache) = new_cache();
    let spec = http_spec(&server, "fleet");
    let main = GitRef::branch("main");
    let req = request(spec.clone(), main.clone(), PushSpec::default());

    // The update edits a file, deletes another, leaves junk, then fails.
    let err = run(&cache, &req, |d| {
        set_tag(d, "1.2.3", "9.9.9")?;
        std::fs::remove_file(d.join("README.md"))?;
        std::fs::create_dir_all(d.join("junk/deeper"))?;
        std::fs::write(d.join("junk/deeper/half.yaml"), "half-writ")?;
        std::fs::write(d.join("clusters/prod/kustomization.yaml"), "truncat")?;
        Err("the update failed halfway".into())
    })
    .await
    .unwrap_err();
    assert!(matches!(err, GitError::Apply(_)), "{err}");
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(seeded.clone())
    );

    // An update that writes but reports nothing to do leaves no trace either.
    let out = run(&cache, &req, |d| {
        std::fs::write(d.join("README.md"), "scribbled")?;
        Ok(None)
    })
    .await
    .unwrap();
    assert_eq!(out.pushed, None);
    {
        let locked = cache.open(&spec).unwrap();
        let co = locked.checkout(&main, None).unwrap();
        assert!(
            co.prepared.scanned,
            "nothing verified the tree since the update wrote"
        );
        assert_eq!(
            tree_on_disk(co.worktree.path()),
            tree_in_git(repos, "fleet", &seeded)
        );
    }

    // The next run sees the pristine commit and commits only its own edit.
    let out = run(&cache, &req, move |d| {
        assert!(!d.join("junk").exists());
        set_tag(d, "1.2.3", "1.2.4")
    })
    .await
    .unwrap();
    let pushed = out.pushed.unwrap();
    assert_only_tag_changed(repos, "fleet", &seeded, &pushed.commit, "1.2.3", "1.2.4");

    // A commit whose push failed (a hook refuses it) is not the base of the next run:
    // its edit is undone and the next commit is built on the remote head.
    let hook = repos.path("fleet").join("hooks/pre-receive");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(&hook, "#!/bin/sh\necho refused >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = run(&cache, &req, |d| set_tag(d, "1.2.4", "6.6.6"))
        .await
        .unwrap_err();
    std::fs::remove_file(&hook).unwrap();
    assert!(matches!(err, GitError::PushFailed(_)), "{err}");
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(pushed.commit.clone())
    );
    let out = run(&cache, &req, |d| {
        let text = std::fs::read_to_string(d.join(FILE))?;
        assert!(!text.contains("6.6.6"), "the unpushed edit was undone");
        set_tag(d, "1.2.4", "1.2.5")
    })
    .await
    .unwrap();
    let second = out.pushed.unwrap();
    assert_eq!(
        repos.commit_parents("fleet", &second.commit).unwrap(),
        std::slice::from_ref(&pushed.commit)
    );

    // Edits that keep a file's size, made right after the checkout (same clock tick as
    // the recorded state, where stat data alone cannot tell), are still committed.
    let out = run(&cache, &req, |d| {
        let text = std::fs::read_to_string(d.join(FILE))?;
        std::fs::write(d.join(FILE), text.replace("1.2.5", "1.2.6"))?;
        wrote("same size", &[FILE])
    })
    .await
    .unwrap();
    let third = out.pushed.expect("the same-size edit was seen");
    assert!(
        repos
            .file_at("fleet", &third.commit, FILE)
            .unwrap()
            .unwrap()
            .contains(&checkout_line("1.2.6"))
    );

    // A damaged state file means a full checkout, still exact.
    let locked = cache.open(&spec).unwrap();
    let root = locked
        .checkout(&main, None)
        .unwrap()
        .worktree
        .path()
        .to_path_buf();
    let state = root.parent().unwrap().join("state");
    std::fs::write(&state, "iua-worktree 1\ncommit nonsense\n").unwrap();
    std::fs::write(root.join("stray.yaml"), "x").unwrap();
    let co = locked.checkout(&main, None).unwrap();
    assert!(co.prepared.full);
    assert_eq!(
        tree_on_disk(co.worktree.path()),
        tree_in_git(repos, "fleet", &third.commit)
    );
}

/// Only the files the update names are committed, each a file the base tracks: what else
/// differs on disk stays out, and a named path that is untracked, outside the worktree or
/// behind a symlink is refused (nothing pushed).
#[tokio::test]
async fn only_the_written_files_are_committed() {
    let (server, seeded) = http_fleet().await;
    let repos = server.repos();
    let (_storage, cache) = new_cache();
    let spec = http_spec(&server, "fleet");
    let req = request(spec, GitRef::branch("main"), PushSpec::default());

    // Other edits in the same run (not named) are not committed.
    let out = run(&cache, &req, |d| {
        std::fs::write(d.join("README.md"), "scribbled by someone else\n")?;
        std::fs::write(d.join("clusters/prod/new.yaml"), "kind: Junk\n")?;
        set_tag(d, "1.2.3", "1.2.4")
    })
    .await
    .unwrap();
    let pushed = out.pushed.unwrap();
    assert_only_tag_changed(repos, "fleet", &seeded, &pushed.commit, "1.2.3", "1.2.4");

    // Named paths the update may not commit.
    for (what, bad) in [
        ("untracked", "clusters/prod/new.yaml"),
        ("outside", "../outside.yaml"),
        ("absolute elsewhere", "/etc/hostname"),
        ("through a symlinked directory", "linked/checkout.yaml"),
    ] {
        let err = run(&cache, &req, move |d| {
            std::fs::write(d.join("clusters/prod/new.yaml"), "kind: Junk\n")?;
            let _ = std::os::unix::fs::symlink(d.join("clusters/prod"), d.join("linked"));
            set_tag(d, "1.2.4", "1.2.5")?;
            wrote("bad", &[FILE, bad])
        })
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("refusing to commit"),
            "{what}: {err}"
        );
        assert_eq!(
            repos.head_commit("fleet", "main").unwrap().as_deref(),
            Some(pushed.commit.as_str()),
            "{what}: something was pushed"
        );
    }
}

/// The base tree's paths at or under `prefix`.
fn under(
    files: &BTreeMap<String, (bool, bool, Vec<u8>)>,
    prefix: &str,
) -> BTreeMap<String, (bool, bool, Vec<u8>)> {
    files
        .iter()
        .filter(|(p, _)| p.starts_with(&format!("{prefix}/")))
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect()
}

#[tokio::test]
async fn sparse_checkout_materialises_only_the_update_path_and_commits_the_whole_tree() {
    let (server, seeded) = http_fleet().await;
    let repos = server.repos();
    let (_storage, cache) = new_cache();
    let spec = http_spec(&server, "fleet");
    let main = GitRef::branch("main");
    let base = tree_in_git(repos, "fleet", &seeded);
    let sparse = "clusters/prod";
    assert!(
        base.keys().any(|p| !p.starts_with("clusters/prod/")),
        "the fixture has files outside the update path"
    );
    let mut req = request(spec.clone(), main.clone(), PushSpec::default());
    req.sparse = image_automation::git::sparse_path("./clusters//prod/");
    assert_eq!(req.sparse.as_deref(), Some(sparse));

    // The update sees only the update path, exactly as the base commit has it.
    let expected = under(&base, sparse);
    let out = run(&cache, &req, move |d| {
        assert_eq!(tree_on_disk(d), expected);
        set_tag(d, "1.2.3", "1.2.4")
    })
    .await
    .unwrap();
    let pushed = out.pushed.unwrap();
    // The pushed tree is the base tree with only the marker changed (`git ls-tree -r`).
    assert_only_tag_changed(repos, "fleet", &seeded, &pushed.commit, "1.2.3", "1.2.4");
    let mut after = tree_in_git(repos, "fleet", &pushed.commit);
    let mut before = base.clone();
    assert_ne!(after.remove(FILE), before.remove(FILE));
    assert_eq!(after, before, "every other path of the base tree is intact");

    // Someone edits a file outside the update path; junk and an edit land in the
    // worktree, inside and outside it. Verification looks at the sparse set only: the
    // edit inside is restored, junk removed, and nothing outside is written.
    let theirs = remote_edit(repos, "fleet", |d| {
        std::fs::write(d.join("README.md"), "# fleet\n\nedited by a human\n").unwrap();
    });
    let root = {
        let locked = cache.open(&spec).unwrap();
        let co = locked
            .checkout_sparse(&main, None, req.sparse.as_deref())
            .unwrap();
        co.worktree.path().to_path_buf()
    };
    std::fs::write(root.join(FILE), "edited by an aborted run\n").unwrap();
    std::fs::write(root.join("clusters/prod/junk.yaml"), "junk: 1\n").unwrap();
    std::fs::write(root.join("README.md"), "junk outside\n").unwrap();
    {
        let locked = cache.open(&spec).unwrap();
        let co = locked
            .checkout_sparse(&main, None, req.sparse.as_deref())
            .unwrap();
        assert_eq!(co.worktree.path(), root);
        assert_eq!(co.worktree.base().to_string(), theirs);
        assert!(!co.prepared.full);
        assert_eq!(
            (
                co.prepared.written,
                co.prepared.removed,
                co.prepared.drifted
            ),
            (1, 2, 1),
            "the drifted marker file rewritten, the two junk files removed"
        );
        assert_eq!(
            tree_on_disk(&root),
            under(&tree_in_git(repos, "fleet", &theirs), sparse)
        );
    }

    // The next commit keeps the remote's edit outside the update path.
    let second = push_tag_on(&cache, &req, (repos, "fleet"), &theirs, ("1.2.4", "1.2.5")).await;
    assert_only_file_differs(repos, "fleet", &theirs, &second.commit);
    assert_eq!(
        repos
            .file_at("fleet", &second.commit, "README.md")
            .unwrap()
            .unwrap(),
        "# fleet\n\nedited by a human\n"
    );

    // A full checkout of the same ref is its own worktree, with every file.
    let locked = cache.open(&spec).unwrap();
    let co = locked.checkout(&main, None).unwrap();
    assert_ne!(co.worktree.path(), root);
    assert_eq!(
        tree_on_disk(co.worktree.path()),
        tree_in_git(repos, "fleet", &second.commit)
    );
}
