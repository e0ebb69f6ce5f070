//! AWS Signature Version 4 for header-signed requests.

use std::time::SystemTime;

use aws_lc_rs::{digest, hmac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::AwsCredentials;
use crate::http::HttpRequest;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Everything but the RFC 3986 unreserved characters is encoded, as SigV4 requires.
const SIGV4_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What a signature is scoped to.
#[derive(Debug, Clone, Copy)]
pub struct SigningScope<'a> {
    pub region: &'a str,
    /// The signing name: `sts`, `ecr`, `ecr-public`, ...
    pub service: &'a str,
    pub at: SystemTime,
}

/// Signs `request` in place: adds `X-Amz-Date`, `X-Amz-Security-Token` (with a session
/// token) and `Authorization`. Every header already on the request, plus `host`, is signed.
pub fn sign(request: &mut HttpRequest, credentials: &AwsCredentials, scope: SigningScope<'_>) {
    let (amz_date, date) = crate::time::amz_date(scope.at);
    request.headers.retain(|(name, _)| {
        !name.eq_ignore_ascii_case("authorization")
            && !name.eq_ignore_ascii_case("x-amz-date")
            && !name.eq_ignore_ascii_case("x-amz-security-token")
    });
    request
        .headers
        .push(("X-Amz-Date".into(), amz_date.clone()));
    if let Some(token) = &credentials.session_token {
        request
            .headers
            .push(("X-Amz-Security-Token".into(), token.expose().to_string()));
    }
    let payload_hash = hex_sha256(&request.body);
    let (canonical, signed_headers) = canonical_request(request, &payload_hash);
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let to_sign = string_to_sign(&amz_date, &credential_scope, &canonical);
    let key = signing_key(
        credentials.secret_access_key.expose(),
        &date,
        scope.region,
        scope.service,
    );
    let signature = hex::encode(hmac::sign(&key, to_sign.as_bytes()).as_ref());
    request.headers.push((
        "Authorization".into(),
        format!(
            "{ALGORITHM} Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
}

/// The canonical request and the signed-header list.
pub fn canonical_request(request: &HttpRequest, payload_hash: &str) -> (String, String) {
    let method = match request.method {
        crate::http::Method::Get => "GET",
        crate::http::Method::Post => "POST",
        crate::http::Method::Put => "PUT",
    };
    // The URL's path is percent-encoded once already; encoding each segment again gives the
    // double encoding SigV4 uses for every service but S3.
    let path = request.url.path();
    let canonical_uri = if path.is_empty() {
        "/".to_string()
    } else {
        path.split('/')
            .map(|segment| utf8_percent_encode(segment, SIGV4_ENCODE).to_string())
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut query: Vec<(String, String)> = request
        .url
        .query_pairs()
        .map(|(k, v)| {
            (
                utf8_percent_encode(&k, SIGV4_ENCODE).to_string(),
                utf8_percent_encode(&v, SIGV4_ENCODE).to_string(),
            )
        })
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");

    let mut headers: Vec<(String, String)> = Vec::new();
    if !request
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        headers.push(("host".into(), host_header(&request.url)));
    }
    for (name, value) in &request.headers {
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        let name = name.to_ascii_lowercase();
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    headers.sort();
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (
        format!(
            "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
        ),
        signed_headers,
    )
}

/// `Host` as the HTTP client sends it: the port only when not the scheme's default.
pub fn host_header(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

pub fn string_to_sign(amz_date: &str, credential_scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{credential_scope}\n{}",
        hex_sha256(canonical_request.as_bytes())
    )
}

pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let step = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let k_date = step(format!("AWS4{secret}").as_bytes(), date);
    let k_region = step(k_date.as_ref(), region);
    let k_service = step(k_region.as_ref(), service);
    let k_signing = step(k_service.as_ref(), "aws4_request");
    hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref())
}

pub fn hex_sha256(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data).as_ref())
}

#[cfg(test)]
mod tests {
    //! Vectors from AWS's published SigV4 test suite (`get-vanilla`, `post-vanilla`,
    //! `get-vanilla-query-order-key-case`) and the S3 API reference's "GET Object" example.
    use super::*;
    use crate::Secret;
    use crate::http::Method;
    use std::time::{Duration, UNIX_EPOCH};

    fn suite_credentials() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: None,
            expires_at: None,
        }
    }

    // 2015-08-30T12:36:00Z
    fn suite_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn signed(method: Method, url: &str) -> HttpRequest {
        let mut request = HttpRequest::new(method, url::Url::parse(url).unwrap());
        sign(
            &mut request,
            &suite_credentials(),
            SigningScope {
                region: "us-east-1",
                service: "service",
                at: suite_time(),
            },
        );
        request
    }

    fn expected(signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={signature}"
        )
    }

    #[test]
    fn get_vanilla() {
        let unsigned = HttpRequest::new(
            Method::Get,
            url::Url::parse("https://example.amazonaws.com/").unwrap(),
        )
        .header("X-Amz-Date", "20150830T123600Z");
        let (canonical, signed_headers) = canonical_request(&unsigned, &hex_sha256(b""));
        assert_eq!(signed_headers, "host;x-amz-date");
        assert_eq!(
            string_to_sign(
                "20150830T123600Z",
                "20150830/us-east-1/service/aws4_request",
                &canonical
            ),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        let request = signed(Method::Get, "https://example.amazonaws.com/");
        assert_eq!(
            request.header_value("Authorization").unwrap(),
            expected("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        );
        assert_eq!(
            request.header_value("x-amz-date").unwrap(),
            "20150830T123600Z"
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let request = signed(
            Method::Get,
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        );
        assert_eq!(
            request.header_value("Authorization").unwrap(),
            expected("b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
        );
    }

    #[test]
    fn post_vanilla() {
        let request = signed(Method::Post, "https://example.amazonaws.com/");
        assert_eq!(
            request.header_value("Authorization").unwrap(),
            expected("5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
        );
    }

    #[test]
    fn s3_get_object_example() {
        let mut request = HttpRequest::new(
            Method::Get,
            url::Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap(),
        )
        .header("Range", "bytes=0-9")
        .header("x-amz-content-sha256", hex_sha256(b""));
        let credentials = AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            session_token: None,
            expires_at: None,
        };
        sign(
            &mut request,
            &credentials,
            SigningScope {
                region: "us-east-1",
                service: "s3",
                at: UNIX_EPOCH + Duration::from_secs(1_369_353_600), // 2013-05-24T00:00:00Z
            },
        );
        assert_eq!(
            request.header_value("Authorization").unwrap(),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let mut credentials = suite_credentials();
        credentials.session_token = Some(Secret::new("session-token-value"));
        let mut request = HttpRequest::new(
            Method::Post,
            url::Url::parse("http://127.0.0.1:5000/").unwrap(),
        );
        let ecr = SigningScope {
            region: "us-east-1",
            service: "ecr",
            at: suite_time(),
        };
        sign(&mut request, &credentials, ecr);
        assert_eq!(
            request.header_value("X-Amz-Security-Token").unwrap(),
            "session-token-value"
        );
        let auth = request.header_value("Authorization").unwrap();
        assert!(
            auth.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"),
            "{auth}"
        );
        let (canonical, _) = canonical_request(&request, &hex_sha256(b""));
        assert!(canonical.contains("host:127.0.0.1:5000\n"), "{canonical}");
        // Re-signing replaces the headers instead of piling them up.
        sign(&mut request, &credentials, ecr);
        let count = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .count();
        assert_eq!(count, 1);
    }
}
