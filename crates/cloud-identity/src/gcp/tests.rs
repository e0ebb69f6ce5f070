use super::*;

#[test]
fn annotations_checked_as_flux() {
    let mut annotations = BTreeMap::new();
    assert_eq!(
        GcpServiceAccountIdentity::from_annotations(&annotations).unwrap(),
        GcpServiceAccountIdentity::default()
    );
    annotations.insert(
        WORKLOAD_IDENTITY_PROVIDER_ANNOTATION.into(),
        "projects/123/locations/global/workloadIdentityPools/pool/providers/k8s".into(),
    );
    annotations.insert(
        GCP_SERVICE_ACCOUNT_ANNOTATION.into(),
        "flux@my-project.iam.gserviceaccount.com".into(),
    );
    let identity = GcpServiceAccountIdentity::from_annotations(&annotations).unwrap();
    assert_eq!(
        workload_identity_provider_audience(
            identity.workload_identity_provider.as_deref().unwrap()
        ),
        "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/k8s"
    );
    annotations.insert(
        GCP_SERVICE_ACCOUNT_ANNOTATION.into(),
        "flux@gmail.com".into(),
    );
    let err = GcpServiceAccountIdentity::from_annotations(&annotations).unwrap_err();
    assert!(
            err.to_string().contains(&format!(
                "invalid iam.gke.io/gcp-service-account annotation: 'flux@gmail.com'. must match {GCP_SERVICE_ACCOUNT_PATTERN}"
            )),
            "{err}"
        );
}

#[test]
fn gke_audiences() {
    let cluster = GkeCluster {
        project_id: "proj".into(),
        location: "europe-west1".into(),
        name: "prod".into(),
    };
    assert_eq!(cluster.token_audience(), "proj.svc.id.goog");
    assert_eq!(
        cluster.sts_audience(),
        "identitynamespace:proj.svc.id.goog:https://container.googleapis.com/v1/projects/proj/locations/europe-west1/clusters/prod"
    );
}

#[test]
fn token_parsing_rejects_empty_and_zero() {
    let now = SystemTime::UNIX_EPOCH;
    let token = parse_oauth_token(
        br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
        Step::GcpMetadataToken,
        now,
    )
    .unwrap();
    assert_eq!(token.expires_at, now + Duration::from_secs(3599));
    assert_eq!(token.registry_login().username, "oauth2accesstoken");
    assert!(
        parse_oauth_token(
            br#"{"access_token":"","expires_in":1}"#,
            Step::GcpMetadataToken,
            now
        )
        .is_err()
    );
    assert!(
        parse_oauth_token(
            br#"{"access_token":"x","expires_in":0}"#,
            Step::GcpMetadataToken,
            now
        )
        .is_err()
    );
}

#[test]
fn default_endpoints() {
    let endpoints = Endpoints::default();
    assert_eq!(
        metadata_token_request(&endpoints).unwrap().url.as_str(),
        "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token?scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform%2Chttps%3A%2F%2Fwww.googleapis.com%2Fauth%2Fuserinfo.email"
    );
    let sts = sts_exchange_request(&endpoints, "aud", &Secret::new("t"), false).unwrap();
    assert_eq!(sts.url.as_str(), "https://sts.googleapis.com/v1/token");
    let iam = impersonation_request(&endpoints, "a@b.iam.gserviceaccount.com", &Secret::new("t"))
        .unwrap();
    assert_eq!(
        iam.url.as_str(),
        "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@b.iam.gserviceaccount.com:generateAccessToken"
    );
}
