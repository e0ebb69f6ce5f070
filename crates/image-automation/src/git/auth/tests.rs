use super::*;

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn ssh_needs_known_hosts() {
    let d = data(&[("identity", "KEY")]);
    let err = GitAuth::from_secret("ssh://git@host/repo.git", Some(&d)).unwrap_err();
    assert!(
        matches!(err, GitError::InvalidSecret(ref m) if m.contains("known_hosts")),
        "{err}"
    );
    assert!(GitAuth::from_secret("git@host:org/repo.git", None).is_err());
    let d = data(&[
        ("identity", "KEY"),
        ("known_hosts", "host ssh-ed25519 AAAA"),
    ]);
    assert!(GitAuth::from_secret("ssh://git@host/repo.git", Some(&d)).is_ok());
}

#[test]
fn http_variants_and_redaction() {
    let d = data(&[("username", "u"), ("password", "hunter22")]);
    let auth = GitAuth::from_secret("https://h/r.git", Some(&d)).unwrap();
    assert!(!format!("{auth:?}").contains("hunter22"));
    let header = auth.authorization().unwrap();
    assert!(header.expose().starts_with("Basic "));
    let scrubbed = auth.secrets("https://h/r.git").scrub(&format!(
        "bad hunter22 {} http://u:hunter22@h/x",
        header.expose()
    ));
    assert!(!scrubbed.contains("hunter22"), "{scrubbed}");
    assert!(!scrubbed.contains(header.expose()), "{scrubbed}");
    let d = data(&[("bearerToken", "tok-123")]);
    let auth = GitAuth::from_secret("https://h/r.git", Some(&d)).unwrap();
    assert_eq!(auth.authorization().unwrap().expose(), "Bearer tok-123");
    assert_eq!(
        auth.secrets("https://h/r.git").scrub("said Bearer tok-123"),
        "said [redacted]"
    );
    // Credentials in the URL count without a secret.
    let secrets = GitAuth::none().secrets("https://bot:s3cr%2Ft@h/r.git");
    assert_eq!(secrets.scrub("s3cr/t s3cr%2Ft"), "[redacted] [redacted]");
    let d = data(&[("username", "u"), ("password", "p"), ("bearerToken", "t")]);
    assert!(GitAuth::from_secret("https://h/r.git", Some(&d)).is_err());
    let d = data(&[("password", "p")]);
    assert!(GitAuth::from_secret("https://h/r.git", Some(&d)).is_err());
    assert_eq!(
        GitAuth::from_secret("https://h/r.git", None).unwrap(),
        GitAuth::none()
    );
}

#[test]
fn proxy_secrets() {
    let url = "https://h/r.git";
    let with = |pairs: &[(&str, &str)]| GitAuth::none().with_proxy_secret(url, &data(pairs));
    assert!(matches!(with(&[]), Err(GitError::InvalidSecret(_))));
    assert!(matches!(
        with(&[("address", "ftp://p:1")]),
        Err(GitError::InvalidSecret(_))
    ));
    let socks = with(&[
        ("address", "socks5://p:1080"),
        ("username", "u"),
        ("password", "so cks@5"),
    ])
    .unwrap();
    assert_eq!(
        socks
            .proxy
            .as_ref()
            .unwrap()
            .url_with_credentials()
            .expose(),
        "socks5://u:so%20cks%405@p:1080"
    );
    let scrubbed = socks
        .secrets(url)
        .scrub("socks5://u:so%20cks%405@p:1080 so cks@5");
    assert!(
        !scrubbed.contains("so cks") && !scrubbed.contains("so%20cks"),
        "{scrubbed}"
    );
    assert!(matches!(
        with(&[("address", "http://p:3128"), ("password", "x")]),
        Err(GitError::InvalidSecret(_))
    ));
    assert!(matches!(
        GitAuth::none()
            .with_proxy_secret("ssh://git@h/r.git", &data(&[("address", "http://p:3128")])),
        Err(GitError::Unsupported(_))
    ));

    let auth = with(&[
        ("address", "http://proxy.example:3128/"),
        ("username", "u"),
        ("password", "p@ss:w/rd"),
    ])
    .unwrap();
    let proxy = auth.proxy.clone().unwrap();
    assert_eq!(proxy.address, "http://proxy.example:3128");
    assert_eq!(
        proxy.url_with_credentials().expose(),
        "http://u:p%40ss%3Aw%2Frd@proxy.example:3128/"
    );
    assert!(!format!("{auth:?}").contains("p@ss"));
    let proxy_header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:p@ss:w/rd")
    );
    let scrubbed = auth.secrets(url).scrub(&format!(
        "proxy p@ss:w/rd and p%40ss%3Aw%2Frd failed; Proxy-Authorization: {proxy_header}"
    ));
    assert!(
        !scrubbed.contains("p@ss")
            && !scrubbed.contains("p%40ss")
            && !scrubbed.contains(&proxy_header[6..]),
        "{scrubbed}"
    );
    let files = CredFiles::new(&auth, Duration::from_secs(5)).unwrap();
    let env = files.git_env();
    let values: Vec<String> = env
        .iter()
        .map(|(_, v)| v.to_string_lossy().into_owned())
        .collect();
    assert!(
        values
            .iter()
            .any(|v| v.contains("u:p%40ss%3Aw%2Frd@proxy.example"))
    );

    // Credentials may also come in the address.
    let auth = with(&[("address", "https://a%20b:c%2Fd@p.example:8443")]).unwrap();
    let proxy = auth.proxy.unwrap();
    assert_eq!(proxy.address, "https://p.example:8443");
    let (user, password) = proxy.credentials.unwrap();
    assert_eq!((user.as_str(), password.expose()), ("a b", "c/d"));
}

#[test]
fn url_kinds() {
    assert!(is_ssh_url("ssh://git@h:22/x"));
    assert!(is_ssh_url("git@github.com:org/repo.git"));
    assert!(!is_ssh_url("https://h/x"));
    assert!(!is_ssh_url("/local/path"));
}
