//! `testbed::mapping_proxy`: routes named hosts to loopback for plain HTTP (absolute form) and
//! CONNECT, lets loopback IP literals through, refuses the rest, and records every request.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::net::SocketAddr;

use testbed::mapping_proxy::MappingProxy;

/// A one-route HTTP server answering `hello from <path>`.
async fn hello_server() -> SocketAddr {
    let app = axum::Router::new()
        .fallback(|uri: axum::http::Uri| async move { format!("hello from {}", uri.path()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn client(proxy: &MappingProxy) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn routes_named_hosts_passes_loopback_and_refuses_the_rest() {
    let server = hello_server().await;
    let proxy = MappingProxy::start(&[("registry.example.com:80", server)])
        .await
        .unwrap();
    let http = client(&proxy);

    let routed = http
        .get("http://registry.example.com/v2/")
        .send()
        .await
        .unwrap();
    assert_eq!(routed.status(), 200);
    assert_eq!(routed.text().await.unwrap(), "hello from /v2/");

    let loopback = http
        .post(format!("http://{server}/token"))
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(loopback.text().await.unwrap(), "hello from /token");

    let refused = http
        .get("http://elsewhere.example.org/")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);

    assert_eq!(
        proxy.seen(),
        [
            "GET http://registry.example.com/v2/".to_string(),
            format!("POST http://{server}/token"),
            "GET http://elsewhere.example.org/".to_string(),
        ]
    );
}

#[tokio::test]
async fn connect_tunnels_to_the_route() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = hello_server().await;
    let proxy = MappingProxy::start(&[("acr.example.io:443", server)])
        .await
        .unwrap();
    let mut conn = tokio::net::TcpStream::connect(proxy.url().trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(b"CONNECT acr.example.io:443 HTTP/1.1\r\nHost: acr.example.io:443\r\n\r\n")
        .await
        .unwrap();
    let mut established = [0u8; 39];
    conn.read_exact(&mut established).await.unwrap();
    assert_eq!(
        &established[..],
        b"HTTP/1.1 200 Connection Established\r\n\r\n"
    );
    // Inside the tunnel: whatever the server speaks (plain HTTP here; TLS in the Azure tests).
    conn.write_all(b"GET /inside HTTP/1.1\r\nHost: acr.example.io\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.ends_with("hello from /inside"), "{answer}");
    assert_eq!(proxy.count("CONNECT acr.example.io:443"), 1);
}
