use super::*;

#[test]
fn role_arn_annotation() {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        ROLE_ARN_ANNOTATION.to_string(),
        "arn:aws:iam::123456789012:role/flux".to_string(),
    );
    assert_eq!(
        role_arn_from_annotations(&annotations).unwrap(),
        "arn:aws:iam::123456789012:role/flux"
    );
    annotations.insert(
        ROLE_ARN_ANNOTATION.to_string(),
        "arn:aws-cn:iam::123456789012:role/x".to_string(),
    );
    assert!(role_arn_from_annotations(&annotations).is_ok());
    annotations.insert(ROLE_ARN_ANNOTATION.to_string(), "role/flux".to_string());
    let err = role_arn_from_annotations(&annotations).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "invalid eks.amazonaws.com/role-arn annotation: 'role/flux'. must match {ROLE_ARN_PATTERN}"
        )),
        "{err}"
    );
}

#[test]
fn session_name_is_flux_format_and_bounded() {
    assert_eq!(
        service_account_session_name("sa", "ns", "us-east-1"),
        "sa.ns.us-east-1.fluxcd.io"
    );
    assert_eq!(
        service_account_session_name(&"a".repeat(100), "ns", "r").len(),
        64
    );
}

#[test]
fn endpoints_by_partition_and_override() {
    let none = Endpoints::default();
    assert_eq!(
        sts_endpoint(&none, "us-east-1").unwrap().as_str(),
        "https://sts.us-east-1.amazonaws.com/"
    );
    assert_eq!(
        sts_endpoint(&none, "cn-north-1").unwrap().as_str(),
        "https://sts.cn-north-1.amazonaws.com.cn/"
    );
    let private = RegistryInput::AwsPrivate {
        region: "eu-west-1".into(),
    };
    assert_eq!(
        ecr_endpoint(&none, &private).unwrap().as_str(),
        "https://api.ecr.eu-west-1.amazonaws.com/"
    );
    assert_eq!(
        ecr_endpoint(&none, &RegistryInput::AwsPublic)
            .unwrap()
            .as_str(),
        "https://api.ecr-public.us-east-1.amazonaws.com/"
    );
    let local = url::Url::parse("http://127.0.0.1:9/").unwrap();
    let overridden = Endpoints {
        aws_ecr: Some(local.clone()),
        ..Endpoints::default()
    };
    assert_eq!(ecr_endpoint(&overridden, &private).unwrap(), local);
}

