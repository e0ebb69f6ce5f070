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
mod tests {
    use super::*;

    #[test]
    fn startup_refuses_a_default_without_the_gate() {
        assert_eq!(
            check_startup(Some("flux"), false),
            Err(GateError::DefaultServiceAccountWithoutGate)
        );
        assert_eq!(check_startup(Some("flux"), true), Ok(()));
        assert_eq!(check_startup(None, false), Ok(()));
        assert_eq!(
            GateError::DefaultServiceAccountWithoutGate.to_string(),
            "cannot set default service accounts when the feature gate ObjectLevelWorkloadIdentity is not enabled"
        );
    }

    #[test]
    fn spec_first_then_default_then_controller() {
        assert_eq!(
            choose_identity(None, None, false, false),
            Ok(IdentityChoice::Controller)
        );
        assert_eq!(
            choose_identity(Some("sa"), Some("default"), true, false),
            Ok(IdentityChoice::ServiceAccount {
                name: "sa".into(),
                is_default: false
            })
        );
        assert_eq!(
            choose_identity(None, Some("default"), true, false),
            Ok(IdentityChoice::ServiceAccount {
                name: "default".into(),
                is_default: true
            })
        );
        assert_eq!(
            choose_identity(Some(""), None, false, false),
            Ok(IdentityChoice::Controller)
        );
    }

    #[test]
    fn gate_off_with_a_spec_service_account_stalls_with_flux_text() {
        let err = choose_identity(Some("sa"), None, false, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller"
        );
        let err = choose_identity(Some("sa"), None, false, true).unwrap_err();
        assert!(
            err.to_string()
                .contains("in the ImageRepository for provider authentication")
        );
    }
}
