//! The `ObjectSource` over the API server.

use super::*;
use cloud_identity::workload_identity::ServiceAccounts;
use futures::TryFutureExt as _;

#[derive(Clone)]
pub(super) struct KubeObjects {
    pub(super) client: Client,
    pub(super) service_accounts: KubeServiceAccounts,
}

impl fmt::Debug for KubeObjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeObjects").finish_non_exhaustive()
    }
}

pub(super) fn source_error(
    kind: &'static str,
    namespace: &str,
    name: &str,
    e: &kube::Error,
) -> SourceError {
    SourceError {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        category: kube_support::objects::ErrorCategory::of(e),
        detail: e.to_string(),
    }
}

impl KubeObjects {
    /// The namespaced `kind` `namespace/name`, `None` when it does not exist.
    async fn get<K>(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<K>, SourceError>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name)
            .await
            .map_err(|e| source_error(kind, namespace, name, &e))
    }
}

impl ObjectSource for KubeObjects {
    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> Lookup<'a, SecretData> {
        let secret = self.get::<Secret>("Secret", namespace, name);
        Box::pin(secret.map_ok(move |secret| {
            secret.map(|secret| {
                let secret = kube_support::manifests::secret_of(secret);
                SecretData {
                    name: name.to_string(),
                    type_: secret.type_,
                    data: secret.data,
                }
            })
        }))
    }

    fn service_account_pull_secrets<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Lookup<'a, Vec<String>> {
        let account = self.get::<ServiceAccount>("ServiceAccount", namespace, name);
        Box::pin(account.map_ok(|account| {
            account.map(|account| {
                let refs = account.image_pull_secrets.unwrap_or_default();
                refs.into_iter()
                    .map(|r| r.name)
                    .filter(|n| !n.is_empty())
                    .collect()
            })
        }))
    }

    fn service_accounts(&self) -> Option<&dyn ServiceAccounts> {
        Some(&self.service_accounts)
    }

    fn namespace_labels<'a>(&'a self, namespace: &'a str) -> Lookup<'a, BTreeMap<String, String>> {
        Box::pin(async move {
            let api: Api<Namespace> = Api::all(self.client.clone());
            let ns = api
                .get_opt(namespace)
                .await
                .map_err(|e| source_error("Namespace", "", namespace, &e))?;
            Ok(ns.map(|ns| ns.metadata.labels.unwrap_or_default()))
        })
    }

    fn image_repository<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Lookup<'a, ImageRepository> {
        Box::pin(self.get(REPOSITORY, namespace, name))
    }
}
