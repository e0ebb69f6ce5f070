use super::*;
use std::collections::HashMap;

fn env(vars: &[(&str, &str)]) -> Result<Environment> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Environment::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn service_specific_endpoint_wins_over_the_general_one() {
    let env = env(&[
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:2"),
    ])
    .unwrap();
    assert_eq!(
        env.endpoints.aws_sts.unwrap().as_str(),
        "http://127.0.0.1:2/"
    );
    assert_eq!(
        env.endpoints.aws_ecr.unwrap().as_str(),
        "http://127.0.0.1:1/"
    );
}

#[test]
fn google_sts_and_iam_credentials_can_be_pointed_elsewhere() {
    let env = env(&[
        ("GCP_ENDPOINT_URL_STS", "http://127.0.0.1:3"),
        (
            "GCP_ENDPOINT_URL_IAM_CREDENTIALS",
            "http://127.0.0.1:4/iam/",
        ),
    ])
    .unwrap();
    assert_eq!(
        env.endpoints.google_sts.unwrap().as_str(),
        "http://127.0.0.1:3/"
    );
    assert_eq!(
        env.endpoints.google_iam_credentials.unwrap().as_str(),
        "http://127.0.0.1:4/iam/"
    );
    assert!(env_is_default_without_them());
}

fn env_is_default_without_them() -> bool {
    let env = env(&[]).unwrap();
    env.endpoints.google_sts.is_none() && env.endpoints.google_iam_credentials.is_none()
}

#[test]
fn bad_url_names_the_variable() {
    let err = env(&[("AWS_ENDPOINT_URL_ECR", "not a url")]).unwrap_err();
    assert!(err.to_string().contains("AWS_ENDPOINT_URL_ECR"), "{err}");
}

#[test]
fn empty_values_are_unset_and_secrets_are_hidden() {
    let env = env(&[
        ("AWS_REGION", ""),
        ("AWS_SECRET_ACCESS_KEY", "very-secret-key"),
    ])
    .unwrap();
    assert_eq!(env.aws.region, None);
    assert!(!format!("{env:?}").contains("very-secret-key"));
}
