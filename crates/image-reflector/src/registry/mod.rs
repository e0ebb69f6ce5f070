//! Registry scanning: the HTTP client, credentials, TLS and proxy settings, and scans.
//!
//! - [`resolve_access`] turns an ImageRepository's Secrets into credentials and a
//!   [`TransportConfig`] (pure: the controller reads the Secrets).
//! - [`RegistryClient`] lists tags and looks up digests (one client per distinct
//!   [`TransportConfig`]; it caches pings and Bearer tokens).
//! - [`ScanResult::new`] filters, sorts and checksums listed tags (pure).

pub mod challenge;
pub mod client;
pub mod credentials;
pub mod error;
pub mod link;
pub mod retry;
pub mod scan;
pub mod transport;

use api_types::RegistryProvider;

pub use client::{ClientSettings, MANIFEST_ACCEPT, QUAY_PAGE_CAP, RegistryClient, RequestObserver};
pub use credentials::{Credentials, CredentialsError, Keychain, SecretData};
pub use error::RegistryError;
pub use retry::RetryPolicy;
pub use scan::{
    ExclusionError, ExclusionList, LATEST_TAGS, ScanResult, SkippedTags, is_valid_tag, revision,
    sort_descending,
};
pub use transport::{ProxyConfig, ProxyError, TlsConfig, TlsError, TransportConfig};

use crate::reference::ImageReference;

/// Why an ImageRepository's registry access could not be set up (before any request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("spec.certSecretRef: {0}")]
    Tls(#[from] TlsError),
    #[error("spec.proxySecretRef: {0}")]
    Proxy(#[from] ProxyError),
}

/// The Secrets an ImageRepository refers to, as read by the controller.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessInputs<'a> {
    pub provider: RegistryProvider,
    /// `spec.secretRef` first, then the service account's `imagePullSecrets`, in order.
    pub pull_secrets: &'a [SecretData],
    pub cert_secret: Option<&'a SecretData>,
    pub proxy_secret: Option<&'a SecretData>,
}

/// What a scan of one ImageRepository uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAccess {
    /// `None`: anonymous (no pull secret key matched the registry).
    pub credentials: Option<Credentials>,
    pub transport: TransportConfig,
}

/// Resolves credentials for `image` and the transport settings, in Flux's order (proxy,
/// provider, certificates, pull secrets). A cloud provider ignores the pull secrets: its
/// login replaces them at scan time (`credentials` stays `None` here).
pub fn resolve_access(
    image: &ImageReference,
    inputs: &AccessInputs<'_>,
) -> Result<RegistryAccess, AccessError> {
    let proxy = inputs
        .proxy_secret
        .map(ProxyConfig::from_secret)
        .transpose()?;
    let tls = inputs.cert_secret.map(TlsConfig::from_secret).transpose()?;
    let credentials = match inputs.provider {
        RegistryProvider::Generic => Keychain::from_pull_secrets(inputs.pull_secrets)?
            .resolve(image)
            .cloned(),
        RegistryProvider::Aws | RegistryProvider::Azure | RegistryProvider::Gcp => None,
    };
    Ok(RegistryAccess {
        credentials,
        transport: TransportConfig { tls, proxy },
    })
}

#[cfg(test)]
mod tests;
