//! Abusive HTTP clients for server-limit tests: slowloris connections that send part of a
//! request head and then nothing, and idle keep-alive connections.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::error::{Error, IoContext, Result};

/// Opens `count` connections to `addr`, each sending an unfinished request head for `path`
/// (no blank line), and keeps them open.
pub async fn open_half_sent(addr: SocketAddr, path: &str, count: usize) -> Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = TcpStream::connect(addr)
            .await
            .context(|| format!("half-sent connection {i} to {addr}"))?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
        stream
            .write_all(head.as_bytes())
            .await
            .context(|| format!("half-sent connection {i}: writing"))?;
        streams.push(stream);
    }
    Ok(streams)
}

/// Opens a connection, sends one complete keep-alive `GET path`, reads the response head
/// and its `Content-Length` body, and returns the connection, still open and idle.
pub async fn open_idle_keep_alive(addr: SocketAddr, path: &str) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)
        .await
        .context(|| format!("keep-alive connection to {addr}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .context(|| "keep-alive connection: writing".into())?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut buffer)
            .await
            .context(|| "keep-alive connection: reading".into())?;
        if n == 0 {
            return Err(Error::Command {
                context: "keep-alive connection".into(),
                message: "closed before the response was complete".into(),
            });
        }
        received.extend_from_slice(&buffer[..n]);
        if let Some(end) = find(&received, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                return Ok(stream);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Waits up to `within` for the server to close every connection (EOF or reset, after any
/// bytes it sends); the number still open at the deadline.
pub async fn still_open_after(streams: Vec<TcpStream>, within: Duration) -> usize {
    let mut waits = tokio::task::JoinSet::new();
    for mut stream in streams {
        waits.spawn(async move {
            let closed = async {
                let mut buffer = [0u8; 1024];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            };
            tokio::time::timeout(within, closed).await.is_err()
        });
    }
    let mut open = 0;
    while let Some(still_open) = waits.join_next().await {
        // A panicked wait counts as open: the test then fails rather than passing quietly.
        if still_open.unwrap_or(true) {
            open += 1;
        }
    }
    open
}
