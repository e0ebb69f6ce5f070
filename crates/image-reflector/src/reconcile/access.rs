//! Registry access for an ImageRepository: read the Secrets it names, then resolve
//! credentials and transport (Flux's `GetOptions`, reference §3.5).

use api_types::{ImageRepositorySpec, RegistryProvider};

use super::{ObjectSource, SourceError};
use crate::reference::ImageReference;
use crate::registry::{AccessError, AccessInputs, RegistryAccess, SecretData, resolve_access};

/// Why the authentication options could not be built. Messages name objects, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessSetupError {
    /// A referenced Secret does not exist (worded like the API server's NotFound).
    #[error("secrets \"{name}\" not found")]
    SecretNotFound { name: String },
    #[error("serviceaccounts \"{name}\" not found")]
    ServiceAccountNotFound { name: String },
    #[error("failed to get secret '{name}': {source}")]
    Read { name: String, source: SourceError },
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The repository's timeout passed while reading Secrets.
    #[error("timed out reading the referenced secrets")]
    Timeout,
}

async fn required_secret(
    objects: &dyn ObjectSource,
    namespace: &str,
    name: &str,
) -> Result<SecretData, AccessSetupError> {
    let secret = objects.secret(namespace, name).await;
    required(name, secret, |name| AccessSetupError::SecretNotFound {
        name,
    })
}

/// The object `name` a lookup found; a failed lookup or a missing object is an error.
fn required<T>(
    name: &str,
    lookup: Result<Option<T>, SourceError>,
    missing: impl FnOnce(String) -> AccessSetupError,
) -> Result<T, AccessSetupError> {
    let read_error = |source| AccessSetupError::Read {
        name: name.to_string(),
        source,
    };
    lookup
        .map_err(read_error)?
        .ok_or_else(|| missing(name.to_string()))
}

/// Reads the proxy, certificate and pull Secrets of `spec` (in `namespace`) and resolves the
/// credentials for `image`. A missing Secret or service account is an error, as in Flux.
/// With a cloud provider, `spec.secretRef` and the service account's `imagePullSecrets` are
/// not read (Flux ignores them); the cloud login comes at scan time.
pub async fn registry_access(
    objects: &dyn ObjectSource,
    namespace: &str,
    spec: &ImageRepositorySpec,
    image: &ImageReference,
) -> Result<RegistryAccess, AccessSetupError> {
    let proxy = match &spec.proxy_secret_ref {
        Some(r) => Some(required_secret(objects, namespace, &r.name).await?),
        None => None,
    };
    let cert = match &spec.cert_secret_ref {
        Some(r) => Some(required_secret(objects, namespace, &r.name).await?),
        None => None,
    };
    let mut pull = Vec::new();
    let generic = spec.provider == RegistryProvider::Generic;
    if let Some(r) = spec.secret_ref.as_ref().filter(|_| generic) {
        pull.push(required_secret(objects, namespace, &r.name).await?);
    }
    if let Some(sa) = spec
        .service_account_name
        .as_deref()
        .filter(|s| generic && !s.is_empty())
    {
        let lookup = objects.service_account_pull_secrets(namespace, sa).await;
        let names = required(sa, lookup, |name| {
            AccessSetupError::ServiceAccountNotFound { name }
        })?;
        for name in names {
            pull.push(required_secret(objects, namespace, &name).await?);
        }
    }
    Ok(resolve_access(
        image,
        &AccessInputs {
            provider: spec.provider,
            pull_secrets: &pull,
            cert_secret: cert.as_ref(),
            proxy_secret: proxy.as_ref(),
        },
    )?)
}
