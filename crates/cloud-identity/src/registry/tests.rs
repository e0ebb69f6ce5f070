use super::*;

fn aws_region(host: &str) -> Result<String> {
    parse_registry(Provider::Aws, host, None).map(|i| i.cache_input().to_string())
}

#[test]
fn registry_host_from_image() {
    assert_eq!(
        registry_host("012345678901.dkr.ecr.us-east-1.amazonaws.com/foo/bar"),
        "012345678901.dkr.ecr.us-east-1.amazonaws.com"
    );
    assert_eq!(
        registry_host("012345678901.dkr.ecr.us-east-1.amazonaws.com/"),
        "012345678901.dkr.ecr.us-east-1.amazonaws.com"
    );
    assert_eq!(
        registry_host("012345678901.dkr.ecr.us-east-1.amazonaws.com"),
        "012345678901.dkr.ecr.us-east-1.amazonaws.com"
    );
    assert_eq!(registry_host("docker.io/library/nginx"), "index.docker.io");
    assert_eq!(registry_host("library/nginx"), "index.docker.io");
    assert_eq!(registry_host("127.0.0.1:5000/app"), "127.0.0.1:5000");
    assert_eq!(registry_host("localhost/app"), "localhost");
}

#[test]
fn aws_hosts_give_the_region() {
    for (host, region) in [
        ("012345678901.dkr.ecr.us-east-1.amazonaws.com", "us-east-1"),
        (
            "012345678901.dkr.ecr.cn-north-1.amazonaws.com.cn",
            "cn-north-1",
        ),
        (
            "012345678901.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            "us-gov-west-1",
        ),
        (
            "012345678901.dkr.ecr.eusc-de-east-1.amazonaws.eu",
            "eusc-de-east-1",
        ),
        (
            "012345678901.dkr.ecr.us-iso-east-1.c2s.ic.gov",
            "us-iso-east-1",
        ),
        (
            "012345678901.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
            "us-isob-east-1",
        ),
        (
            "012345678901.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
            "eu-isoe-west-1",
        ),
        (
            "012345678901.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
            "us-isof-south-1",
        ),
        ("012345678901.dkr-ecr.us-west-2.on.aws", "us-west-2"),
        ("public.ecr.aws", "public.ecr.aws"),
    ] {
        assert_eq!(aws_region(host).unwrap(), region, "{host}");
    }
    assert_eq!(
        parse_registry(Provider::Aws, "public.ecr.aws", None)
            .unwrap()
            .aws_region(),
        Some("us-east-1")
    );
}

#[test]
fn aws_pattern_is_unanchored_as_in_flux() {
    // Flux matches anywhere in the string: a longer host still yields the region.
    assert_eq!(
        aws_region("x.012345678901.dkr.ecr.us-east-1.amazonaws.com.evil").unwrap(),
        "us-east-1"
    );
}

#[test]
fn aws_rejects_other_hosts_with_flux_text() {
    for host in [
        "gcr.io",
        "012345678901.dkr.ecr.us-east-1.example.com",
        "ecr.aws",
    ] {
        let err = aws_region(host).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid AWS registry: '{host}'. must match {AWS_REGISTRY_PATTERN}")
        );
        assert_eq!(err.provider(), Provider::Aws);
    }
}

#[test]
fn gcp_hosts() {
    for host in [
        "gcr.io",
        "eu.gcr.io",
        "us.gcr.io",
        "europe-west1-docker.pkg.dev",
        "docker.s3nsregistry.fr",
    ] {
        assert_eq!(
            parse_registry(Provider::Gcp, host, None).unwrap(),
            RegistryInput::Gcp,
            "{host}"
        );
    }
    for host in ["gcr.io.evil", "docker.pkg.dev", "foo.azurecr.io"] {
        let err = parse_registry(Provider::Gcp, host, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid GCP registry: '{host}'. must match {GCP_REGISTRY_PATTERN}")
        );
    }
}

#[test]
fn azure_hosts() {
    for host in [
        "foo.azurecr.io",
        "foo.azurecr.cn",
        "foo.azurecr.de",
        "foo.azurecr.us",
    ] {
        assert_eq!(
            parse_registry(Provider::Azure, host, None).unwrap(),
            RegistryInput::Azure { host: host.into() }
        );
    }
    for host in ["azurecr.io", "foo.azurecr.io.evil", "gcr.io"] {
        let err = parse_registry(Provider::Azure, host, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid Azure registry: '{host}'. must match {AZURE_REGISTRY_PATTERN}")
        );
    }
}

#[test]
fn azure_private_cloud_suffix() {
    let env = AzureCloudEnvironment {
        container_registry_dns_suffix: "azurecr.private.example".into(),
        resource_manager_endpoint: "https://management.private.example/".into(),
        token_audience: "https://management.private.example/".into(),
    };
    assert!(parse_registry(Provider::Azure, "reg.azurecr.private.example", Some(&env)).is_ok());
    assert!(parse_registry(Provider::Azure, "foo.azurecr.io", Some(&env)).is_ok());
    assert!(parse_registry(Provider::Azure, "azurecr.private.example", Some(&env)).is_err());
    assert!(parse_registry(Provider::Azure, "regazurecr.private.example", Some(&env)).is_err());
}
