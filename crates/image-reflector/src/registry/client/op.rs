//! One registry operation: its deadline, and the credentials sent for it, which are scrubbed
//! from whatever the registry answers; bodies read within a size cap.

use super::*;

/// One operation: whose repository, with which credentials, until when, and every
/// credential sent for it so far (to scrub from whatever the registry answers).
pub(super) struct Op<'a> {
    pub(super) image: &'a ImageReference,
    pub(super) credentials: Option<&'a Credentials>,
    pub(super) deadline: Instant,
    pub(super) sent: Mutex<Secrets>,
}

impl<'a> Op<'a> {
    pub(super) fn new(
        image: &'a ImageReference,
        credentials: Option<&'a Credentials>,
        timeout: Duration,
        proxy_secrets: &Secrets,
    ) -> Self {
        let sent = credentials
            .map_or_else(Secrets::new, |c| {
                Secrets::new().with_basic(&c.username, &c.password)
            })
            .merge(proxy_secrets);
        Self {
            image,
            credentials,
            deadline: Instant::now() + timeout,
            sent: Mutex::new(sent),
        }
    }

    pub(super) fn registry(&self) -> String {
        self.image.registry().to_string()
    }

    /// Remembers a token sent (in a `Bearer` header) for this operation.
    pub(super) fn sent_token(&self, token: &str) {
        let mut sent = self.secrets();
        *sent = std::mem::take(&mut *sent).with_token(token);
    }

    /// The one way registry-provided text enters a message: every credential sent for this
    /// operation, in any form, is replaced by `[redacted]`.
    pub(super) fn quote(&self, remote_text: &str) -> String {
        self.secrets().scrub(remote_text)
    }

    /// [`Op::quote`] for text cut at a length limit (it may end in part of a credential).
    pub(super) fn quote_cut(&self, remote_text: &str) -> String {
        self.secrets().scrub_cut(remote_text)
    }

    pub(super) fn secrets(&self) -> std::sync::MutexGuard<'_, Secrets> {
        self.sent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A transport error, without its URL when the URL (which may come from the registry:
    /// a `Link` or a redirect) holds a credential.
    pub(super) fn transport_error(&self, source: reqwest::Error) -> RegistryError {
        let leaks = source
            .url()
            .is_some_and(|url| self.secrets().leaks_in(url.as_str()));
        RegistryError::Transport {
            registry: self.registry(),
            source: if leaks { source.without_url() } else { source },
        }
    }

    pub(super) fn invalid_response(&self, remote_text: &str) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.registry(),
            detail: self.quote(remote_text),
        }
    }

    /// The body of a successful response, read chunk by chunk and given up on as soon as it
    /// passes `limit` bytes (before reading at all when `Content-Length` says so).
    pub(super) async fn read_capped(
        &self,
        mut response: Response,
        kind: BodyKind,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::BodyTooLarge {
            registry: self.registry(),
            kind,
            limit,
        };
        let announced = response.content_length();
        if announced.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let initial = announced.map_or(8 * 1024, |len| usize::try_from(len).unwrap_or(limit));
        let mut body = Vec::with_capacity(initial.min(limit));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| self.transport_error(source))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The status and a short description from the registry's error body
/// (`{"errors":[{"code":..,"message":..}]}`), as `" (CODE: message)"` or `""`. At most
/// [`ERROR_BODY_LIMIT`] bytes are read; the text is quoted through [`Op::quote`] before it
/// is shortened, so a cut never leaves part of a credential behind.
pub(super) async fn read_error(op: &Op<'_>, mut response: Response) -> (StatusCode, String) {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let status = response.status();
    let mut body = Vec::new();
    // A body that fails midway still has a useful start.
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = ERROR_BODY_LIMIT - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    let text = match serde_json::from_slice::<Errors>(&body) {
        Ok(errors) => errors
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::from_utf8_lossy(&body).into_owned(),
    };
    // Control characters become spaces before scrubbing: removing them afterwards could
    // join the pieces of a secret.
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let quoted = if body.len() >= ERROR_BODY_LIMIT {
        op.quote_cut(&text)
    } else {
        op.quote(&text)
    };
    let detail = quoted
        .chars()
        .take(ERROR_DETAIL_CHARS)
        .collect::<String>()
        .trim()
        .to_string();
    if detail.is_empty() {
        (status, String::new())
    } else {
        (status, format!(" ({detail})"))
    }
}
