//! A loopback HTTP/1.1 proxy with switchable faults, to put in front of the real registry or
//! the real git smart-HTTP server.
//!
//! Each client connection carries one request: the proxy adds `Connection: close` when it
//! forwards, so the upstream closes after answering and the next request (even from a
//! keep-alive client) opens a new connection, where the fault in force is looked up again.
//! Faults are chosen per request by [`FaultProxy::set_fault`] (every request) or
//! [`FaultProxy::set_fault_on`] (requests whose path contains a string); [`FaultProxy::clear`]
//! restores plain forwarding, so a test can check recovery without restarting anything.
//!
//! Plain HTTP only (it reads the request line and headers). A connection that does not start
//! with an HTTP request (a TLS ClientHello, say) is closed, as a plain-HTTP server would fail
//! it. Dropping the proxy closes every connection it holds, hung ones included.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{IoContext, Result};

/// The longest request or response head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;
/// The size of each write of a generated body.
const CHUNK: usize = 64 * 1024;

/// How an error body made by [`Fault::EchoHeaders`] is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoFormat {
    /// `text/plain`: the request line and every header, one per line.
    Text,
    /// The registry's error JSON, `{"errors":[{"code":..,"message":..}]}`, with every header
    /// in `message` (what a registry that quotes the request in its errors sends).
    RegistryJson,
}

/// What the proxy does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait, then forward.
    Delay(Duration),
    /// Read the request and never answer (until the fault is cleared and the client gives up,
    /// or the proxy is dropped).
    Hang,
    /// Forward; send the response head and the first `after` body bytes, then stop sending
    /// and hold the connection open.
    HangMidBody { after: usize },
    /// Read the request, then close with a TCP reset.
    Reset,
    /// Forward; send the response head and the first `after` body bytes, then close.
    Truncate { after: usize },
    /// Answer with `status`, the given headers and `body`, without asking the upstream.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Answer with `status` and a body quoting every request header (`Authorization`
    /// included), as some registries do in 401 and 500 errors.
    EchoHeaders { status: u16, format: EchoFormat },
    /// Answer 200 with a `bytes`-long JSON-looking body (`{"name":"x","tags":[` then
    /// `"tag",` repeated), generated as it is sent; with `Content-Length` when
    /// `length_header`, else delimited by closing the connection (so a client cannot refuse
    /// it up front and must stop reading by itself).
    HugeBody { bytes: u64, length_header: bool },
}

impl Fault {
    /// 429 with `Retry-After: retry_after_secs`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::Status {
            status: 429,
            headers: vec![("Retry-After".into(), retry_after_secs.to_string())],
            body: "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":\"slow down\"}]}".into(),
        }
    }

    /// `status` (a 5xx, say) with a registry error body.
    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            headers: Vec::new(),
            body: format!(
                "{{\"errors\":[{{\"code\":\"UNKNOWN\",\"message\":\"fault proxy answered {status}\"}}]}}"
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    /// `None`: every request.
    path_contains: Option<String>,
    fault: Fault,
}

#[derive(Debug, Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    requests: AtomicUsize,
    faulted: AtomicUsize,
}

impl Shared {
    fn fault_for(&self, path: &str) -> Option<Fault> {
        let rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        rules
            .iter()
            .find(|r| r.path_contains.as_deref().is_none_or(|p| path.contains(p)))
            .map(|r| r.fault.clone())
    }
}

