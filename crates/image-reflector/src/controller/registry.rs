//! The real [`ScanSource`] and [`DigestSource`]: one [`RegistryClient`] per distinct
//! transport (TLS and proxy settings), shared by every repository that uses it, so pings
//! and Bearer tokens are cached across repositories.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{BoxFuture, DigestSource, ScanSource};
use crate::reference::ImageReference;
use crate::registry::{
    ClientSettings, RegistryAccess, RegistryClient, RegistryError, TransportConfig,
};

/// Told the outcome of each registry operation (a tag listing or a digest lookup): the
/// host and an HTTP-like status (200 on success, the registry's status on an HTTP error,
/// 0 when none was received). Same shape as `metrics::RequestObserver`.
pub type RequestObserver = Arc<dyn Fn(&str, u16) + Send + Sync>;

/// Clients by transport.
pub struct RegistryPool {
    settings: ClientSettings,
    clients: Mutex<HashMap<TransportConfig, RegistryClient>>,
    observer: Option<RequestObserver>,
}

impl fmt::Debug for RegistryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryPool")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RegistryPool {
    pub fn new(settings: ClientSettings, observer: Option<RequestObserver>) -> Self {
        Self {
            settings,
            clients: Mutex::new(HashMap::new()),
            observer,
        }
    }

    /// The client for `transport`, built on first use.
    pub fn client(&self, transport: &TransportConfig) -> Result<RegistryClient, RegistryError> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(transport) {
            return Ok(client.clone());
        }
        let client = RegistryClient::new(transport, self.settings.clone())?;
        clients.insert(transport.clone(), client.clone());
        Ok(client)
    }

    fn observe<T>(&self, image: &ImageReference, result: &Result<T, RegistryError>) {
        if let Some(observer) = &self.observer {
            observer(image.registry(), status_of(result));
        }
    }
}

/// The status code a result stands for, for the registry request metric.
fn status_of<T>(result: &Result<T, RegistryError>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(RegistryError::Unauthorized { .. }) => 401,
        Err(RegistryError::Forbidden { .. }) => 403,
        Err(RegistryError::NotFound { .. }) => 404,
        Err(RegistryError::RateLimited { .. }) => 429,
        Err(RegistryError::Status { status, .. }) => *status,
        Err(_) => 0,
    }
}

impl ScanSource for RegistryPool {
    fn list_tags<'a>(
        &'a self,
        image: &'a ImageReference,
        access: &'a RegistryAccess,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, RegistryError>> {
        Box::pin(async move {
            let client = self.client(&access.transport)?;
            let result = client
                .list_tags(image, access.credentials.as_ref(), timeout)
                .await;
            self.observe(image, &result);
            result
        })
    }
}

impl DigestSource for RegistryPool {
    fn manifest_digest<'a>(
        &'a self,
        image: &'a ImageReference,
        tag: &'a str,
        access: &'a RegistryAccess,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        Box::pin(async move {
            let client = self.client(&access.transport)?;
            let result = client
                .manifest_digest(image, tag, access.credentials.as_ref(), timeout)
                .await;
            self.observe(image, &result);
            result
        })
    }
}
