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
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cloud_providers_ignore_pull_secrets() {
        let image =
            ImageReference::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", false)
                .unwrap();
        let json = r#"{"auths":{"123456789012.dkr.ecr.eu-west-1.amazonaws.com":{"username":"u","password":"p"}}}"#;
        let secrets = [SecretData::docker_config_json("pull", json)];
        for provider in [
            RegistryProvider::Aws,
            RegistryProvider::Azure,
            RegistryProvider::Gcp,
        ] {
            let access = resolve_access(
                &image,
                &AccessInputs {
                    provider,
                    pull_secrets: &secrets,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(access.credentials, None, "{provider:?}");
        }
        let anonymous = resolve_access(&image, &AccessInputs::default()).unwrap();
        assert_eq!(anonymous, RegistryAccess::default());
    }

    #[test]
    fn pull_secrets_resolve_for_the_image_host() {
        let image = ImageReference::parse("127.0.0.1:5000/team/app", false).unwrap();
        let json = r#"{"auths":{"127.0.0.1:5000":{"username":"u","password":"p"}}}"#;
        let secrets = [SecretData::docker_config_json("pull", json)];
        let access = resolve_access(
            &image,
            &AccessInputs {
                pull_secrets: &secrets,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(access.credentials, Some(Credentials::new("u", "p")));
        let other = ImageReference::parse("127.0.0.1:5001/team/app", false).unwrap();
        let access = resolve_access(
            &other,
            &AccessInputs {
                pull_secrets: &secrets,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(access.credentials, None);
        // Bad cert and proxy secrets name the field.
        let certs = SecretData::new("certs", "Opaque");
        let e = resolve_access(
            &image,
            &AccessInputs {
                cert_secret: Some(&certs),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("spec.certSecretRef: secret 'certs'"),
            "{e}"
        );
        let e = resolve_access(
            &image,
            &AccessInputs {
                proxy_secret: Some(&certs),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("spec.proxySecretRef: secret 'certs'"),
            "{e}"
        );
    }
}
