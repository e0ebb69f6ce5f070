//! A loopback HTTP forward proxy that maps host names to loopback addresses, so a process
//! given it as `proxySecretRef` reaches "cloud" hosts (`<name>.azurecr.io`, an ECR host, the
//! IMDS address) that the test serves on loopback, without DNS.
//!
//! It speaks what a client configured with an `http://` proxy sends: `CONNECT host:port`
//! (HTTPS; the proxy tunnels bytes and never sees inside the TLS) and absolute-form requests
//! (`GET http://host:port/path`, plain HTTP; forwarded in origin form with `Connection:
//! close`, so every request opens a new connection and is seen). A host in the routes goes
//! to its mapped address; a loopback IP literal goes where it names; anything else gets 502.
//! Every request is recorded (`CONNECT host:port`, or `METHOD http://host:port/path`) so a
//! test can check which calls went through the proxy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::{IoContext, Result};

/// The longest request head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Shared {
    /// `host:port` (lower case) -> where it goes.
    routes: BTreeMap<String, SocketAddr>,
    seen: Mutex<Vec<String>>,
}

/// A running proxy on a free loopback port; stops accepting on drop (tunnels end with their
/// peers).
#[derive(Debug)]
pub struct MappingProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Drop for MappingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl MappingProxy {
    /// Starts with `routes`: (`host:port`, loopback address), e.g.
    /// `("fluxtest.azurecr.io:443", front.addr())`.
    pub async fn start(routes: &[(&str, SocketAddr)]) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context(|| "binding the mapping proxy".into())?;
        let addr = listener
            .local_addr()
            .context(|| "mapping proxy address".into())?;
        let shared = Arc::new(Shared {
            routes: routes
                .iter()
                .map(|(host, to)| (host.to_ascii_lowercase(), *to))
                .collect(),
            seen: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(conn, &s).await;
                });
            }
        });
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    /// `http://127.0.0.1:<port>`: what a proxy Secret's `address` holds.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far: `CONNECT host:port` or `METHOD http://host:port/path?query`.
    pub fn seen(&self) -> Vec<String> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many recorded requests contain `text`.
    pub fn count(&self, text: &str) -> usize {
        self.seen().iter().filter(|s| s.contains(text)).count()
    }
}

/// Where `authority` (`host:port`) goes: its route, or a loopback IP literal itself.
fn destination(shared: &Shared, authority: &str) -> Option<SocketAddr> {
    if let Some(to) = shared.routes.get(&authority.to_ascii_lowercase()) {
        return Some(*to);
    }
    authority
        .parse::<SocketAddr>()
        .ok()
        .filter(|a| a.ip().is_loopback())
}

async fn serve(mut client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let Some((head, rest)) = read_head(&mut client).await? else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    shared
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(format!("{method} {target}"));
    if method == "CONNECT" {
        let Some(to) = destination(shared, target) else {
            return refuse(&mut client, target).await;
        };
        let mut upstream = TcpStream::connect(to).await?;
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        if !rest.is_empty() {
            upstream.write_all(&rest).await?;
        }
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    // Absolute form: http://authority/path.
    let Some(after_scheme) = target.strip_prefix("http://") else {
        return refuse(&mut client, target).await;
    };
    let (authority, path) = match after_scheme.find('/') {
        Some(i) => (&after_scheme[..i], &after_scheme[i..]),
        None => (after_scheme, "/"),
    };
    let authority_with_port = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let Some(to) = destination(shared, &authority_with_port) else {
        return refuse(&mut client, authority).await;
    };
    let mut forwarded = format!("{method} {path} HTTP/1.1\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or_default().trim();
        let hop_by_hop = ["connection", "proxy-connection", "proxy-authorization"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h));
        if !hop_by_hop {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut upstream = TcpStream::connect(to).await?;
    upstream.write_all(forwarded.as_bytes()).await?;
    if !rest.is_empty() {
        upstream.write_all(&rest).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

async fn refuse(client: &mut TcpStream, target: &str) -> std::io::Result<()> {
    let body = format!("mapping proxy: no route to {target}\n");
    let reply = format!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(reply.as_bytes()).await
}

/// The request head (up to the blank line, excluded) and whatever was read past it.
async fn read_head(conn: &mut TcpStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            buf.truncate(end);
            return Ok(Some((buf, rest)));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}
