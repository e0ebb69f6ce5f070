//! The real [`ScanSource`] and [`DigestSource`]: one [`RegistryClient`] per distinct
//! transport (TLS and proxy settings), shared by every repository that uses it, so pings
//! and Bearer tokens are cached across repositories. The clients report every HTTP
//! response to the pool's [`RequestObserver`] (the registry request metrics).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::{BoxFuture, DigestSource, ScanSource};
use crate::reference::ImageReference;
use crate::registry::{
    ClientSettings, RegistryAccess, RegistryClient, RegistryError, TransportConfig,
};

pub use crate::registry::RequestObserver;

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
        let client = match &self.observer {
            Some(observer) => {
                RegistryClient::with_observer(transport, self.settings.clone(), observer.clone())?
            }
            None => RegistryClient::new(transport, self.settings.clone())?,
        };
        clients.insert(transport.clone(), client.clone());
        Ok(client)
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
            client
                .list_tags(image, access.credentials.as_ref(), timeout)
                .await
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
            client
                .manifest_digest(image, tag, access.credentials.as_ref(), timeout)
                .await
        })
    }
}
