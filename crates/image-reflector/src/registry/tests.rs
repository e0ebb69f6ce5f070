#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn cloud_providers_ignore_pull_secrets() {
    let image =
        ImageReference::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", false).unwrap();
    let json = r#"{"auths":{"123456789012.dkr.ecr.eu-west-1.amazonaws.com":{"username":"u","password":"p"}}}"#;
    let secrets = [SecretData::docker_config_json("pull", json)];
    for provider in [
        RegistryProvider::Aws,
        RegistryProvider::Azure,
        RegistryProvider::Gcp,
    ] {
        let access = resolve_access(
            &image,
            &AccessInputs {
                provider,
                pull_secrets: &secrets,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(access.credentials, None, "{provider:?}");
    }
    let anonymous = resolve_access(&image, &AccessInputs::default()).unwrap();
    assert_eq!(anonymous, RegistryAccess::default());
}

#[test]
fn pull_secrets_resolve_for_the_image_host() {
    let image = ImageReference::parse("127.0.0.1:5000/team/app", false).unwrap();
    let json = r#"{"auths":{"127.0.0.1:5000":{"username":"u","password":"p"}}}"#;
    let secrets = [SecretData::docker_config_json("pull", json)];
    let access = resolve_access(
        &image,
        &AccessInputs {
            pull_secrets: &secrets,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(access.credentials, Some(Credentials::new("u", "p")));
    let other = ImageReference::parse("127.0.0.1:5001/team/app", false).unwrap();
    let access = resolve_access(
        &other,
        &AccessInputs {
            pull_secrets: &secrets,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(access.credentials, None);
    // Bad cert and proxy secrets name the field.
    let certs = SecretData::new("certs", "Opaque");
    let e = resolve_access(
        &image,
        &AccessInputs {
            cert_secret: Some(&certs),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("spec.certSecretRef: secret 'certs'"),
        "{e}"
    );
    let e = resolve_access(
        &image,
        &AccessInputs {
            proxy_secret: Some(&certs),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("spec.proxySecretRef: secret 'certs'"),
        "{e}"
    );
}
