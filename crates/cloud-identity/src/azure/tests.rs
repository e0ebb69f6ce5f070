use super::*;

fn b64url(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[test]
fn annotations_presence_with_flux_text() {
    let mut annotations = BTreeMap::new();
    annotations.insert(CLIENT_ID_ANNOTATION.to_string(), "client".to_string());
    let err = identity_from_annotations(&annotations).unwrap_err();
    assert!(
            err.to_string().contains("azure tenant ID is not set in the service account annotation azure.workload.identity/tenant-id"),
            "{err}"
        );
    annotations.insert(TENANT_ID_ANNOTATION.to_string(), "tenant".to_string());
    assert_eq!(
        identity_from_annotations(&annotations).unwrap(),
        ("tenant".to_string(), "client".to_string())
    );
}

#[test]
fn scopes() {
    assert_eq!(
        registry_scope(None),
        "https://containerregistry.azure.net/.default"
    );
    let cloud = AzureCloudEnvironment {
        container_registry_dns_suffix: "azurecr.private".into(),
        resource_manager_endpoint: "https://management.private/".into(),
        token_audience: "https://management.private/".into(),
    };
    assert_eq!(
        registry_scope(Some(&cloud)),
        "https://management.private/.default"
    );
}

#[test]
fn default_urls() {
    let endpoints = Endpoints::default();
    let request = federated_token_request(
        &endpoints,
        "tenant-1",
        "client-1",
        &Secret::new("a"),
        ACR_SCOPE,
    )
    .unwrap();
    assert_eq!(
        request.url.as_str(),
        "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
    );
    let imds = imds_token_request(&endpoints, ACR_SCOPE, Some("cid")).unwrap();
    assert_eq!(
        imds.url.as_str(),
        "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fcontainerregistry.azure.net&client_id=cid"
    );
    let exchange = acr_exchange_request(&endpoints, "reg.azurecr.io", &Secret::new("t")).unwrap();
    assert_eq!(
        exchange.url.as_str(),
        "https://reg.azurecr.io/oauth2/exchange?api-version=2021-07-01"
    );
}

#[test]
fn refresh_token_expiry_from_exp_claim() {
    let jwt = format!(
        "{}.{}.sig",
        b64url(r#"{"alg":"RS256"}"#),
        b64url(r#"{"exp":1900000000,"grant_type":"refresh_token"}"#)
    );
    let body = serde_json::json!({ "refresh_token": jwt }).to_string();
    let login = parse_acr_exchange(body.as_bytes()).unwrap();
    assert_eq!(login.username, REGISTRY_USERNAME);
    assert_eq!(crate::time::epoch_seconds(login.expires_at), 1_900_000_000);
    let err = parse_acr_exchange(br#"{"refresh_token":"opaque"}"#).unwrap_err();
    assert!(err.to_string().contains("not a JWT"), "{err}");
}

#[test]
fn token_response_expiry_forms() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let entra = parse_token_response(
        br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"x"}"#,
        Step::AzureAdToken,
        now,
    )
    .unwrap();
    assert_eq!(entra.expires_at, now + Duration::from_secs(3599));
    let imds = parse_token_response(br#"{"access_token":"x","expires_in":"3599","expires_on":"1900000000","resource":"r","token_type":"Bearer"}"#, Step::AzureImdsToken, now).unwrap();
    assert_eq!(crate::time::epoch_seconds(imds.expires_at), 1_900_000_000);
    assert!(parse_token_response(br#"{"access_token":"x"}"#, Step::AzureAdToken, now).is_err());
}
