//! Which identity an object uses: Flux's `ObjectLevelWorkloadIdentity` gate and
//! `--default-service-account` rules (pure; the services read the ServiceAccount).

/// The message when a `--default-service-account` does not exist in the object's namespace.
pub const DEFAULT_SERVICE_ACCOUNT_MISSING: &str = "the specified default service account does not exist in the object namespace. your cluster is subject to multi-tenant workload identity lockdown, reach out to your cluster administrator for help";

/// The condition reason for the gate errors.
pub const FEATURE_GATE_DISABLED_REASON: &str = "FeatureGateDisabled";

/// The gate is off but an identity was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// At startup: the process must exit.
    #[error(
        "cannot set default service accounts when the feature gate ObjectLevelWorkloadIdentity is not enabled"
    )]
    DefaultServiceAccountWithoutGate,
    /// On an ImageRepository (Stalled, no requeue).
    #[error(
        "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller"
    )]
    ServiceAccountWithoutGate,
    /// On an ImagePolicy, about its ImageRepository.
    #[error(
        "to use spec.serviceAccountName in the ImageRepository for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller"
    )]
    RepositoryServiceAccountWithoutGate,
}

/// Which identity requests the provider token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityChoice {
    /// The controller's own (pod) identity.
    Controller,
    /// The named ServiceAccount in the object's namespace; `is_default` when it came from
    /// `--default-service-account` (a missing one gets [`DEFAULT_SERVICE_ACCOUNT_MISSING`]).
    ServiceAccount { name: String, is_default: bool },
}

/// Checked once at startup.
pub fn check_startup(
    default_service_account: Option<&str>,
    gate_enabled: bool,
) -> Result<(), GateError> {
    match default_service_account {
        Some(name) if !name.is_empty() && !gate_enabled => {
            Err(GateError::DefaultServiceAccountWithoutGate)
        }
        _ => Ok(()),
    }
}

/// The identity for an object with a cloud provider (not `generic`, whose ServiceAccount only
/// supplies imagePullSecrets): `spec.serviceAccountName` first, else the default. With a
/// default set, objects never use the controller identity (the lockdown).
pub fn choose_identity(
    spec_service_account: Option<&str>,
    default_service_account: Option<&str>,
    gate_enabled: bool,
    for_image_policy: bool,
) -> Result<IdentityChoice, GateError> {
    let spec = spec_service_account.filter(|n| !n.is_empty());
    let default = default_service_account.filter(|n| !n.is_empty());
    match (spec, default) {
        (Some(_), _) if !gate_enabled => Err(if for_image_policy {
            GateError::RepositoryServiceAccountWithoutGate
        } else {
            GateError::ServiceAccountWithoutGate
        }),
        (Some(name), _) => Ok(IdentityChoice::ServiceAccount {
            name: name.to_string(),
            is_default: false,
        }),
        // Startup refuses a default without the gate; stay safe if called anyway.
        (None, Some(_)) if !gate_enabled => Err(GateError::DefaultServiceAccountWithoutGate),
        (None, Some(name)) => Ok(IdentityChoice::ServiceAccount {
            name: name.to_string(),
            is_default: true,
        }),
        (None, None) => Ok(IdentityChoice::Controller),
    }
}

#[cfg(test)]
mod tests;
/// A boxed future, so [`ServiceAccounts`] can be a `dyn` object.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where object-level identity reads a ServiceAccount and asks for its token: the
/// Kubernetes API in both services (`kube_support::objects::KubeServiceAccounts`), absent
/// in the standalone modes. Errors are the API server's messages, never a token.
pub trait ServiceAccounts: Send + Sync {
    /// A ServiceAccount's annotations; `Ok(None)` when it does not exist.
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::collections::BTreeMap<String, String>>, String>>;

    /// A token for the ServiceAccount with these audiences (TokenRequest).
    fn token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audiences: Vec<String>,
    ) -> BoxFuture<'a, Result<crate::Secret, String>>;
}
