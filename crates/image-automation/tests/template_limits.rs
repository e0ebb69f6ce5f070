//! The three commit message templates from issue 12 that took the process down (24 GB, an
//! abort, minutes at 1.2 GB), run through `image-automation update` as a child process whose
//! peak memory (`VmHWM`) is watched: each must fail fast with an error naming the limit, stay
//! under a memory bound, and write nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testbed::process::peak_rss_kib;

const BIN: &str = env!("CARGO_BIN_EXE_image-automation");

/// Far above what rendering within the limits needs (the CLI peaks near 10 MiB), far below
/// what the unlimited templates reached.
const PEAK_BOUND_KIB: u64 = 200 * 1024;
/// The limits stop each template within seconds; a child still running after this is killed.
const TIMEOUT: Duration = Duration::from_secs(60);

const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  \
    template:\n    spec:\n      containers:\n      - name: web\n        \
    image: ghcr.io/team/web:1.0.0 # {\"$imagepolicy\": \"flux-system:web\"}\n";

const POLICIES: &str = r#"{"items": [{"namespace": "flux-system", "name": "web",
   "latestRef": {"name": "ghcr.io/team/web", "tag": "1.10"}}]}"#;

struct Run {
    success: bool,
    stderr: String,
    /// The highest `VmHWM` seen while the child ran.
    peak_kib: u64,
    elapsed: Duration,
}

/// Runs `update` with `template`, polling the child's peak memory; kills it past the bound
/// or the timeout (so a regression fails the test instead of taking the machine down).
fn run_template(dir: &Path, template: &str) -> Run {
    std::fs::write(dir.join("message.tmpl"), template).unwrap();
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args([
            "update",
            "--path",
            "tree",
            "--policies",
            "policies.json",
            "--message-template",
            "message.tmpl",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak_kib = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if peak_kib > PEAK_BOUND_KIB || started.elapsed() > TIMEOUT {
            child.kill().unwrap();
            let _ = child.wait();
            panic!(
                "killed after {:?} at a peak of {} MiB: the template was not stopped",
                started.elapsed(),
                peak_kib / 1024
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    Run {
        success: status.success(),
        stderr,
        peak_kib,
        elapsed: started.elapsed(),
    }
}

#[track_caller]
fn assert_stopped(template: &str, limit_message: &str) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("tree")).unwrap();
    std::fs::write(tmp.path().join("tree/deploy.yaml"), DEPLOY).unwrap();
    std::fs::write(tmp.path().join("policies.json"), POLICIES).unwrap();
    let run = run_template(tmp.path(), template);
    eprintln!(
        "{template:?}: {:?}, peak {} KiB: {}",
        run.elapsed,
        run.peak_kib,
        run.stderr.trim()
    );
    assert!(!run.success, "the template rendered: {template}");
    assert!(
        run.stderr
            .contains("message template message.tmpl: template: commit message:1:"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(limit_message), "{}", run.stderr);
    assert!(
        run.peak_kib < PEAK_BOUND_KIB,
        "peak {} KiB (bound {PEAK_BOUND_KIB} KiB)",
        run.peak_kib
    );
    // Nothing was written: the message is rendered before any file.
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("tree/deploy.yaml")).unwrap(),
        DEPLOY
    );
}

#[test]
fn range_until_a_hundred_million_stops_at_the_value_size_limit() {
    assert_stopped(
        "{{ range until 100000000 }}x{{ end }}",
        "value size limit exceeded",
    );
}

#[test]
fn repeat_two_billion_stops_at_the_value_size_limit() {
    assert_stopped("{{ repeat 2000000000 \"x\" }}", "value size limit exceeded");
}

#[test]
fn nested_loops_stop_at_the_step_limit() {
    assert_stopped(
        "{{ range until 1000 }}{{ range until 1000 }}{{ range until 1000 }}\
         {{ $x := printf \"%v%v\" . . }}{{ end }}{{ end }}{{ end }}",
        "limit exceeded: ",
    );
}

#[test]
fn output_growing_without_bound_stops_at_the_output_limit() {
    assert_stopped(
        "{{ $line := repeat 1000 \"x\" }}{{ range until 5000 }}{{ $line }}{{ end }}",
        "output limit exceeded",
    );
}
