//! TLS and proxy settings from Secret data (`certSecretRef`, `proxySecretRef`), and the
//! HTTP client built from them. Validation happens here, when the Secret is read, so a bad
//! Secret is a clear error before any request.

use std::fmt;
use std::time::Duration;

use reqwest::Url;

use super::client::Observer;
use super::credentials::SecretData;

/// The longest proxy address Flux accepts.
const MAX_PROXY_ADDRESS: usize = 2048;
/// Redirects followed per request (reqwest's `Policy::limited(5)`).
const MAX_REDIRECTS: usize = 5;

/// A request redirected more than [`MAX_REDIRECTS`] times.
#[derive(Debug, thiserror::Error)]
#[error("more than {MAX_REDIRECTS} redirects")]
struct TooManyRedirects;

/// A `certSecretRef` that cannot be used. Messages name keys, never contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("secret '{secret}': found {cert} but no {key}; a client certificate needs both")]
    CertWithoutKey {
        secret: String,
        cert: &'static str,
        key: &'static str,
    },
    #[error("secret '{secret}': found {key} but no {cert}; a client certificate needs both")]
    KeyWithoutCert {
        secret: String,
        cert: &'static str,
        key: &'static str,
    },
    #[error(
        "secret '{secret}': no certificate or CA found: set tls.crt and tls.key, and/or ca.crt"
    )]
    Empty { secret: String },
    #[error("secret '{secret}': {key} is not a valid PEM certificate")]
    InvalidCa { secret: String, key: &'static str },
    #[error("secret '{secret}': the client certificate and key are not a valid PEM pair")]
    InvalidClientCertificate { secret: String },
}

/// A `proxySecretRef` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("secret '{secret}': key 'address' not found")]
    MissingAddress { secret: String },
    #[error("secret '{secret}': proxy address is longer than {MAX_PROXY_ADDRESS} characters")]
    AddressTooLong { secret: String },
    #[error("secret '{secret}': proxy address is not a valid URL")]
    InvalidAddress { secret: String },
    #[error(
        "secret '{secret}': proxy scheme '{scheme}' is not supported; use http, https or socks5"
    )]
    UnsupportedScheme { secret: String, scheme: String },
    #[error("secret '{secret}': {key} is not valid UTF-8")]
    NotUtf8 { secret: String, key: &'static str },
}

/// TLS material for a registry: extra CA (added to the system roots) and a client
/// certificate.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TlsConfig {
    ca_pem: Option<Vec<u8>>,
    /// Certificate chain then private key, PEM: what reqwest's rustls identity reads.
    identity_pem: Option<Vec<u8>>,
    legacy_keys: bool,
}

impl TlsConfig {
    /// Reads `ca.crt`, `tls.crt` and `tls.key`, falling back to the legacy `caFile`,
    /// `certFile` and `keyFile` (see [`TlsConfig::used_legacy_keys`]). The Secret's type is
    /// not checked, as in Flux.
    pub fn from_secret(secret: &SecretData) -> Result<Self, TlsError> {
        let mut legacy_keys = false;
        let mut pick = |key: &'static str, legacy: &'static str| match secret.get(key) {
            Some(v) => Some((key, v)),
            None => secret.get(legacy).map(|v| {
                legacy_keys = true;
                (legacy, v)
            }),
        };
        let cert = pick("tls.crt", "certFile");
        let key = pick("tls.key", "keyFile");
        let ca = pick("ca.crt", "caFile");
        let name = || secret.name.clone();
        let identity_pem = match (cert, key) {
            (Some((_, cert)), Some((_, key))) => {
                let mut pem = cert.to_vec();
                pem.push(b'\n');
                pem.extend_from_slice(key);
                reqwest::Identity::from_pem(&pem)
                    .map_err(|_| TlsError::InvalidClientCertificate { secret: name() })?;
                Some(pem)
            }
            (Some((cert, _)), None) => {
                return Err(TlsError::CertWithoutKey {
                    secret: name(),
                    cert,
                    key: if cert == "tls.crt" {
                        "tls.key"
                    } else {
                        "keyFile"
                    },
                });
            }
            (None, Some((key, _))) => {
                return Err(TlsError::KeyWithoutCert {
                    secret: name(),
                    cert: if key == "tls.key" {
                        "tls.crt"
                    } else {
                        "certFile"
                    },
                    key,
                });
            }
            (None, None) => None,
        };
        let ca_pem = match ca {
            Some((key, pem)) => {
                let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|_| {
                    TlsError::InvalidCa {
                        secret: name(),
                        key,
                    }
                })?;
                if certs.is_empty() {
                    return Err(TlsError::InvalidCa {
                        secret: name(),
                        key,
                    });
                }
                Some(pem.to_vec())
            }
            None => None,
        };
        if ca_pem.is_none() && identity_pem.is_none() {
            return Err(TlsError::Empty { secret: name() });
        }
        Ok(Self {
            ca_pem,
            identity_pem,
            legacy_keys,
        })
    }

    /// Whether `caFile`/`certFile`/`keyFile` were used (Flux logs a deprecation warning).
    pub fn used_legacy_keys(&self) -> bool {
        self.legacy_keys
    }

    pub fn has_client_certificate(&self) -> bool {
        self.identity_pem.is_some()
    }

    pub fn has_ca(&self) -> bool {
        self.ca_pem.is_some()
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity_pem.is_some())
            .finish()
    }
}

