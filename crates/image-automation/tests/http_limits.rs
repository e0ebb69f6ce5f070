//! Slowloris against `image-automation serve` (probes and metrics) as a real process: 300
//! connections that send half a request head and then nothing, plus an idle keep-alive
//! connection, must be closed after the header-read timeout while `/healthz` still answers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use testbed::controllers::{serve_manifests_command, start_serving};
use testbed::process::free_port;
use testbed::slow_client::{open_half_sent, open_idle_keep_alive, still_open_after};

const HALF_SENT: usize = 300;
/// The server's header-read timeout is 10 s; this leaves room for a loaded machine.
const CLOSE_WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_and_idle_connections_are_closed_while_probes_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    // Nothing listens there: the automation keeps retrying the feed, the probes serve on.
    let reflector = format!("http://127.0.0.1:{}", free_port().unwrap());
    let mut command = serve_manifests_command(
        Path::new(env!("CARGO_BIN_EXE_image-automation")),
        &manifests,
        &tmp.path().join("data"),
        addr.port(),
    );
    command.args(["--reflector-url", &reflector]);
    let (mut process, base) = start_serving(
        "image-automation serve",
        command,
        addr.port(),
        &tmp.path().join("serve.log"),
        "/healthz",
        Duration::from_secs(60),
    )
    .await;
    let healthz = format!("{base}/healthz");

    let half_sent = open_half_sent(addr, "/healthz", HALF_SENT).await.unwrap();
    let idle = open_idle_keep_alive(addr, "/metrics").await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = http.get(&healthz).send().await.unwrap();
    assert_eq!(response.status(), 200, "a normal request during the attack");

    let mut connections = half_sent;
    connections.push(idle);
    let open = still_open_after(connections, CLOSE_WITHIN).await;
    assert_eq!(
        open,
        0,
        "{open} of {} half-sent or idle connections still open after {CLOSE_WITHIN:?}",
        HALF_SENT + 1
    );
    process.check_running().unwrap();
    let response = http.get(&healthz).send().await.unwrap();
    assert_eq!(response.status(), 200);
}
