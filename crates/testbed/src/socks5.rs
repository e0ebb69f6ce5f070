//! A loopback SOCKS5 proxy (RFC 1928, CONNECT only) with username/password authentication
//! (RFC 1929), to put in front of the real git smart-HTTP server.
//!
//! It records what it saw: refused handshakes, and for each relayed connection the first
//! line the client sent (the HTTP request line, for plain HTTP), so a test can check which
//! requests went through it. Dropping the proxy stops accepting; relayed connections end
//! with their peers.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::{IoContext, Result};

/// What the proxy saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// The first line of each relayed connection's client data.
    pub relayed: Vec<String>,
    /// Handshakes refused for wrong or missing credentials.
    pub refused: usize,
}

/// A running SOCKS5 proxy requiring `username`/`password`.
#[derive(Debug)]
pub struct Socks5Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    accept: JoinHandle<()>,
}

impl Drop for Socks5Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Socks5Proxy {
    /// Starts on a free loopback port.
    pub async fn start(username: &str, password: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context(|| "binding the SOCKS5 proxy".into())?;
        let addr = listener
            .local_addr()
            .context(|| "SOCKS5 proxy address".into())?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let creds = Arc::new((username.as_bytes().to_vec(), password.as_bytes().to_vec()));
        let s = seen.clone();
        let accept = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (s, creds) = (s.clone(), creds.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &creds.0, &creds.1, &s).await;
                });
            }
        });
        Ok(Self { addr, seen, accept })
    }

    /// `socks5://127.0.0.1:<port>`, without credentials.
    pub fn address(&self) -> String {
        format!("socks5://{}", self.addr)
    }

    /// A copy of what the proxy has seen so far.
    pub fn seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn protocol_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

async fn read_vec(conn: &mut TcpStream, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    conn.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn serve(
    mut client: TcpStream,
    username: &[u8],
    password: &[u8],
    seen: &Mutex<Seen>,
) -> std::io::Result<()> {
    // Greeting: VER NMETHODS METHODS...; only 0x02 (username/password) is accepted.
    let head = read_vec(&mut client, 2).await?;
    if head[0] != 5 {
        return Err(protocol_error("not SOCKS5"));
    }
    let methods = read_vec(&mut client, usize::from(head[1])).await?;
    if !methods.contains(&2) {
        seen.lock().unwrap_or_else(PoisonError::into_inner).refused += 1;
        client.write_all(&[5, 0xff]).await?;
        return Ok(());
    }
    client.write_all(&[5, 2]).await?;
    // RFC 1929: VER(1) ULEN UNAME PLEN PASSWD.
    let ver = read_vec(&mut client, 2).await?;
    let user = read_vec(&mut client, usize::from(ver[1])).await?;
    let plen = read_vec(&mut client, 1).await?;
    let pass = read_vec(&mut client, usize::from(plen[0])).await?;
    if ver[0] != 1 || user != username || pass != password {
        seen.lock().unwrap_or_else(PoisonError::into_inner).refused += 1;
        client.write_all(&[1, 1]).await?;
        return Ok(());
    }
    client.write_all(&[1, 0]).await?;
    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT; CONNECT only.
    let req = read_vec(&mut client, 4).await?;
    if req[0] != 5 || req[1] != 1 {
        client.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Err(protocol_error("only CONNECT is supported"));
    }
    let host = match req[3] {
        1 => {
            let b = read_vec(&mut client, 4).await?;
            Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
        }
        3 => {
            let len = read_vec(&mut client, 1).await?;
            String::from_utf8_lossy(&read_vec(&mut client, usize::from(len[0])).await?).into_owned()
        }
        4 => {
            let b: [u8; 16] = read_vec(&mut client, 16)
                .await?
                .try_into()
                .map_err(|_| protocol_error("IPv6 address"))?;
            Ipv6Addr::from(b).to_string()
        }
        _ => return Err(protocol_error("unknown address type")),
    };
    let port = read_vec(&mut client, 2).await?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    let mut upstream = match TcpStream::connect((host.as_str(), port)).await {
        Ok(upstream) => upstream,
        Err(e) => {
            // 5 = connection refused.
            client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            return Err(e);
        }
    };
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    // Record the first line the client sends, then relay.
    let mut first = vec![0u8; 8192];
    let n = client.read(&mut first).await?;
    let line = first[..n]
        .split(|&b| b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
        .unwrap_or_default();
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .relayed
        .push(line);
    upstream.write_all(&first[..n]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
