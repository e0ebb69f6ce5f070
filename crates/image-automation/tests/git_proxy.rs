#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `proxySecretRef`: gix's fetches and ls-remote and the git CLI's push all go through
//! the proxy with its credentials; wrong proxy credentials fail without leaking them and
//! push nothing. The proxy is a small HTTP forward proxy written here (basic auth, one
//! request per connection), in front of the testbed's smart-HTTP server.

mod git_common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use git_common::*;
use image_automation::git::{GitCache, GitClient, GitError, GitRef, PushSpec, RepoSpec};
use testbed::git::{GitHttpServer, GitHttpServerOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const PROXY_USER: &str = "proxy-user";
const PROXY_PASSWORD: &str = "px s3cret:@/%";

/// What the proxy saw: `METHOD path` of forwarded requests, and refused ones.
#[derive(Default)]
struct Seen {
    forwarded: Vec<String>,
    refused: usize,
}

struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{PROXY_USER}:{PROXY_PASSWORD}"))
        );
        let s = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (s, expected) = (s.clone(), expected.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &expected, &s).await;
                });
            }
        });
        Self { addr, seen }
    }

    fn address(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One absolute-form request: checks `Proxy-Authorization`, rewrites the request line to
/// origin form, forces `Connection: close` and relays bytes both ways.
async fn serve(mut client: TcpStream, expected: &str, seen: &Mutex<Seen>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default().to_string();
    let mut parts = request.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut auth_ok = false;
    let mut headers = String::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match name.as_str() {
            "proxy-authorization" => {
                auth_ok = line.split_once(':').map(|(_, v)| v.trim()) == Some(expected);
            }
            "proxy-connection" | "connection" | "keep-alive" => {}
            _ => {
                headers.push_str(line);
                headers.push_str("\r\n");
            }
        }
    }
    let Some(rest) = target.strip_prefix("http://") else {
        client
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        return Ok(());
    };
    if !auth_ok {
        seen.lock().unwrap().refused += 1;
        client
            .write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                  Proxy-Authenticate: Basic realm=\"test\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        return Ok(());
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    seen.lock()
        .unwrap()
        .forwarded
        .push(format!("{method} {path}"));
    let mut upstream = TcpStream::connect(host).await?;
    upstream
        .write_all(
            format!("{method} {path} {version}\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    upstream.write_all(&buf[head_end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

fn spec_via(server: &GitHttpServer, repo: &str, proxy: &Proxy, password: &str) -> RepoSpec {
    proxied_spec(server, repo, proxy.address(), PROXY_USER, password)
}

#[tokio::test]
async fn fetch_and_push_go_through_the_proxy() {
    let server = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let repos = server.repos();
    let seeded = seed(repos, "fleet");
    let proxy = Proxy::start().await;
    let storage = tempfile::tempdir().unwrap();
    let cache = Arc::new(GitCache::new(storage.path()));
    let spec = spec_via(&server, "fleet", &proxy, PROXY_PASSWORD);

    // ls-remote (gix).
    let (c, s) = (cache.clone(), spec.clone());
    let head = tokio::task::spawn_blocking(move || c.remote_head(&s, &GitRef::branch("main")))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(head.commit, seeded);

    // Fetch (gix) and push (git CLI).
    let req = request(spec, GitRef::branch("main"), PushSpec::default());
    let out = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap();
    let pushed = out.pushed.unwrap();
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(pushed.commit)
    );
    let seen = proxy.seen.lock().unwrap();
    let has = |what: &str| seen.forwarded.iter().any(|r| r.contains(what));
    assert!(
        has("info/refs?service=git-upload-pack"),
        "{:?}",
        seen.forwarded
    );
    assert!(
        has("POST") && has("/git-upload-pack"),
        "{:?}",
        seen.forwarded
    );
    assert!(
        has("info/refs?service=git-receive-pack"),
        "{:?}",
        seen.forwarded
    );
    assert!(has("/git-receive-pack"), "{:?}", seen.forwarded);
}

#[tokio::test]
async fn wrong_proxy_password_fails_without_leaking_it() {
    let server = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let repos = server.repos();
    let seeded = seed(repos, "fleet");
    let proxy = Proxy::start().await;
    let storage = tempfile::tempdir().unwrap();
    let cache = Arc::new(GitCache::new(storage.path()));
    let wrong = "wrong-proxy-pass";
    let spec = spec_via(&server, "fleet", &proxy, wrong);
    let req = request(spec, GitRef::branch("main"), PushSpec::default());
    let err = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(wrong), "{text}");
    assert!(
        matches!(err, GitError::AuthFailed { .. }) && text.contains("proxy"),
        "{text}"
    );
    assert!(proxy.seen.lock().unwrap().refused >= 1);
    assert!(proxy.seen.lock().unwrap().forwarded.is_empty());
    assert_eq!(repos.head_commit("fleet", "main").unwrap(), Some(seeded));
}
