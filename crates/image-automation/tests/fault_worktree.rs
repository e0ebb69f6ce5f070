#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! Issue 12, problem 2: the persistent worktree is never trusted. Files changed behind the
//! controller's back (tracked outside and inside `update.path`, valid and invalid YAML,
//! untracked files) never reach the remote, and a file the update cannot parse is reported
//! rather than skipped silently. Runs `image-automation serve --manifests --once` against
//! the REAL testbed registry, reflector and smart-HTTP git server.

mod serve_common;

use serve_common::*;

#[tokio::test(flavor = "multi_thread")]
async fn tampered_worktree_never_reaches_the_remote() {
    let f = Fleet::start(&[]).await;
    let image = &f.image;

    // A first pushed update: the worktree is now at the pushed commit.
    f.publish("1.3.0").await;
    let (ok, a, log) = f.run_once();
    assert!(ok && a["pushed"] == true, "{a:#}\n{log}");
    let first = f.assert_one_update(&f.seeded, ("1.2.3", "1.3.0"));

    // Behind the controller's back: a tracked file outside update.path, a tracked file
    // inside it (valid YAML, with a marker of its own), the very file the update edits
    // (valid YAML, another field), an untracked file with a marker, and one outside.
    let tree = worktree_dir(&f.storage);
    let tamper = |rel: &str, edit: &dyn Fn(String) -> String| {
        let path = tree.join(rel);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, edit(text)).unwrap();
    };
    tamper("README.md", &|t| t + "garbage outside update.path\n");
    tamper("clusters/prod/payments.yaml", &|t| {
        t.replace("0.4.1", "6.6.6")
    });
    tamper(CHECKOUT, &|t| {
        t.replace("replicas: 2", "replicas: 99") + "# tampered\n"
    });
    tamper("clusters/prod/untracked.yaml", &|_| {
        format!("image: {image}:1.0.0 # {{\"$imagepolicy\": \"flux-system:checkout\"}}\n")
    });
    tamper("untracked-root.txt", &|_| "junk\n".into());

    f.publish("1.4.0").await;
    let (ok, a, log) = f.run_once();
    assert!(ok && a["pushed"] == true, "{a:#}\n{log}");
    // Exactly the marker rewrite on top of the old head: nothing tampered, nothing new.
    let second = f.assert_one_update(&first, ("1.3.0", "1.4.0"));

    // The edited file itself damaged into invalid YAML: restored from the base before the
    // update reads it, so the update happens (it is not skipped) and is exact.
    tamper(CHECKOUT, &|t| t + "  bad: [unclosed\n\t- : :\n");
    f.publish("1.5.0").await;
    let (ok, a, log) = f.run_once();
    assert!(ok && a["pushed"] == true, "{a:#}\n{log}");
    f.assert_one_update(&second, ("1.4.0", "1.5.0"));
    assert!(!log.contains(f.git.password()), "git password logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unparseable_file_is_reported_not_silently_skipped() {
    const BROKEN: &str = "clusters/prod/broken.yaml";
    let broken = "apiVersion: v1\nkind: ConfigMap\ndata:\n  image: \"reg/app:1.0.0 # {\"$imagepolicy\": \"flux-system:checkout\"}\n  [unclosed\n";
    let f = Fleet::start(&[(BROKEN, broken)]).await;
    let (ok, a, log) = f.run_once();
    assert!(ok, "{a:#}\n{log}");
    assert_eq!(a["pushed"], false);
    assert_eq!(
        f.git.repos().head_commit("fleet", "main").unwrap(),
        Some(f.seeded.clone())
    );
    assert!(
        a["unmatched"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["path"] == "broken.yaml" && u["reason"] == "UnparseableFile"),
        "{a:#}"
    );
    // Not a plain "repository up-to-date": the Ready message names the file.
    let message = a["message"].as_str().unwrap();
    assert!(
        message.contains("broken.yaml") && message.contains("could not be parsed"),
        "{message}"
    );
    // And the log says so as a warning (Flux skips such files with a trace log only).
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.windows(2).any(|w| w[0].contains("WARN")
            && w[0].contains("marker(s) not applied")
            && w[1].starts_with("broken.yaml:")
            && w[1].contains("not valid YAML")),
        "{log}"
    );
}

/// A bad disk: a file's content changes while its stat data, as recorded, still matches
/// (simulated by recording the new stat data in the worktree's state file). The walk
/// cannot see it; the update's own reading does: the file is restored from the base and
/// the update applied again, so the push is still exactly the marker rewrite.
#[tokio::test(flavor = "multi_thread")]
async fn drift_the_stat_data_does_not_show_is_caught_by_what_the_update_read() {
    use std::os::unix::fs::MetadataExt as _;
    let f = Fleet::start(&[]).await;
    f.publish("1.3.0").await;
    let (ok, a, log) = f.run_once();
    assert!(ok && a["pushed"] == true, "{a:#}\n{log}");
    let first = f.head();

    // Same length, new content; then the state is made to vouch for it.
    let tree = worktree_dir(&f.storage);
    let file = tree.join(CHECKOUT);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("replicas: 2", "replicas: 7")).unwrap();
    let meta = std::fs::metadata(&file).unwrap();
    let state_path = tree.parent().unwrap().join("state");
    let state = std::fs::read_to_string(&state_path).unwrap();
    let mut vouched = false;
    let state: Vec<String> = state
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.splitn(9, ' ').collect();
            if fields.len() == 9 && fields[8] == CHECKOUT {
                vouched = true;
                format!(
                    "{} {} {} {} {} {} {} {} {}",
                    fields[0],
                    fields[1],
                    meta.size(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.ctime(),
                    meta.ctime_nsec(),
                    meta.ino(),
                    fields[8]
                )
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(vouched, "no state line for {CHECKOUT}");
    // Written later than the file: not "racy", so the walk trusts the stat data.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&state_path, state.join("\n") + "\n").unwrap();

    f.publish("1.4.0").await;
    let (ok, a, log) = f.run_once();
    assert!(ok && a["pushed"] == true, "{a:#}\n{log}");
    f.assert_one_update(&first, ("1.3.0", "1.4.0"));
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("differ from the base commit")),
        "{log}"
    );
}
