//! Registry authentication: the `Authorization` header for a host's challenge (Basic, or
//! Bearer tokens from the token service, cached until shortly before they expire).

use super::*;

impl RegistryClient {
    /// The `Authorization` value for the host's auth scheme (None: anonymous).
    pub(super) async fn authorization(
        &self,
        op: &Op<'_>,
        auth: &HostAuth,
    ) -> Result<Option<String>, RegistryError> {
        match auth {
            HostAuth::Anonymous => Ok(None),
            HostAuth::Basic => Ok(op.credentials.map(basic_header)),
            HostAuth::Bearer { realm, service } => {
                let token = self.token(op, realm, service.as_deref()).await?;
                op.sent_token(&token);
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    pub(super) async fn token(
        &self,
        op: &Op<'_>,
        realm: &str,
        service: Option<&str>,
    ) -> Result<String, RegistryError> {
        let key = token_key(op, realm, service);
        if let Some(cached) = self.lock().tokens.get(&key)
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let registry = op.image.registry();
        let mut url = Url::parse(realm)
            .map_err(|_| op.invalid_response("the Bearer challenge's realm is not a URL"))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("scope", &key.2);
            if let Some(service) = service {
                query.append_pair("service", service);
            }
        }
        let response = self
            .send_raw(op, true, || {
                let request = self.inner.http.get(url.clone());
                match op.credentials {
                    Some(c) => request.basic_auth(&c.username, Some(&c.password)),
                    None => request,
                }
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            let (status, detail) = read_error(op, response).await;
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                    registry: registry.to_string(),
                    repository: op.image.repository().to_string(),
                    detail: format!(
                        "the token service at {} answered {status}{}{}",
                        op.quote(&url.origin().ascii_serialization()),
                        detail,
                        credentials_hint(op)
                    ),
                },
                _ => self.status_error(op, &Method::GET, &url, status, detail, None),
            });
        }
        let received = Instant::now();
        let body = op
            .read_capped(response, BodyKind::TokenResponse, MAX_TOKEN_RESPONSE_BYTES)
            .await?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            op.invalid_response("the token service's answer is not a token response")
        })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::InvalidResponse {
                registry: registry.to_string(),
                detail: "the token service answered without a token".into(),
            })?;
        let lifetime = parsed
            .expires_in
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TOKEN_LIFETIME, |s| {
                Duration::from_secs(s.min(MAX_TOKEN_LIFETIME_SECS))
            });
        // Refresh early so a token never expires between our check and the registry's.
        let margin = (lifetime / 5).min(Duration::from_secs(30));
        self.lock().tokens.insert(
            key,
            CachedToken {
                token: token.clone(),
                refresh_at: received + lifetime - margin,
            },
        );
        Ok(token)
    }
}

#[derive(Debug)]
pub(super) struct CachedToken {
    pub(super) token: String,
    pub(super) refresh_at: Instant,
}

/// A token endpoint's answer (public for the fuzz targets).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

pub(super) fn token_key(op: &Op<'_>, realm: &str, service: Option<&str>) -> TokenKey {
    (
        realm.to_string(),
        service.unwrap_or_default().to_string(),
        format!("repository:{}:pull", op.image.repository()),
        op.credentials.map(fingerprint).unwrap_or_default(),
    )
}

/// Tells tokens of different credentials apart without keeping the password as a key.
pub(super) fn fingerprint(credentials: &Credentials) -> String {
    let mut hash = Sha256::new();
    hash.update(credentials.username.as_bytes());
    hash.update([0]);
    hash.update(credentials.password.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

pub(super) fn basic_header(credentials: &Credentials) -> String {
    use base64::Engine as _;
    let raw = format!("{}:{}", credentials.username, credentials.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub(super) fn credentials_hint(op: &Op<'_>) -> &'static str {
    if op.credentials.is_some() {
        " (check the credentials for this registry)"
    } else {
        " (no credentials matched this registry: set spec.secretRef or imagePullSecrets)"
    }
}

pub(super) fn auth_from_challenges(headers: &HeaderMap) -> HostAuth {
    let challenges: Vec<Challenge> = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect();
    match preferred(&challenges) {
        Some(Challenge::Bearer { realm, service, .. }) => HostAuth::Bearer { realm, service },
        Some(Challenge::Basic) => HostAuth::Basic,
        // A 401 without a usable challenge: Basic is the only thing left to try.
        _ if challenges.is_empty() => HostAuth::Basic,
        _ => HostAuth::Anonymous,
    }
}
