//! `kube_support::http::serve`'s limits over real sockets: the connection cap holds new
//! connections back until a slot frees, and the header-read timeout frees slots taken by
//! half-sent requests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kube_support::http::{ServerLimits, serve};
use testbed::slow_client::{open_half_sent, open_idle_keep_alive, still_open_after};
use tokio::io::AsyncReadExt as _;

#[tokio::test]
async fn a_full_server_admits_a_request_once_half_sent_connections_time_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let limits = ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 2,
        drain_timeout: Duration::from_secs(1),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router, limits, async move {
        let _ = stopped.await;
    }));

    let mut slow = open_half_sent(addr, "/", 2).await.unwrap();
    // Both slots are taken: this request is answered only after they are freed.
    let admitted = tokio::time::timeout(Duration::from_secs(20), open_idle_keep_alive(addr, "/"))
        .await
        .expect("never admitted")
        .unwrap();
    for stream in &mut slow {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "a half-sent connection was still open when the request got in: {read:?}"
        );
    }
    // The idle keep-alive connection is closed by the same timer.
    assert_eq!(
        still_open_after(vec![admitted], Duration::from_secs(20)).await,
        0
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("no drain")
        .unwrap()
        .unwrap();
}
