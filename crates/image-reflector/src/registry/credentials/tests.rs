#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn config(auths: &[(&str, &str, &str)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = auths
        .iter()
        .map(|(k, u, p)| {
            (
                (*k).to_string(),
                serde_json::json!({"username": u, "password": p}),
            )
        })
        .collect();
    serde_json::json!({ "auths": map }).to_string()
}

fn keychain(auths: &[(&str, &str, &str)]) -> Keychain {
    Keychain::from_pull_secrets(&[SecretData::docker_config_json("s", config(auths))]).unwrap()
}

fn user(k: &Keychain, target: &str) -> Option<String> {
    k.resolve_target(target).map(|c| c.username.clone())
}

fn image_user(k: &Keychain, image: &str) -> Option<String> {
    k.resolve(&ImageReference::parse(image, false).unwrap())
        .map(|c| c.username.clone())
}

#[test]
fn host_keys_match_any_path_on_that_host() {
    let k = keychain(&[("example.com", "u", "p")]);
    assert_eq!(user(&k, "example.com/foo/bar").as_deref(), Some("u"));
    assert_eq!(user(&k, "example.com:5000/foo"), None, "port must match");
    assert_eq!(
        user(&k, "sub.example.com/foo"),
        None,
        "label count must match"
    );
    assert_eq!(user(&k, "example.org/foo"), None);
    // Schemes and /v1/, /v2/ paths are ignored.
    for key in [
        "https://example.com",
        "http://example.com/",
        "https://example.com/v1/",
        "example.com/v2/",
    ] {
        let k = keychain(&[(key, "u", "p")]);
        assert_eq!(user(&k, "example.com/foo").as_deref(), Some("u"), "{key}");
    }
}

#[test]
fn ports_and_paths() {
    let k = keychain(&[("127.0.0.1:5000", "u", "p")]);
    assert_eq!(user(&k, "127.0.0.1:5000/team/app").as_deref(), Some("u"));
    assert_eq!(user(&k, "127.0.0.1:5001/team/app"), None);
    assert_eq!(user(&k, "127.0.0.1/team/app"), None);
    let k = keychain(&[("quay.io/team", "team", "p"), ("quay.io", "any", "p")]);
    assert_eq!(user(&k, "quay.io/team/app").as_deref(), Some("team"));
    assert_eq!(user(&k, "quay.io/other/app").as_deref(), Some("any"));
    // A path prefix is a string prefix, as in the kubelet.
    assert_eq!(user(&k, "quay.io/teamster/app").as_deref(), Some("team"));
}

#[test]
fn wildcard_labels() {
    let k = keychain(&[("*.example.com", "w", "p")]);
    assert_eq!(user(&k, "registry.example.com/foo").as_deref(), Some("w"));
    assert_eq!(user(&k, "example.com/foo"), None);
    assert_eq!(user(&k, "a.b.example.com/foo"), None);
    assert_eq!(user(&k, "registry.example.org/foo"), None);
    let k = keychain(&[("*.*.example.com", "w", "p"), ("reg*.io", "q", "p")]);
    assert_eq!(user(&k, "a.b.example.com/foo").as_deref(), Some("w"));
    assert_eq!(user(&k, "reg1.io/foo").as_deref(), Some("q"));
    assert_eq!(user(&k, "reg.io/foo").as_deref(), Some("q"));
    assert_eq!(user(&k, "xreg1.io/foo"), None);
    // `?` cannot appear in a key (it starts a URL query), but the label glob has it.
    assert!(glob_match(b"reg?", b"reg1"));
    assert!(!glob_match(b"reg?", b"reg12"));
}

#[test]
fn docker_hub_keys() {
    for key in [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "docker.io",
        "https://docker.io",
    ] {
        let k = keychain(&[(key, "hub", "p")]);
        assert_eq!(image_user(&k, "alpine").as_deref(), Some("hub"), "{key}");
        assert_eq!(
            image_user(&k, "docker.io/fluxcd/flux").as_deref(),
            Some("hub"),
            "{key}"
        );
        assert_eq!(image_user(&k, "ghcr.io/fluxcd/flux"), None, "{key}");
    }
    let k = keychain(&[
        ("index.docker.io/fluxcd", "flux", "p"),
        ("docker.io", "hub", "p"),
    ]);
    assert_eq!(image_user(&k, "fluxcd/flux").as_deref(), Some("flux"));
    assert_eq!(image_user(&k, "alpine").as_deref(), Some("hub"));
}

#[test]
fn auth_field_overrides_and_is_validated() {
    let auth = base64::engine::general_purpose::STANDARD.encode("real:pa:ss");
    let json =
        serde_json::json!({"auths": {"r.io": {"username": "x", "password": "y", "auth": auth}}});
    let k = Keychain::from_pull_secrets(&[SecretData::docker_config_json("s", json.to_string())])
        .unwrap();
    let c = k.resolve_target("r.io/a").unwrap();
    assert_eq!(
        (c.username.as_str(), c.password.as_str()),
        ("real", "pa:ss")
    );

    let bad = serde_json::json!({"auths": {"r.io": {"auth": "bm9jb2xvbg=="}}}); // "nocolon"
    let e = Keychain::from_pull_secrets(&[SecretData::docker_config_json("s", bad.to_string())])
        .unwrap_err();
    assert_eq!(
        e,
        CredentialsError::InvalidAuthField {
            secret: "s".into(),
            registry: "r.io".into()
        }
    );
    assert!(!e.to_string().contains("bm9jb2xvbg"));
    let e = Keychain::from_pull_secrets(&[SecretData::docker_config_json("s", "{not json")])
        .unwrap_err();
    assert!(matches!(e, CredentialsError::InvalidJson { .. }), "{e}");
    // Found by the dockerconfigjson fuzz target: serde_json quoted the misplaced value.
    let e = Keychain::from_pull_secrets(&[SecretData::docker_config_json(
        "s",
        r#"{"auths":{"ghcr.io":"plain-string-secret-value"}}"#,
    )])
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "secret 's': .dockerconfigjson is not valid docker config JSON: a value of the wrong \
             type or shape at line 1 column 47"
    );
}

#[test]
fn secrets_merge_in_order_and_other_types_are_ignored() {
    let first = SecretData::docker_config_json("first", config(&[("r.io", "first", "p")]));
    let second = SecretData::docker_config_json(
        "second",
        config(&[("r.io", "second", "p"), ("other.io", "o", "p")]),
    );
    let legacy = SecretData::new("legacy", DOCKER_CFG_TYPE).with(
        DOCKER_CFG_KEY,
        serde_json::json!({"legacy.io": {"username": "l", "password": "p"}}).to_string(),
    );
    let opaque = SecretData::new("opaque", "Opaque")
        .with(DOCKER_CONFIG_JSON_KEY, config(&[("x.io", "x", "p")]));
    let missing_key = SecretData::new("empty", DOCKER_CONFIG_JSON_TYPE);
    let k = Keychain::from_pull_secrets(&[first, second, legacy, opaque, missing_key]).unwrap();
    assert_eq!(user(&k, "r.io/a").as_deref(), Some("first"));
    assert_eq!(user(&k, "other.io/a").as_deref(), Some("o"));
    assert_eq!(user(&k, "legacy.io/a").as_deref(), Some("l"));
    assert_eq!(user(&k, "x.io/a"), None);
}

#[test]
fn debug_never_shows_secrets() {
    let c = Credentials::new("user", "hunter2");
    assert!(!format!("{c:?}").contains("hunter2"));
    let s = SecretData::docker_config_json("s", "hunter2");
    assert!(!format!("{s:?}").contains("hunter2"));
}
