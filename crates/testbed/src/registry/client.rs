//! The helpers' side of the registry API: plain reqwest calls with the mode's auth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ACCEPT, LINK, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};
use serde_json::json;

use super::{json_bytes, media_type, sha256_digest};
use crate::error::{Error, Result, http_error};

/// An empty tar archive, gzipped: a layer real tools can unpack.
const LAYER: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x63, 0x60, 0x18, 0x05, 0xa3, 0x60,
    0x14, 0x8c, 0x54, 0x00, 0x00, 0x2e, 0xaf, 0xb5, 0xef, 0x00, 0x04, 0x00, 0x00,
];
/// sha256 of the uncompressed layer (1024 zero bytes): the config's `rootfs.diff_ids`.
const LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// Concurrent manifest PUTs in [`Client::put_manifest_many`].
const PUT_WORKERS: usize = 8;

#[derive(Debug, Clone)]
pub(crate) enum ClientAuth {
    Anonymous,
    Basic { username: String, password: String },
    Token { username: String, password: String },
}

/// Cheap to clone; clones share the token cache.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base_url: Arc<str>,
    auth: Arc<ClientAuth>,
    /// The last Bearer token per repository ("" for requests outside a repository).
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl Client {
    pub(crate) fn new(base_url: &str, ca_pem: Option<&[u8]>, auth: ClientAuth) -> Result<Self> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| http_error(base_url, e))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| http_error(base_url, e))?;
        Ok(Self {
            http,
            base_url: base_url.into(),
            auth: Arc::new(auth),
            tokens: Arc::default(),
        })
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends a request for `repo` with the mode's auth; in token mode a 401 Bearer challenge
    /// is answered once with a fresh token for the challenge's scope.
    async fn send(
        &self,
        repo: &str,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response> {
        let build = |bearer: Option<&str>| {
            let mut request = self.http.request(method.clone(), url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request.body(body.to_vec());
            }
            match (&*self.auth, bearer) {
                (_, Some(token)) => request.bearer_auth(token),
                (ClientAuth::Basic { username, password }, None) => {
                    request.basic_auth(username, Some(password))
                }
                _ => request,
            }
        };
        let cached = self.cached_token(repo);
        let response = build(cached.as_deref())
            .send()
            .await
            .map_err(|e| http_error(url, e))?;
        let ClientAuth::Token { username, password } = &*self.auth else {
            return Ok(response);
        };
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_bearer_challenge)
            .ok_or_else(|| http_error(url, "401 without a Bearer challenge"))?;
        let token = self.fetch_token(&challenge, username, password).await?;
        self.tokens
            .lock()
            .map_err(|e| http_error(url, e))?
            .insert(repo.to_string(), token.clone());
        build(Some(&token))
            .send()
            .await
            .map_err(|e| http_error(url, e))
    }

    fn cached_token(&self, repo: &str) -> Option<String> {
        self.tokens
            .lock()
            .ok()
            .and_then(|tokens| tokens.get(repo).cloned())
    }

    async fn fetch_token(
        &self,
        challenge: &HashMap<String, String>,
        username: &str,
        password: &str,
    ) -> Result<String> {
        let realm = challenge
            .get("realm")
            .ok_or_else(|| http_error("token realm", "challenge without realm"))?;
        let mut url = Url::parse(realm).map_err(|e| http_error(realm, e))?;
        {
            let mut query = url.query_pairs_mut();
            for key in ["service", "scope"] {
                if let Some(value) = challenge.get(key) {
                    query.append_pair(key, value);
                }
            }
        }
        let response = self
            .http
            .get(url.clone())
            .basic_auth(username, Some(password))
            .send()
            .await
            .map_err(|e| http_error(url.as_str(), e))?;
        let body: serde_json::Value = expect_ok(response, url.as_str())
            .await?
            .json()
            .await
            .map_err(|e| http_error(url.as_str(), e))?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| http_error(url.as_str(), format!("no token in {body}")))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let response = self.send(repo, Method::HEAD, &url, &[], None).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(http_error(&url, format!("HEAD blob: {status}"))),
        }
    }

    /// Uploads `data` unless the repository has it; returns its digest.
    async fn ensure_blob(&self, repo: &str, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        if self.blob_exists(repo, &digest).await? {
            return Ok(digest);
        }
        // Monolithic upload: open a session, then PUT the whole blob with its digest.
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let response = self.send(repo, Method::POST, &start, &[], None).await?;
        let response = expect_status(response, &start, StatusCode::ACCEPTED).await?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| http_error(&start, "upload session without Location"))?;
        let mut put = Url::parse(&start)
            .and_then(|base| base.join(location))
            .map_err(|e| http_error(&start, e))?;
        put.query_pairs_mut().append_pair("digest", &digest);
        let response = self
            .send(
                repo,
                Method::PUT,
                put.as_str(),
                &[("content-type", "application/octet-stream")],
                Some(data),
            )
            .await?;
        expect_status(response, put.as_str(), StatusCode::CREATED).await?;
        Ok(digest)
    }

    /// A Docker schema 2 manifest whose config carries `labels` (so distinct labels make
    /// distinct manifests) over the shared empty layer.
    pub(crate) async fn image_manifest(
        &self,
        repo: &str,
        labels: &serde_json::Value,
    ) -> Result<Vec<u8>> {
        let config = json_bytes(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": labels },
            "rootfs": { "type": "layers", "diff_ids": [LAYER_DIFF_ID] },
        }));
        let config_digest = self.ensure_blob(repo, &config).await?;
        let layer_digest = self.ensure_blob(repo, LAYER).await?;
        Ok(json_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::DOCKER_MANIFEST,
            "config": { "mediaType": media_type::DOCKER_CONFIG, "digest": config_digest, "size": config.len() },
            "layers": [{ "mediaType": media_type::DOCKER_LAYER, "digest": layer_digest, "size": LAYER.len() }],
        })))
    }

    /// An OCI image manifest for one platform of `repo:tag`.
    pub(crate) async fn oci_manifest(
        &self,
        repo: &str,
        tag: &str,
        os: &str,
        arch: &str,
    ) -> Result<Vec<u8>> {
        let config = json_bytes(&json!({
            "architecture": arch,
            "os": os,
            "config": { "Labels": { "repo": repo, "tag": tag } },
            "rootfs": { "type": "layers", "diff_ids": [LAYER_DIFF_ID] },
        }));
        let config_digest = self.ensure_blob(repo, &config).await?;
        let layer_digest = self.ensure_blob(repo, LAYER).await?;
        Ok(json_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": { "mediaType": media_type::OCI_CONFIG, "digest": config_digest, "size": config.len() },
            "layers": [{ "mediaType": media_type::OCI_LAYER, "digest": layer_digest, "size": LAYER.len() }],
        })))
    }

    /// PUTs `manifest` as `reference` (a tag or its digest); returns its digest.
    pub(crate) async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        manifest: Vec<u8>,
    ) -> Result<String> {
        let digest = sha256_digest(&manifest);
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let response = self
            .send(
                repo,
                Method::PUT,
                &url,
                &[("content-type", media_type)],
                Some(&manifest),
            )
            .await?;
        let response = expect_status(response, &url, StatusCode::CREATED).await?;
        let stored = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok());
        if stored.is_some_and(|stored| stored != digest) {
            return Err(http_error(
                &url,
                format!("registry stored {stored:?}, expected {digest}"),
            ));
        }
        Ok(digest)
    }

    /// PUTs one manifest under many tags, a few requests at a time.
    pub(crate) async fn put_manifest_many(
        &self,
        repo: &str,
        tags: &[String],
        media_type: &'static str,
        manifest: Vec<u8>,
    ) -> Result<String> {
        let digest = sha256_digest(&manifest);
        let Some((first, rest)) = tags.split_first() else {
            return Ok(digest);
        };
        // The first PUT alone, so a token challenge is answered once, not by every worker.
        self.put_manifest(repo, first, media_type, manifest.clone())
            .await?;
        let manifest: Arc<[u8]> = manifest.into();
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..PUT_WORKERS {
            let tags: Vec<String> = rest
                .iter()
                .skip(worker)
                .step_by(PUT_WORKERS)
                .cloned()
                .collect();
            let (client, repo, manifest) = (self.clone(), repo.to_string(), manifest.clone());
            workers.spawn(async move {
                for tag in tags {
                    client
                        .put_manifest(&repo, &tag, media_type, manifest.to_vec())
                        .await?;
                }
                Ok::<_, Error>(())
            });
        }
        while let Some(joined) = workers.join_next().await {
            joined.map_err(|e| http_error(&self.url(&format!("/v2/{repo}/manifests")), e))??;
        }
        Ok(digest)
    }

    pub(crate) async fn manifest_digest(&self, repo: &str, reference: &str) -> Result<String> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let accept = [
            media_type::OCI_INDEX,
            media_type::OCI_MANIFEST,
            media_type::DOCKER_MANIFEST_LIST,
            media_type::DOCKER_MANIFEST,
        ]
        .join(", ");
        let response = self
            .send(
                repo,
                Method::HEAD,
                &url,
                &[(ACCEPT.as_str(), &accept)],
                None,
            )
            .await?;
        let response = expect_ok(response, &url).await?;
        response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| http_error(&url, "no Docker-Content-Digest header"))
    }

    pub(crate) async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<()> {
        let url = self.url(&format!("/v2/{repo}/manifests/{digest}"));
        let response = self.send(repo, Method::DELETE, &url, &[], None).await?;
        expect_status(response, &url, StatusCode::ACCEPTED)
            .await
            .map(drop)
    }

    pub(crate) async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        let mut tags = Vec::new();
        let mut next = Some(self.url(&format!("/v2/{repo}/tags/list")));
        while let Some(url) = next.take() {
            let response = self.send(repo, Method::GET, &url, &[], None).await?;
            let response = expect_ok(response, &url).await?;
            if let Some(link) = response.headers().get(LINK).and_then(|v| v.to_str().ok()) {
                next = next_link(link)
                    .map(|target| Url::parse(&url).and_then(|base| base.join(target)))
                    .transpose()
                    .map_err(|e| http_error(&url, e))?
                    .map(String::from);
            }
            let page: serde_json::Value = response.json().await.map_err(|e| http_error(&url, e))?;
            // A repository whose tags were all deleted answers `"tags": null`.
            if let Some(page_tags) = page.get("tags").and_then(|t| t.as_array()) {
                tags.extend(
                    page_tags
                        .iter()
                        .filter_map(|t| t.as_str())
                        .map(str::to_string),
                );
            }
        }
        Ok(tags)
    }
}

async fn expect_ok(response: Response, url: &str) -> Result<Response> {
    expect_status(response, url, StatusCode::OK).await
}

async fn expect_status(response: Response, url: &str, expected: StatusCode) -> Result<Response> {
    if response.status() == expected {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(http_error(
        url,
        format!("expected {expected}, got {status}: {}", body.trim()),
    ))
}

/// The target of `<...>; rel="next"` in a `Link` header.
fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

/// The parameters of `Bearer realm="..",service="..",scope=".."` (quoted values may hold
/// commas, as scopes do).
pub(crate) fn parse_bearer_challenge(header: &str) -> Option<HashMap<String, String>> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let value: String = if chars.next_if_eq(&'"').is_some() {
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
            value
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect()
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    params.contains_key("realm").then_some(params)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let params = parse_bearer_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="svc",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(params["realm"], "http://127.0.0.1:1/token");
        assert_eq!(params["service"], "svc");
        assert_eq!(params["scope"], "repository:a/b:pull,push");
        assert!(parse_bearer_challenge(r#"Basic realm="x""#).is_none());
    }

    #[test]
    fn finds_the_next_link() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }
}
