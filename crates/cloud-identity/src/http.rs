//! The only I/O: send a built [`HttpRequest`], read a bounded [`HttpResponse`].

use std::time::Duration;

use crate::error::{Error, Provider, Result, Step};

/// Flux's timeout for every token call.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Token responses are small; anything larger is refused rather than buffered.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Characters kept as they are in one path segment (RFC 3986 unreserved).
pub(crate) const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Form fields and headers that carry secrets: an error body echoing them is scrubbed.
const SECRET_FORM_FIELDS: [&str; 5] = [
    "WebIdentityToken",
    "client_assertion",
    "client_secret",
    "subject_token",
    "access_token",
];
const SECRET_HEADERS: [&str; 3] = [
    "authorization",
    "x-amz-security-token",
    "x-aws-ec2-metadata-token",
];
/// How much of an error body goes into an error message.
const ERROR_BODY_CHARS: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
}

/// A request built by the pure code. `Debug` shows the method and URL only: headers and
/// body carry tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: Method,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The secret values this request carries (tokens in headers and form fields).
    pub fn secret_values(&self) -> Vec<String> {
        let mut values = Vec::new();
        for (name, value) in &self.headers {
            if SECRET_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                values.push(value.clone());
                if let Some((_, credential)) = value.split_once(' ') {
                    values.push(credential.to_string());
                }
            }
        }
        let is_form = self
            .header_value("content-type")
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            for (name, value) in form_urlencoded::parse(&self.body) {
                if SECRET_FORM_FIELDS.contains(&name.as_ref()) {
                    values.push(value.into_owned());
                }
            }
        }
        // Longest first, so a value containing another is scrubbed whole.
        values.retain(|v| v.len() >= 4);
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values
    }

    pub fn new(method: Method, url: url::Url) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// A form-encoded body (`application/x-www-form-urlencoded`).
    pub fn form(mut self, fields: &[(&str, &str)]) -> Self {
        let mut encoder = form_urlencoded::Serializer::new(String::new());
        for (name, value) in fields {
            encoder.append_pair(name, value);
        }
        self.body = encoder.finish().into_bytes();
        self.header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// A response: status and at most [`MAX_RESPONSE_BYTES`] of body. `Debug` hides the body.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// Which call is being made, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct CallContext {
    pub provider: Provider,
    pub step: Step,
    /// The setting to check when the call fails (an env var, annotation or spec field).
    pub field: &'static str,
}

impl CallContext {
    pub fn new(provider: Provider, step: Step, field: &'static str) -> Self {
        Self {
            provider,
            step,
            field,
        }
    }
}

impl HttpResponse {
    /// The body if the status is 2xx, else an [`Error::Status`] quoting the body's start.
    pub fn success_body(self, call: CallContext, endpoint: &url::Url) -> Result<Vec<u8>> {
        if (200..300).contains(&self.status) {
            Ok(self.body)
        } else {
            Err(Error::Status {
                provider: call.provider,
                step: call.step,
                endpoint: endpoint_for_errors(endpoint),
                field: call.field,
                status: self.status,
                body: error_body_excerpt(&self.body),
            })
        }
    }
}