#[test]
fn sts_request_is_an_unsigned_form() {
    let endpoint = url::Url::parse("https://sts.us-east-1.amazonaws.com/").unwrap();
    let request = assume_role_with_web_identity_request(
        &endpoint,
        "arn:aws:iam::123456789012:role/flux",
        "sa.ns.us-east-1.fluxcd.io",
        &Secret::new("jwt.token+/="),
    );
    assert_eq!(request.method, Method::Post);
    assert_eq!(request.header_value("authorization"), None);
    let form: BTreeMap<String, String> =
        form_urlencoded::parse(&request.body).into_owned().collect();
    assert_eq!(form["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(form["Version"], "2011-06-15");
    assert_eq!(form["RoleArn"], "arn:aws:iam::123456789012:role/flux");
    assert_eq!(form["RoleSessionName"], "sa.ns.us-east-1.fluxcd.io");
    assert_eq!(form["WebIdentityToken"], "jwt.token+/=");
    assert!(!form.contains_key("DurationSeconds"));
}

#[test]
fn sts_response_parsing() {
    let body =
        br#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
<Credentials>
  <SessionToken>FwoGZXIvYXdzEJr//////////wEaD+token</SessionToken>
  <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
  <Expiration>2026-12-06T04:00:00Z</Expiration>
  <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
</Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
    let credentials = parse_assume_role_response(body).unwrap();
    assert_eq!(credentials.access_key_id, "ASIAIOSFODNN7EXAMPLE");
    assert_eq!(
        credentials.session_token.as_ref().unwrap().expose(),
        "FwoGZXIvYXdzEJr//////////wEaD+token"
    );
    assert_eq!(
        credentials.expires_at,
        crate::time::parse_rfc3339("2026-12-06T04:00:00Z")
    );
    let shown = format!("{credentials:?}");
    assert!(
        !shown.contains("EXAMPLEKEY") && !shown.contains("token</"),
        "{shown}"
    );

    let err = parse_assume_role_response(b"<R><Result/></R>").unwrap_err();
    assert!(err.to_string().ends_with("credentials are nil"), "{err}");

    let no_expiry = br#"<R><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey><SessionToken>T</SessionToken></Credentials></R>"#;
    assert_eq!(
        parse_assume_role_response(no_expiry).unwrap().expires_at,
        Some(SystemTime::UNIX_EPOCH)
    );
}

#[test]
fn aws_error_bodies_are_summarised() {
    let xml = br#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>"#;
    assert_eq!(
        error_summary(xml),
        "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity"
    );
    let json = br#"{"__type":"com.amazon.coral.service#AccessDeniedException","message":"denied"}"#;
    assert_eq!(error_summary(json), "AccessDeniedException: denied");
}

fn ecr_body(token: &str, expires_at: &str) -> Vec<u8> {
    format!(
        r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{expires_at},"proxyEndpoint":"https://x"}}]}}"#
    )
    .into_bytes()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn ecr_token_decoding() {
    let private = RegistryInput::AwsPrivate {
        region: "us-east-1".into(),
    };
    let login =
        parse_authorization_token(&ecr_body(&b64("AWS:pass-word"), "1.4200704E9"), &private)
            .unwrap();
    assert_eq!(login.username, "AWS");
    assert_eq!(login.password.expose(), "pass-word");
    assert_eq!(crate::time::epoch_seconds(login.expires_at), 1_420_070_400);

    for (token, message) in [
        (b64("no-colon"), "invalid authorization token format"),
        (b64("a:b:c"), "invalid authorization token format"),
        ("%%%".to_string(), "invalid authorization token format"),
    ] {
        let err = parse_authorization_token(&ecr_body(&token, "1"), &private).unwrap_err();
        assert!(err.to_string().ends_with(message), "{err}");
    }
    let empty = parse_authorization_token(br#"{"authorizationData":[]}"#, &private);
    assert!(
        empty
            .unwrap_err()
            .to_string()
            .ends_with("no authorization data returned")
    );
    let nil = parse_authorization_token(br#"{"authorizationData":[{"expiresAt":1}]}"#, &private);
    assert!(
        nil.unwrap_err()
            .to_string()
            .ends_with("authorization token is nil")
    );
    let no_expiry = format!(
        r#"{{"authorizationData":[{{"authorizationToken":"{}"}}]}}"#,
        b64("AWS:p")
    );
    let err = parse_authorization_token(no_expiry.as_bytes(), &private).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("authorization token expiration is nil"),
        "{err}"
    );

    let public = format!(
        r#"{{"authorizationData":{{"authorizationToken":"{}","expiresAt":1.5E9}}}}"#,
        b64("AWS:public-pass")
    );
    let login = parse_authorization_token(public.as_bytes(), &RegistryInput::AwsPublic).unwrap();
    assert_eq!(login.password.expose(), "public-pass");
}

#[test]
fn ecr_request_targets() {
    let endpoint = url::Url::parse("https://api.ecr.us-east-1.amazonaws.com/").unwrap();
    let private = RegistryInput::AwsPrivate {
        region: "us-east-1".into(),
    };
    let (request, service) = get_authorization_token_request(&endpoint, &private);
    assert_eq!(service, "ecr");
    assert_eq!(request.header_value("x-amz-target"), Some(ECR_TARGET));
    assert_eq!(request.body, b"{}");
    let (request, service) = get_authorization_token_request(&endpoint, &RegistryInput::AwsPublic);
    assert_eq!(service, "ecr-public");
    assert_eq!(
        request.header_value("x-amz-target"),
        Some(ECR_PUBLIC_TARGET)
    );
}

#[test]
fn container_credentials_urls() {
    let env = |full: &str| AwsEnvironment {
        container_credentials_full_uri: Some(full.to_string()),
        ..AwsEnvironment::default()
    };
    for ok in [
        "http://169.254.170.23/v1/credentials",
        "http://[fd00:ec2::23]/v1/credentials",
        "http://127.0.0.1:8080/creds",
        "https://creds.example/x",
    ] {
        assert!(
            container_credentials_url(&env(ok)).unwrap().is_some(),
            "{ok}"
        );
    }
    for bad in ["http://10.0.0.1/creds", "ftp://127.0.0.1/"] {
        assert!(container_credentials_url(&env(bad)).is_err(), "{bad}");
    }
    let relative = AwsEnvironment {
        container_credentials_relative_uri: Some("/v2/credentials/abc".into()),
        ..AwsEnvironment::default()
    };
    assert_eq!(
        container_credentials_url(&relative)
            .unwrap()
            .unwrap()
            .as_str(),
        "http://169.254.170.2/v2/credentials/abc"
    );
}

#[test]
fn container_credentials_json() {
    let body = br#"{"AccessKeyId":"ASIA","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-06T04:00:00Z","AccountId":"123"}"#;
    let credentials = parse_container_credentials(body, Step::ContainerCredentials).unwrap();
    assert_eq!(credentials.access_key_id, "ASIA");
    assert!(credentials.expires_at.is_some());
    assert!(parse_container_credentials(b"{}", Step::ContainerCredentials).is_err());
}
