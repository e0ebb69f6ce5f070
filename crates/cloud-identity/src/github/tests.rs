use super::*;

#[test]
fn secret_validation_uses_flux_texts() {
    let mut data = BTreeMap::new();
    let err = GitHubAppConfig::from_secret_data(&data, "ns/app").unwrap_err();
    assert!(
        err.to_string().contains(
            "secretRef with github app data must be specified when provider is set to github"
        ),
        "{err}"
    );
    data.insert(INSTALLATION_ID_KEY.to_string(), b"1".to_vec());
    let err = GitHubAppConfig::from_secret_data(&data, "ns/app").unwrap_err();
    assert!(
        err.to_string()
            .contains("secret 'ns/app': key 'githubAppID' not found"),
        "{err}"
    );
    data.insert(APP_ID_KEY.to_string(), b"123".to_vec());
    let err = GitHubAppConfig::from_secret_data(&data, "ns/app").unwrap_err();
    assert!(
        err.to_string()
            .contains("key 'githubAppPrivateKey' not found"),
        "{err}"
    );
    data.insert(PRIVATE_KEY_KEY.to_string(), b"not a pem".to_vec());
    data.insert(INSTALLATION_OWNER_KEY.to_string(), b"org".to_vec());
    let err = GitHubAppConfig::from_secret_data(&data, "ns/app").unwrap_err();
    assert!(
            err.to_string().contains("secret 'ns/app': must contain exactly one of 'githubAppInstallationOwner' or 'githubAppInstallationID'"),
            "{err}"
        );
    data.remove(INSTALLATION_OWNER_KEY);
    data.insert(APP_ID_KEY.to_string(), b"abc".to_vec());
    let err = GitHubAppConfig::from_secret_data(&data, "ns/app").unwrap_err();
    assert!(
        err.to_string()
            .contains("app ID must be provided to use github app authentication"),
        "{err}"
    );
    data.insert(APP_ID_KEY.to_string(), b"123".to_vec());
    let err = GitHubAppConfig::from_secret_data(&data, "ns/app").unwrap_err();
    assert!(
        err.to_string().contains("could not parse private key"),
        "{err}"
    );
    assert!(!err.to_string().contains("not a pem"), "{err}");
}

#[test]
fn token_parsing_does_not_assume_a_length() {
    let long = format!("ghs_{}", "A".repeat(500));
    let body = serde_json::json!({"token": long, "expires_at": "2026-12-06T05:00:00Z"}).to_string();
    let login = parse_access_token(body.as_bytes()).unwrap();
    assert_eq!(login.username, "x-access-token");
    assert_eq!(login.password.expose(), long);
    assert!(parse_access_token(br#"{"token":"x"}"#).is_err());
}

#[test]
fn base_url_is_used_verbatim() {
    let root = url::Url::parse("http://127.0.0.1:8080/").unwrap();
    let request = access_token_request(&root, 456, &Secret::new("jwt")).unwrap();
    assert_eq!(
        request.url.as_str(),
        "http://127.0.0.1:8080/app/installations/456/access_tokens"
    );
    let ghe = url::Url::parse("https://ghe.example/api/v3/").unwrap();
    let [org, user] = installation_lookup_requests(&ghe, "my-org", &Secret::new("jwt")).unwrap();
    assert_eq!(
        org.url.as_str(),
        "https://ghe.example/api/v3/orgs/my-org/installation"
    );
    assert_eq!(
        user.url.as_str(),
        "https://ghe.example/api/v3/users/my-org/installation"
    );
}
