//! What a credential looks like when a remote echoes it back, for tests that check that no
//! secret reaches a status, an API document, an error, a log or the metrics.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Every form of `user`/`secret` that must not come back: the secret, `user:secret`, the
/// `Basic` header value, the percent-encoded secret (as it sits in a URL), and the base64 of
/// the secret and of the pair in both alphabets, padded or not.
pub fn credential_forms(user: &str, secret: &str) -> Vec<String> {
    let pair = format!("{user}:{secret}");
    let mut forms = vec![
        secret.to_string(),
        pair.clone(),
        format!("Basic {}", STANDARD.encode(&pair)),
        percent_encode(secret),
    ];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(&pair));
        forms.push(engine.encode(secret));
    }
    forms.sort();
    forms.dedup();
    forms
}

/// Percent-encodes all but RFC 3986 unreserved characters, as URL userinfo holds them.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Panics when `text`, read from `place`, holds any of `forms`.
#[track_caller]
pub fn assert_no_leak(forms: &[String], place: &str, text: &str) {
    for form in forms {
        assert!(
            !text.contains(form.as_str()),
            "{form:?} leaked into the {place}:\n{text}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_cover_the_raw_encoded_and_header_values() {
        let forms = credential_forms("u", "p/w");
        for expected in [
            "p/w",
            "u:p/w",
            "Basic dTpwL3c=",
            "dTpwL3c",
            "dTpwL3c=",
            "p%2Fw",
        ] {
            assert!(forms.contains(&expected.to_string()), "{expected} missing");
        }
    }

    #[test]
    #[should_panic(expected = "leaked into the log")]
    fn a_leak_is_found() {
        assert_no_leak(&credential_forms("u", "secret"), "log", "401: u:secret");
    }
}
