//! A Docker registry token issuer (the `auth: token:` realm) running in the test process.
//!
//! `GET /token?service=S&scope=repository:NAME:pull,push` with `Authorization: Basic`
//! answers an RS256 JWT granting the requested actions. The JWT header carries the signing
//! certificate as `x5c`; the registry trusts it through `rootcertbundle`. It runs on its own
//! thread with std networking so it serves whatever runtime (or none) the test uses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use crate::error::{Error, IoContext, Result};
use crate::tls::self_signed;
use crate::tools;

const TOKEN_LIFETIME_SECS: u64 = 300;

#[derive(Debug)]
pub(crate) struct TokenIssuer {
    addr: SocketAddr,
    cert: PathBuf,
    issued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What a request handler needs.
#[derive(Debug)]
struct Signer {
    openssl: PathBuf,
    key: PathBuf,
    /// The signing certificate, base64 DER, for the JWT `x5c` header.
    cert_der_b64: String,
    username: String,
    password: String,
    service: String,
    issuer: String,
    issued: Arc<AtomicUsize>,
}

impl TokenIssuer {
    /// Generates a signing key and self-signed certificate under `dir` and starts serving.
    pub(crate) fn start(
        dir: &Path,
        username: &str,
        password: &str,
        service: &str,
        issuer: &str,
    ) -> Result<Self> {
        let openssl = tools::openssl()?;
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        self_signed(
            &openssl,
            "token issuer: generating the signing key",
            "/CN=testbed-token-issuer",
            &key,
            &cert,
        )?;
        let pem = std::fs::read_to_string(&cert)
            .context(|| format!("token issuer: reading {}", cert.display()))?;
        // The base64 between the PEM armour lines is exactly the DER's standard base64.
        let cert_der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();

        let listener = TcpListener::bind("127.0.0.1:0")
            .context(|| "token issuer: binding a loopback port".into())?;
        let addr = listener
            .local_addr()
            .context(|| "token issuer: reading its port".into())?;
        let issued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let signer = Signer {
            openssl,
            key,
            cert_der_b64,
            username: username.to_string(),
            password: password.to_string(),
            service: service.to_string(),
            issuer: issuer.to_string(),
            issued: issued.clone(),
        };
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("testbed-token-issuer".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop_flag.load(Ordering::SeqCst) {
                        break;
                    }
                    // One connection at a time is plenty; a broken one only fails its client.
                    if let Ok(stream) = stream {
                        let _ = serve(stream, &signer);
                    }
                }
            })
            .context(|| "token issuer: starting its thread".into())?;
        Ok(Self {
            addr,
            cert,
            issued,
            stop,
            thread: Some(thread),
        })
    }

    /// The URL the registry's Bearer challenges point clients to.
    pub(crate) fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The certificate (PEM) the registry verifies tokens with.
    pub(crate) fn cert_path(&self) -> &Path {
        &self.cert
    }

    pub(crate) fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Reply {
    status: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    fn error(status: &'static str, code: &str, message: &str) -> Self {
        let body = json!({ "errors": [{ "code": code, "message": message }] }).to_string();
        Self {
            status,
            headers: Vec::new(),
            body,
        }
    }
}

/// Reads one HTTP/1.1 request head, answers it, closes the connection.
fn serve(mut stream: TcpStream, signer: &Signer) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (
        request_line.next().unwrap_or_default(),
        request_line.next().unwrap_or_default(),
    );
    let authorization = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    let reply = signer.respond(method, target, authorization.as_deref());
    let mut response = format!(
        "HTTP/1.1 {}\r\nContent-Type: application/json\r\n",
        reply.status
    );
    for (name, value) in &reply.headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.body.len(),
        reply.body
    ));
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