/// A running proxy on a free loopback port; stops (closing every connection) on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (`host:port`, e.g. `Registry::host()`).
    pub async fn start(upstream: &str) -> Result<Self> {
        let upstream: SocketAddr = tokio::net::lookup_host(upstream)
            .await
            .context(|| format!("fault proxy: resolving {upstream}"))?
            .next()
            .ok_or_else(|| crate::Error::Command {
                context: "fault proxy".into(),
                message: format!("{upstream} resolves to no address"),
            })?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context(|| "fault proxy: binding a loopback port".into())?;
        let addr = listener
            .local_addr()
            .context(|| "fault proxy: reading its address".into())?;
        let shared = Arc::new(Shared::default());
        let accept = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&shared)));
        Ok(Self {
            addr,
            upstream,
            shared,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:port`: use it where the upstream's `host:port` went.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Applies `fault` to every request (replacing all rules).
    pub fn set_fault(&self, fault: Fault) {
        *self.rules() = vec![Rule {
            path_contains: None,
            fault,
        }];
    }

    /// Applies `fault` to requests whose path (with query) contains `path_contains`, ahead of
    /// the rules already set.
    pub fn set_fault_on(&self, path_contains: &str, fault: Fault) {
        self.rules().insert(
            0,
            Rule {
                path_contains: Some(path_contains.to_string()),
                fault,
            },
        );
    }

    /// Plain forwarding from the next request on.
    pub fn clear(&self) {
        self.rules().clear();
    }

    /// Requests read so far (every connection that sent an HTTP request head).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Requests a fault was applied to so far.
    pub fn faulted_requests(&self) -> usize {
        self.shared.faulted.load(Ordering::Relaxed)
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.shared
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept loop owns the connection tasks: aborting it drops (and so closes) them.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    connections.spawn(handle(client, upstream, Arc::clone(&shared)));
                }
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A request or response head, split into its lines.
struct Head {
    /// The head as received, `\r\n\r\n` included.
    raw: Vec<u8>,
    /// Bytes read past the head (the start of a body).
    rest: Vec<u8>,
}

impl Head {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// The request target of a request head (`/v2/...?n=10`).
    fn path(&self) -> String {
        self.text()
            .lines()
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .unwrap_or_default()
            .to_string()
    }

    /// The head with any `Connection`/`Keep-Alive` header replaced by `Connection: close`.
    fn with_connection_close(&self) -> Vec<u8> {
        let text = self.text();
        let mut out = String::with_capacity(text.len() + 20);
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

/// Reads up to the end of a head (`\r\n\r\n`); `None` on EOF, an oversized head or a
/// stream that does not start like HTTP.
async fn read_head(stream: &mut (impl AsyncRead + Unpin), request: bool) -> Option<Head> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if request && !starts_like_a_request(&buf) {
            return None;
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some(Head { raw: buf, rest });
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

/// Whether `buf` (the first bytes of a connection) can start a request: a method token of
/// uppercase letters, then a space.
fn starts_like_a_request(buf: &[u8]) -> bool {
    const LONGEST_METHOD: usize = 16;
    let start = &buf[..buf.len().min(LONGEST_METHOD)];
    match start.iter().position(|b| *b == b' ') {
        Some(end) => end > 0 && start[..end].iter().all(u8::is_ascii_uppercase),
        None => buf.len() < LONGEST_METHOD && start.iter().all(u8::is_ascii_uppercase),
    }
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let Some(request) = read_head(&mut client, true).await else {
        return;
    };
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let fault = shared.fault_for(&request.path());
    if fault.is_some() {
        shared.faulted.fetch_add(1, Ordering::Relaxed);
    }
    // Write errors mean the client went away: nothing to report to anyone.
    let _ = match fault {
        None => forward(client, upstream, &request, Cut::None).await,
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            forward(client, upstream, &request, Cut::None).await
        }
        Some(Fault::Hang) => hold(client).await,
        Some(Fault::HangMidBody { after }) => {
            forward(client, upstream, &request, Cut::HangAfter(after)).await
        }
        Some(Fault::Truncate { after }) => {
            forward(client, upstream, &request, Cut::CloseAfter(after)).await
        }
        Some(Fault::Reset) => {
            reset(client);
            Ok(())
        }
        Some(Fault::Status {
            status,
            headers,
            body,
        }) => {
            respond(
                &mut client,
                status,
                "application/json",
                &headers,
                body.as_bytes(),
            )
            .await
        }
        Some(Fault::EchoHeaders { status, format }) => {
            let (content_type, body) = echo_body(&request, format);
            respond(&mut client, status, content_type, &[], body.as_bytes()).await
        }
        Some(Fault::HugeBody {
            bytes,
            length_header,
        }) => huge_body(&mut client, bytes, length_header).await,
    };
}

/// Where a forwarded response body stops.
#[derive(Debug, Clone, Copy)]
enum Cut {
    None,
    CloseAfter(usize),
    HangAfter(usize),
}

async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    request: &Head,
    cut: Cut,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&request.with_connection_close()).await?;
    server.write_all(&request.rest).await?;
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    // The rest of the request body (git pushes) flows while the response is read.
    let upload = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
        std::future::pending::<()>().await;
    };
    let download = async {
        let Some(response) = read_head(&mut server_read, false).await else {
            return Ok(());
        };
        client_write.write_all(&response.raw).await?;
        let limit = match cut {
            Cut::None => None,
            Cut::CloseAfter(n) | Cut::HangAfter(n) => Some(n),
        };
        copy_limited(&response.rest, &mut server_read, &mut client_write, limit).await?;
        client_write.flush().await?;
        if let Cut::HangAfter(_) = cut {
            std::future::pending::<()>().await;
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::select! {
        result = download => result,
        () = upload => Ok(()),
    }
}

/// Copies `first` then `from` to `to`, stopping after `limit` bytes when given.
async fn copy_limited(
    first: &[u8],
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    limit: Option<usize>,
) -> std::io::Result<()> {
    let mut left = limit.unwrap_or(usize::MAX);
    let head = &first[..first.len().min(left)];
    to.write_all(head).await?;
    left -= head.len();
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let n = n.min(left);
        to.write_all(&buf[..n]).await?;
        left -= n;
    }
    Ok(())
}

/// Keeps the connection open, reading and discarding, until the client closes it or the
/// proxy is dropped.
async fn hold(mut client: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    while client.read(&mut buf).await? > 0 {}
    Ok(())
}

fn reset(client: TcpStream) {
    // Linger 0 makes the close send RST instead of FIN.
    let _ = client.set_zero_linger();
    drop(client);
}

fn echo_body(request: &Head, format: EchoFormat) -> (&'static str, String) {
    let text = request.text();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    match format {
        EchoFormat::Text => ("text/plain", format!("bad request: {}", lines.join("\n"))),
        EchoFormat::RegistryJson => {
            let message = format!("request was: {}", lines.join("; "));
            let body = serde_json::json!({
                "errors": [{"code": "UNAUTHORIZED", "message": message, "detail": lines}]
            });
            ("application/json", body.to_string())
        }
    }
}

async fn respond(
    client: &mut TcpStream,
    status: u16,
    content_type: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    client.write_all(head.as_bytes()).await?;
    client.write_all(body).await?;
    client.flush().await?;
    client.shutdown().await
}

async fn huge_body(client: &mut TcpStream, bytes: u64, length_header: bool) -> std::io::Result<()> {
    let length = if length_header {
        format!("Content-Length: {bytes}\r\n")
    } else {
        String::new()
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n"
    );
    client.write_all(head.as_bytes()).await?;
    let prefix = b"{\"name\":\"x\",\"tags\":[";
    let mut chunk = Vec::with_capacity(CHUNK);
    while chunk.len() + 6 <= CHUNK {
        chunk.extend_from_slice(b"\"tag\",");
    }
    let mut left = bytes;
    let first = &prefix[..prefix
        .len()
        .min(usize::try_from(left).unwrap_or(usize::MAX))];
    client.write_all(first).await?;
    left -= first.len() as u64;
    while left > 0 {
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        client.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    client.flush().await?;
    client.shutdown().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Fault",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A one-shot upstream answering every connection with `body`.
    async fn upstream(body: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = read_head(&mut stream, true).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        addr
    }

    async fn get(proxy: &FaultProxy, path: &str, auth: &str) -> std::io::Result<(String, Vec<u8>)> {
        let mut stream = TcpStream::connect(proxy.addr()).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(out.len(), |p| p + 4);
        let body = out.split_off(end);
        Ok((String::from_utf8_lossy(&out).into_owned(), body))
    }

    #[tokio::test]
    async fn forwards_and_applies_each_fault() {
        let up = upstream("0123456789").await;
        let proxy = FaultProxy::start(&up.to_string()).await.unwrap();
        let (head, body) = get(&proxy, "/v2/", "Basic c2VjcmV0").await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"0123456789");

        proxy.set_fault(Fault::Truncate { after: 4 });
        let (_, body) = get(&proxy, "/v2/", "x").await.unwrap();
        assert_eq!(body, b"0123");

        proxy.set_fault(Fault::EchoHeaders {
            status: 401,
            format: EchoFormat::RegistryJson,
        });
        let (head, body) = get(&proxy, "/v2/", "Basic c2VjcmV0").await.unwrap();
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
        assert!(String::from_utf8_lossy(&body).contains("Basic c2VjcmV0"));

        for length_header in [true, false] {
            proxy.set_fault(Fault::HugeBody {
                bytes: 1 << 20,
                length_header,
            });
            let (head, body) = get(&proxy, "/v2/", "x").await.unwrap();
            assert_eq!(body.len(), 1 << 20);
            assert_eq!(head.contains("Content-Length"), length_header, "{head}");
        }

        proxy.set_fault(Fault::Reset);
        let reset = get(&proxy, "/v2/", "x").await;
        assert!(
            reset.is_err() || reset.as_ref().is_ok_and(|(h, _)| h.is_empty()),
            "{reset:?}"
        );

        // Path rules: only matching requests are faulted.
        proxy.clear();
        proxy.set_fault_on("tags/list", Fault::status(503));
        let (head, _) = get(&proxy, "/v2/a/tags/list", "x").await.unwrap();
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        let (head, _) = get(&proxy, "/v2/", "x").await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");

        proxy.set_fault(Fault::Hang);
        let hung = tokio::time::timeout(Duration::from_millis(300), get(&proxy, "/v2/", "x")).await;
        assert!(hung.is_err(), "a hung request must not be answered");
        proxy.clear();
        let (head, _) = get(&proxy, "/v2/", "x").await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(proxy.requests() >= 8);
    }
}