/// A proxy for registry traffic: http, https or socks5 (with optional credentials).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyConfig {
    /// With the credentials in its user info (reqwest reads them from there for every
    /// scheme).
    url: Url,
    /// The username and password as given (the URL holds them percent-encoded), to scrub
    /// from what a remote answers.
    credentials: Option<(String, String)>,
}

impl ProxyConfig {
    /// Reads `address` (required) and optional `username` and `password`.
    pub fn from_secret(secret: &SecretData) -> Result<Self, ProxyError> {
        let name = || secret.name.clone();
        let text = |key: &'static str| -> Result<Option<&str>, ProxyError> {
            secret
                .get(key)
                .map(|v| {
                    std::str::from_utf8(v).map_err(|_| ProxyError::NotUtf8 {
                        secret: name(),
                        key,
                    })
                })
                .transpose()
        };
        let address = text("address")?
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ProxyError::MissingAddress { secret: name() })?;
        if address.len() > MAX_PROXY_ADDRESS {
            return Err(ProxyError::AddressTooLong { secret: name() });
        }
        let mut url =
            Url::parse(address).map_err(|_| ProxyError::InvalidAddress { secret: name() })?;
        if !matches!(url.scheme(), "http" | "https" | "socks5") {
            return Err(ProxyError::UnsupportedScheme {
                secret: name(),
                scheme: url.scheme().to_string(),
            });
        }
        if url.host_str().is_none() {
            return Err(ProxyError::InvalidAddress { secret: name() });
        }
        let mut credentials = None;
        if let Some(username) = text("username")?.filter(|u| !u.is_empty()) {
            url.set_username(username)
                .map_err(|()| ProxyError::InvalidAddress { secret: name() })?;
            let password = text("password")?.unwrap_or("");
            url.set_password(Some(password))
                .map_err(|()| ProxyError::InvalidAddress { secret: name() })?;
            credentials = Some((username.to_string(), password.to_string()));
        }
        Ok(Self { url, credentials })
    }

    /// The proxy's credentials, to scrub from whatever a remote answers.
    pub(crate) fn secrets(&self) -> kube_support::redact::Secrets {
        let secrets = kube_support::redact::Secrets::new();
        match &self.credentials {
            Some((username, password)) => secrets.with_basic(username, password),
            None => secrets,
        }
    }

    /// The proxy URL with its credentials (for clients; never shown).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `scheme://host:port`, without credentials: safe to show.
    pub fn address(&self) -> String {
        self.url.origin().ascii_serialization()
    }
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("address", &self.address())
            .finish()
    }
}

/// Everything that shapes connections to a registry. Clients are built per distinct
/// value, so the controller can share one client between repositories alike.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TransportConfig {
    pub tls: Option<TlsConfig>,
    pub proxy: Option<ProxyConfig>,
}

impl TransportConfig {
    /// A reqwest client with these settings. Without a proxy, the `HTTP(S)_PROXY`
    /// environment applies, as with Flux's default transport.
    /// Each redirect response is reported to `observer` (reqwest follows them inside
    /// `send`, so the client never sees them).
    pub(crate) fn build(
        &self,
        user_agent: &str,
        connect_timeout: Duration,
        observer: &Observer,
    ) -> Result<reqwest::Client, reqwest::Error> {
        let observer = observer.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if let Some(from) = attempt.previous().last() {
                observer.observe(from, attempt.status());
            }
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(TooManyRedirects)
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(connect_timeout)
            // Redirects are followed for blob/manifest CDNs; tags/list rarely redirects.
            .redirect(redirects);
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca_pem {
                builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(ca)?);
            }
            if let Some(identity) = &tls.identity_pem {
                builder = builder.identity(reqwest::Identity::from_pem(identity)?);
            }
        }
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy(reqwest::Proxy::all(proxy.url.clone())?);
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests;
