//! `WWW-Authenticate` challenges (RFC 7235) as registries send them:
//! `Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"`
//! or `Basic realm="Registry"`. Several challenges may share one header.

use std::collections::BTreeMap;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    /// The Docker token flow: fetch a token from `realm` for `service` and a scope.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// A scheme we do not speak (e.g. Negotiate), by name.
    Other(String),
}

/// Parses every challenge in a `WWW-Authenticate` value, in order. Malformed parameters are
/// skipped rather than failing the whole header; a Bearer challenge without a realm is
/// reported as [`Challenge::Other`].
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let (scheme, after) = take_token(rest);
        if scheme.is_empty() {
            // Skip a stray character (e.g. a leading comma) and go on.
            rest = rest.get(1..).unwrap_or("").trim_start();
            continue;
        }
        let (params, after) = parse_params(after);
        out.push(to_challenge(scheme, params));
        rest = after.trim_start_matches([',', ' ', '\t']);
    }
    out
}

/// The challenge to answer: Bearer first (it works with and without credentials), then
/// Basic.
pub fn preferred<'a>(challenges: impl IntoIterator<Item = &'a Challenge>) -> Option<Challenge> {
    let mut basic = None;
    for c in challenges {
        match c {
            Challenge::Bearer { .. } => return Some(c.clone()),
            Challenge::Basic => basic = Some(Challenge::Basic),
            Challenge::Other(_) => {}
        }
    }
    basic
}

fn to_challenge(scheme: &str, mut params: BTreeMap<String, String>) -> Challenge {
    if scheme.eq_ignore_ascii_case("basic") {
        Challenge::Basic
    } else if scheme.eq_ignore_ascii_case("bearer") {
        match params.remove("realm") {
            Some(realm) if !realm.is_empty() => Challenge::Bearer {
                realm,
                service: params.remove("service"),
                scope: params.remove("scope"),
            },
            _ => Challenge::Other(scheme.to_string()),
        }
    } else {
        Challenge::Other(scheme.to_string())
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn take_token(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !is_token_char(c)).unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// `k=v, k="v", ...` up to the next scheme (a token not followed by `=`) or the end.
fn parse_params(mut s: &str) -> (BTreeMap<String, String>, &str) {
    let mut params = BTreeMap::new();
    loop {
        let trimmed = s.trim_start_matches([',', ' ', '\t']);
        let (key, after_key) = take_token(trimmed);
        let after_key_ws = after_key.trim_start();
        if key.is_empty() || !after_key_ws.starts_with('=') {
            // Not a parameter: the start of the next challenge (or the end).
            return (params, trimmed);
        }
        let value_start = after_key_ws[1..].trim_start();
        let (value, after_value) = if let Some(quoted) = value_start.strip_prefix('"') {
            take_quoted(quoted)
        } else {
            let (v, a) = take_token(value_start);
            (v.to_string(), a)
        };
        params.insert(key.to_ascii_lowercase(), value);
        s = after_value;
    }
}

/// The rest of a quoted string (after the opening quote), unescaping `\x`.
fn take_quoted(s: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '"' => return (value, &s[i + 1..]),
            _ => value.push(c),
        }
    }
    // Unterminated: take everything.
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
        }
    }

    #[test]
    fn docker_hub_bearer() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            parse_challenges(h),
            [bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/alpine:pull")
            )]
        );
    }

    #[test]
    fn scopes_with_commas_and_escapes_stay_whole() {
        let h = r#"bearer realm="http://127.0.0.1:1/token", service="svc", scope="repository:a/b:pull,push", error="insufficient_scope", note="a \"q\"""#;
        assert_eq!(
            parse_challenges(h),
            [bearer(
                "http://127.0.0.1:1/token",
                Some("svc"),
                Some("repository:a/b:pull,push")
            )]
        );
    }

    #[test]
    fn basic_and_multiple_challenges() {
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry""#),
            [Challenge::Basic]
        );
        assert_eq!(parse_challenges("Basic"), [Challenge::Basic]);
        let both = parse_challenges(r#"Basic realm="r", Bearer realm="https://t/token",service=s"#);
        assert_eq!(
            both,
            [Challenge::Basic, bearer("https://t/token", Some("s"), None)]
        );
        assert_eq!(
            preferred(&both),
            Some(bearer("https://t/token", Some("s"), None))
        );
        assert_eq!(preferred(&[Challenge::Basic]), Some(Challenge::Basic));
        assert_eq!(
            parse_challenges(r#"Negotiate, Basic realm="x""#),
            [Challenge::Other("Negotiate".into()), Challenge::Basic]
        );
    }

    #[test]
    fn bearer_without_realm_is_unusable() {
        assert_eq!(
            parse_challenges(r#"Bearer service="x""#),
            [Challenge::Other("Bearer".into())]
        );
        assert_eq!(preferred(&parse_challenges(r#"Bearer service="x""#)), None);
        assert!(parse_challenges("").is_empty());
        // Unterminated quotes do not panic.
        assert_eq!(
            parse_challenges(r#"Bearer realm="https://x"#),
            [bearer("https://x", None, None)]
        );
    }
}