/// The URL without its query (which may carry identifiers) or userinfo, for messages.
pub fn endpoint_for_errors(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// The start of an error body on one line, without control characters.
pub fn error_body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(ERROR_BODY_CHARS)
        .collect();
    if text.chars().count() > ERROR_BODY_CHARS {
        out.push_str("...");
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sends [`HttpRequest`]s with Flux's 10 s timeout, rustls and the system roots.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpClient {
    /// A client with the 10 s timeout and, optionally, a proxy (`proxySecretRef`).
    pub fn new(proxy: Option<&url::Url>) -> std::result::Result<Self, reqwest::Error> {
        Self::with_timeout(proxy, TIMEOUT)
    }

    /// A client with another timeout (tests of slow endpoints).
    pub fn with_timeout(
        proxy: Option<&url::Url>,
        timeout: Duration,
    ) -> std::result::Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(proxy) = proxy {
            builder = builder.proxy(reqwest::Proxy::all(proxy.as_str())?);
        }
        Ok(Self {
            client: builder.build()?,
            timeout,
        })
    }

    /// The timeout of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Wraps an existing client built with `timeout` (tests add a CA; services may share
    /// theirs).
    pub fn from_client(client: reqwest::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// Sends the request and returns the body of a 2xx answer (see [`Self::send`] and
    /// [`HttpResponse::success_body`]).
    pub async fn fetch(&self, request: &HttpRequest, call: CallContext) -> Result<Vec<u8>> {
        let response = self.send(request, call).await?;
        response.success_body(call, &request.url)
    }

    /// Sends the request; transport failures and timeouts become [`Error::Transport`].
    pub async fn send(&self, request: &HttpRequest, call: CallContext) -> Result<HttpResponse> {
        let transport = |message: String| Error::Transport {
            provider: call.provider,
            step: call.step,
            endpoint: endpoint_for_errors(&request.url),
            field: call.field,
            message,
        };
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        let mut builder = self.client.request(method, request.url.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if !request.body.is_empty() || request.method != Method::Get {
            builder = builder.body(request.body.clone());
        }
        let timeout = self.timeout;
        let mut response = builder
            .send()
            .await
            .map_err(|err| transport(describe_reqwest_error(&err, timeout)))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| transport(describe_reqwest_error(&err, timeout)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(transport(format!(
                    "response larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            body = scrub(&body, &request.secret_values());
        }
        Ok(HttpResponse { status, body })
    }
}

/// `body` with every occurrence of the secrets replaced, for error bodies that echo the
/// request.
pub fn scrub(body: &[u8], secrets: &[String]) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(body).into_owned();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "<redacted>");
        }
    }
    text.into_bytes()
}

/// reqwest's message without the URL (which we print ourselves, minus its query).
fn describe_reqwest_error(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("timed out after {:?}", timeout);
    }
    let mut message = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(err);
    let mut first = true;
    while let Some(current) = source {
        let text = if first {
            let mut without = String::new();
            if err.is_connect() {
                without.push_str("connection failed");
            } else if err.is_request() {
                without.push_str("sending the request failed");
            } else if err.is_body() || err.is_decode() {
                without.push_str("reading the response failed");
            } else {
                without.push_str("request failed");
            }
            without
        } else {
            current.to_string()
        };
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
        first = false;
        source = current.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_neither_headers_nor_body() {
        let url = url::Url::parse("https://sts.example/?Action=x").unwrap();
        let request = HttpRequest::new(Method::Post, url)
            .header("Authorization", "Bearer sekrit-token")
            .form(&[("WebIdentityToken", "sekrit-jwt")]);
        let shown = format!("{request:?}");
        assert!(!shown.contains("sekrit"), "{shown}");
        let response = HttpResponse {
            status: 200,
            body: b"sekrit".to_vec(),
        };
        assert!(!format!("{response:?}").contains("sekrit"));
    }

    #[test]
    fn secrets_the_request_carries_are_scrubbed_from_echoes() {
        let url = url::Url::parse("https://login.example/t/oauth2/v2.0/token").unwrap();
        let request = HttpRequest::new(Method::Post, url)
            .header("Authorization", "Bearer header-token-value")
            .form(&[
                ("client_secret", "form-secret-value"),
                ("scope", "public-scope"),
            ]);
        let echoed = b"bad: Bearer header-token-value form-secret-value public-scope";
        let scrubbed = String::from_utf8(scrub(echoed, &request.secret_values())).unwrap();
        assert_eq!(scrubbed, "bad: <redacted> <redacted> public-scope");
    }

    #[test]
    fn error_excerpt_is_one_bounded_line() {
        let body = format!("line one\nline\ttwo {}", "x".repeat(1000));
        let excerpt = error_body_excerpt(body.as_bytes());
        assert!(excerpt.starts_with("line one line two "), "{excerpt}");
        assert!(excerpt.len() <= ERROR_BODY_CHARS + 3, "{}", excerpt.len());
    }

    #[test]
    fn endpoint_drops_query_and_userinfo() {
        let url = url::Url::parse("http://u:p@127.0.0.1:1/metadata?client_id=abc").unwrap();
        assert_eq!(endpoint_for_errors(&url), "http://127.0.0.1:1/metadata");
    }
}
