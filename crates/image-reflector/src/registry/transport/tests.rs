#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn secret(pairs: &[(&str, &[u8])]) -> SecretData {
    pairs
        .iter()
        .fold(SecretData::new("certs", "Opaque"), |s, (k, v)| {
            s.with(*k, v.to_vec())
        })
}

#[test]
fn tls_error_cases() {
    let e = TlsConfig::from_secret(&secret(&[("tls.crt", b"x")])).unwrap_err();
    assert!(
        matches!(e, TlsError::CertWithoutKey { key: "tls.key", .. }),
        "{e}"
    );
    let e = TlsConfig::from_secret(&secret(&[("tls.key", b"x")])).unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::KeyWithoutCert {
                cert: "tls.crt",
                ..
            }
        ),
        "{e}"
    );
    let e = TlsConfig::from_secret(&secret(&[("certFile", b"x")])).unwrap_err();
    assert!(
        matches!(e, TlsError::CertWithoutKey { key: "keyFile", .. }),
        "{e}"
    );
    let e = TlsConfig::from_secret(&secret(&[("other", b"x")])).unwrap_err();
    assert_eq!(
        e,
        TlsError::Empty {
            secret: "certs".into()
        }
    );
    let e = TlsConfig::from_secret(&secret(&[("ca.crt", b"not pem")])).unwrap_err();
    assert!(
        matches!(e, TlsError::InvalidCa { key: "ca.crt", .. }),
        "{e}"
    );
    let e = TlsConfig::from_secret(&secret(&[("tls.crt", b"a"), ("tls.key", b"b")])).unwrap_err();
    assert!(
        matches!(e, TlsError::InvalidClientCertificate { .. }),
        "{e}"
    );
}

#[test]
fn proxy_from_secret() {
    let p = ProxyConfig::from_secret(&secret(&[
        ("address", b"http://proxy.example:3128"),
        ("username", b"u"),
        ("password", b"s3cret"),
    ]))
    .unwrap();
    assert_eq!(p.address(), "http://proxy.example:3128");
    assert!(!format!("{p:?}").contains("s3cret"));
    assert_eq!(p.url.username(), "u");
    assert!(ProxyConfig::from_secret(&secret(&[("address", b"socks5://127.0.0.1:1080")])).is_ok());
    assert!(ProxyConfig::from_secret(&secret(&[("address", b"https://p.example")])).is_ok());
    assert_eq!(
        ProxyConfig::from_secret(&secret(&[("username", b"u")])).unwrap_err(),
        ProxyError::MissingAddress {
            secret: "certs".into()
        }
    );
    assert!(matches!(
        ProxyConfig::from_secret(&secret(&[("address", b"ftp://p.example")])).unwrap_err(),
        ProxyError::UnsupportedScheme { .. }
    ));
    assert!(matches!(
        ProxyConfig::from_secret(&secret(&[("address", b"not a url")])).unwrap_err(),
        ProxyError::InvalidAddress { .. }
    ));
    let long = format!("http://{}.example", "a".repeat(MAX_PROXY_ADDRESS));
    assert!(matches!(
        ProxyConfig::from_secret(&secret(&[("address", long.as_bytes())])).unwrap_err(),
        ProxyError::AddressTooLong { .. }
    ));
    // A socks5 proxy builds a client (the reqwest `socks` feature is on).
    let socks =
        ProxyConfig::from_secret(&secret(&[("address", b"socks5://127.0.0.1:1080")])).unwrap();
    let transport = TransportConfig {
        tls: None,
        proxy: Some(socks),
    };
    assert!(
        transport
            .build("test", Duration::from_secs(1), &Observer::default())
            .is_ok()
    );
}
