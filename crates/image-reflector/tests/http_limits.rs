//! Slowloris against `image-reflector serve` as a real process: 300 connections that send
//! half a request head and then nothing, plus an idle keep-alive connection. The server
//! must close them after its header-read timeout, answer normal requests meanwhile, and
//! keep a change-feed (Server-Sent Events) response open past that timeout.

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
async fn half_sent_and_idle_connections_are_closed_while_requests_and_feeds_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let port = free_port().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let command = serve_manifests_command(
        Path::new(env!("CARGO_BIN_EXE_image-reflector")),
        &manifests,
        &tmp.path().join("data"),
        port,
    );
    let (mut process, base) = start_serving(
        "image-reflector serve",
        command,
        port,
        &tmp.path().join("serve.log"),
        "/healthz",
        Duration::from_secs(60),
    )
    .await;
    let healthz = format!("{base}/healthz");

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // A feed opened before the attack and read throughout.
    let mut feed = reqwest::Client::new()
        .get(format!("{base}/api/v1/imagepolicies?watch=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);

    let half_sent = open_half_sent(addr, "/healthz", HALF_SENT).await.unwrap();
    let idle = open_idle_keep_alive(addr, "/healthz").await.unwrap();
    let response = http.get(&healthz).send().await.unwrap();
    assert_eq!(response.status(), 200, "a normal request during the attack");
    let response = http
        .get(format!("{base}/api/v1/imagerepositories"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

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

    // The feed outlived the header timeout: it still delivers (its keep-alive comment).
    let chunk = tokio::time::timeout(Duration::from_secs(30), feed.chunk())
        .await
        .expect("the feed went silent");
    assert!(
        chunk.is_ok_and(|c| c.is_some()),
        "the feed was closed by the server"
    );
    let response = http.get(&healthz).send().await.unwrap();
    assert_eq!(response.status(), 200);
}
