//! `image-automation serve --manifests DIR` honours the same directory rules and flags as the
//! reflector's standalone mode (issue 14): `--concurrent` caps the runs in flight,
//! `--watch-label-selector` picks the automations, and a manifest file that cannot be parsed
//! keeps its last good objects while the other files still load.
//!
//! The reflector is a loopback stand-in that records every policy list request and answers
//! 503 (`DependencyNotReady`, retried) after holding it open for a while, so overlapping
//! runs show as overlapping requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testbed::controllers::{serve_manifests_command, start_serving};
use testbed::process::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_image-automation");
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Seen {
    /// Policy list requests being held right now, and the most at once.
    open: usize,
    max_open: usize,
    /// The `namespace=` of every policy list request, in arrival order.
    namespaces: Vec<String>,
}

/// A stand-in reflector on loopback; returns its URL and what it saw.
fn held_reflector(hold: Duration) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = shared.clone();
            std::thread::spawn(move || answer(stream, &seen, hold));
        }
    });
    (url, seen)
}

fn answer(mut stream: TcpStream, seen: &Mutex<Seen>, hold: Duration) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    if request_line.contains("watch=true") {
        // The change feed: never answered (it reconnects on its own).
        std::thread::sleep(Duration::from_secs(3600));
        return;
    }
    let namespace = request_line
        .split(['?', '&', ' '])
        .find_map(|part| part.strip_prefix("namespace="))
        .unwrap_or("")
        .to_owned();
    // Only an automation's run lists one namespace's policies (the feed lists them all).
    let counted = !namespace.is_empty();
    {
        let mut s = seen.lock().unwrap();
        if counted {
            s.open += 1;
            s.max_open = s.max_open.max(s.open);
        }
        s.namespaces.push(namespace);
    }
    std::thread::sleep(hold);
    if counted {
        seen.lock().unwrap().open -= 1;
    }
    let body = r#"{"message":"not yet"}"#;
    let _ = write!(
        stream,
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// An automation `name` in namespace `namespace` with `labels` (YAML flow map).
fn automation(namespace: &str, name: &str, labels: &str) -> String {
    format!(
        "apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}
spec:
  interval: 1h
  sourceRef: {{kind: GitRepository, name: fleet}}
  git:
    commit:
      author: {{name: bot, email: bot@example.invalid}}
  update: {{path: ./, strategy: Setters}}
"
    )
}

fn serve(dir: &Path, tmp: &Path, reflector: &str, port: u16, extra: &[&str]) -> Command {
    let mut command = serve_manifests_command(Path::new(BIN), dir, &tmp.join("git"), port);
    command.args(["--reflector-url", reflector]).args(extra);
    command
}

/// Waits until `check` holds for what the stand-in saw.
async fn wait_seen(seen: &Mutex<Seen>, what: &str, check: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check(&seen.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_caps_the_runs_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    for namespace in ["a", "b", "c"] {
        std::fs::write(
            dir.join(format!("{namespace}.yaml")),
            automation(namespace, "auto", "{}"),
        )
        .unwrap();
    }
    let (reflector, seen) = held_reflector(Duration::from_millis(800));
    let port = free_port().unwrap();
    let command = serve(&dir, tmp.path(), &reflector, port, &["--concurrent", "1"]);
    let (_process, _) = start_serving(
        "image-automation",
        command,
        port,
        &tmp.path().join("automation.log"),
        "/healthz",
        WAIT,
    )
    .await;
    wait_seen(&seen, "a run of each automation", |s| {
        ["a", "b", "c"]
            .iter()
            .all(|ns| s.namespaces.iter().any(|n| n == ns))
    })
    .await;
    let s = seen.lock().unwrap();
    assert_eq!(s.max_open, 1, "--concurrent 1 ran more at once: {s:?}");
}

#[test]
fn watch_label_selector_picks_the_automations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("all.yaml"),
        [
            automation("apps", "mine", "{shard: one}"),
            automation("apps", "other", "{shard: two}"),
            automation("apps", "unlabelled", "{}"),
        ]
        .join("---\n"),
    )
    .unwrap();
    let (reflector, _seen) = held_reflector(Duration::ZERO);
    let port = free_port().unwrap();
    let output = serve(
        &dir,
        tmp.path(),
        &reflector,
        port,
        &["--once", "--watch-label-selector", "shard=one"],
    )
    .output()
    .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let names: Vec<&str> = summary["automations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mine"]);

    let output = serve(
        &dir,
        tmp.path(),
        &reflector,
        port,
        &["--once", "--watch-label-selector", "shard in (one"],
    )
    .output()
    .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "an invalid selector is a usage error"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--watch-label-selector"), "{stderr}");
}

/// The count of finished runs of automation `ns/name` in `/metrics` text.
fn runs(metrics: &str, namespace: &str, name: &str) -> u64 {
    let series = format!(
        r#"gotk_reconcile_duration_seconds_count{{kind="ImageUpdateAutomation",name="{name}",namespace="{namespace}"}} "#
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_file_keeps_its_last_good_objects_and_the_others_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), automation("apps", "a", "{}")).unwrap();
    // Broken from the start: the good files still load.
    std::fs::write(dir.join("broken.yaml"), "kind: [").unwrap();
    let (reflector, _seen) = held_reflector(Duration::ZERO);
    let port = free_port().unwrap();
    let command = serve(&dir, tmp.path(), &reflector, port, &[]);
    let (process, base) = start_serving(
        "image-automation",
        command,
        port,
        &tmp.path().join("automation.log"),
        "/healthz",
        WAIT,
    )
    .await;
    let metrics = async || {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let wait_runs = async |namespace: &str, name: &str, more_than: u64| {
        let deadline = Instant::now() + WAIT;
        loop {
            let count = runs(&metrics().await, namespace, name);
            if count > more_than {
                return count;
            }
            assert!(
                Instant::now() < deadline,
                "{namespace}/{name} ran {count} times"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_runs("apps", "a", 0).await;

    // An edit breaks a.yaml while c.yaml is added: c is picked up, a keeps running from
    // its last good version (the failing reflector has it retried with backoff).
    std::fs::write(dir.join("a.yaml"), "kind: [still broken").unwrap();
    std::fs::write(dir.join("c.yaml"), automation("apps", "c", "{}")).unwrap();
    wait_runs("apps", "c", 0).await;
    let a_runs = runs(&metrics().await, "apps", "a");
    wait_runs("apps", "a", a_runs).await;
    drop(process);
}
