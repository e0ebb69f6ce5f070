//! The [`Objects`] both modes hand the core: GitRepositories and Secret data by
//! `(namespace, name)`, read from the manifest directory or from the API server before a
//! run.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use api_types::GitRepository;

use super::Objects;
use crate::git::provider::ServiceAccounts;

/// `(namespace, name)`.
pub type Key = (String, String);

/// GitRepositories and Secret data (`data` decoded, `stringData` merged) by key. Secret data
/// is never logged: `Debug` shows keys only.
#[derive(Clone, Default)]
pub struct ObjectMap {
    pub repositories: BTreeMap<Key, GitRepository>,
    secrets: BTreeMap<Key, BTreeMap<String, Vec<u8>>>,
    /// For object-level workload identity (Kubernetes mode only: read and asked for tokens
    /// on demand).
    service_accounts: Option<Arc<dyn ServiceAccounts>>,
}

impl fmt::Debug for ObjectMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectMap")
            .field(
                "repositories",
                &self.repositories.keys().collect::<Vec<_>>(),
            )
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ObjectMap {
    /// Adds (or replaces) a Secret's data.
    pub fn insert_secret(&mut self, key: Key, data: BTreeMap<String, Vec<u8>>) {
        self.secrets.insert(key, data);
    }

    pub fn has_secret(&self, key: &Key) -> bool {
        self.secrets.contains_key(key)
    }

    /// Where this snapshot's runs read ServiceAccounts and request their tokens.
    pub fn with_service_accounts(mut self, service_accounts: Arc<dyn ServiceAccounts>) -> Self {
        self.service_accounts = Some(service_accounts);
        self
    }
}

impl Objects for ObjectMap {
    fn git_repository(&self, namespace: &str, name: &str) -> Option<GitRepository> {
        self.repositories
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        self.secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    fn service_accounts(&self) -> Option<&dyn ServiceAccounts> {
        self.service_accounts.as_deref()
    }
}
