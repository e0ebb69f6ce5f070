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