impl Signer {
    fn respond(&self, method: &str, target: &str, authorization: Option<&str>) -> Reply {
        let Ok(url) = reqwest::Url::parse(&format!("http://issuer{target}")) else {
            return Reply::error(
                "400 Bad Request",
                "BAD_REQUEST",
                "unparsable request target",
            );
        };
        if url.path() != "/token" {
            return Reply::error("404 Not Found", "NOT_FOUND", "only /token is served");
        }
        if method != "GET" {
            return Reply::error(
                "405 Method Not Allowed",
                "UNSUPPORTED",
                "use GET with Basic credentials",
            );
        }
        if !self.authorized(authorization) {
            let mut reply = Reply::error(
                "401 Unauthorized",
                "UNAUTHORIZED",
                "invalid username or password",
            );
            reply.headers.push((
                "WWW-Authenticate",
                "Basic realm=\"testbed-token-issuer\"".into(),
            ));
            return reply;
        }
        let mut service = self.service.clone();
        let mut access = Vec::new();
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "service" => service = value.into_owned(),
                // A scope parameter may hold several space-separated scopes.
                "scope" => access.extend(value.split(' ').filter_map(parse_scope)),
                _ => {}
            }
        }
        match self.sign(&service, access) {
            Ok(token) => {
                self.issued.fetch_add(1, Ordering::SeqCst);
                let body = json!({
                    "token": token,
                    "access_token": token,
                    "expires_in": TOKEN_LIFETIME_SECS,
                    "issued_at": rfc3339(now_secs()),
                });
                Reply {
                    status: "200 OK",
                    headers: Vec::new(),
                    body: body.to_string(),
                }
            }
            Err(err) => Reply::error(
                "500 Internal Server Error",
                "SIGNING_FAILED",
                &err.to_string(),
            ),
        }
    }

    fn authorized(&self, authorization: Option<&str>) -> bool {
        let Some(encoded) = authorization.and_then(|a| {
            a.strip_prefix("Basic ")
                .or_else(|| a.strip_prefix("basic "))
        }) else {
            return false;
        };
        let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let expected = format!("{}:{}", self.username, self.password);
        decoded == expected.as_bytes()
    }

    /// An RS256 JWT for `access`, signed by `openssl dgst` (PKCS#1 v1.5 over SHA-256).
    fn sign(&self, service: &str, access: Vec<serde_json::Value>) -> Result<String> {
        let now = now_secs();
        let header = json!({ "typ": "JWT", "alg": "RS256", "x5c": [self.cert_der_b64] });
        let claims = json!({
            "iss": self.issuer,
            "sub": self.username,
            "aud": service,
            "exp": now + TOKEN_LIFETIME_SECS,
            "nbf": now.saturating_sub(10),
            "iat": now,
            "jti": format!("{now}-{}", self.issued.load(Ordering::SeqCst)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = openssl_sign(&self.openssl, &self.key, signing_input.as_bytes())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// `repository:team/app:pull,push` → an access entry granting every requested action.
fn parse_scope(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(json!({ "type": kind, "name": name, "actions": actions }))
}

fn openssl_sign(openssl: &Path, key: &Path, input: &[u8]) -> Result<Vec<u8>> {
    let context = "token issuer: signing a JWT";
    let mut child = Command::new(openssl)
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(|| format!("{context}: starting openssl"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .context(|| format!("{context}: writing to openssl"))?;
    }
    let output = child
        .wait_with_output()
        .context(|| format!("{context}: waiting for openssl"))?;
    if !output.status.success() || output.stdout.is_empty() {
        return Err(Error::Command {
            context: context.into(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output.stdout)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// UTC `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (civil-from-days, proleptic Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn parses_scopes() {
        assert_eq!(
            parse_scope("repository:team/app:pull,push"),
            Some(json!({ "type": "repository", "name": "team/app", "actions": ["pull", "push"] }))
        );
        assert_eq!(
            parse_scope("registry:catalog:*"),
            Some(json!({ "type": "registry", "name": "catalog", "actions": ["*"] }))
        );
        assert_eq!(parse_scope("nonsense"), None);
    }
}
