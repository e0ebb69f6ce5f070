//! `Link` headers (RFC 8288) for tag-list pagination, and the same-origin guard.
//!
//! Registries answer `Link: </v2/<repo>/tags/list?n=100&last=x>; rel="next"`; the URL is
//! opaque (Quay and ECR have used cursors other than `last`), relative or absolute, so we
//! follow it as given, resolved against the request URL.

use reqwest::Url;

/// The target of the first `rel="next"` link in a `Link` header value, unresolved.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let inner = rest.strip_prefix('<')?;
        let close = inner.find('>')?;
        let target = &inner[..close];
        rest = &inner[close + 1..];
        // Parameters up to the next link: `; rel="next"; title=...`.
        let end = params_end(rest);
        let params = &rest[..end];
        rest = &rest[end..];
        if params.split(';').any(is_rel_next) {
            return Some(target.to_string());
        }
        if rest.is_empty() {
            return None;
        }
    }
}

/// Where the parameters of the current link end: the first comma outside quotes.
fn params_end(s: &str) -> usize {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => return i,
            _ => {}
        }
    }
    s.len()
}

fn is_rel_next(param: &str) -> bool {
    let Some((key, value)) = param.split_once('=') else {
        return false;
    };
    key.trim().eq_ignore_ascii_case("rel")
        && value
            .trim()
            .trim_matches('"')
            .split_ascii_whitespace()
            .any(|rel| rel.eq_ignore_ascii_case("next"))
}

/// Why a next link is not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// Not a URL even relative to the request.
    Invalid,
    /// Another scheme, host or port than the request: the origin it points to.
    ForeignOrigin(String),
}

/// Resolves `link` against the URL of the page that carried it and checks it stays on the
/// same scheme, host and port (a registry must not steer us, with our credentials, to
/// another server).
pub fn resolve_next(base: &Url, link: &str) -> Result<Url, LinkError> {
    let next = base.join(link).map_err(|_| LinkError::Invalid)?;
    if next.scheme() != base.scheme()
        || next.host_str() != base.host_str()
        || next.port_or_known_default() != base.port_or_known_default()
    {
        return Err(LinkError::ForeignOrigin(
            next.origin().ascii_serialization(),
        ));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_next_links() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=100&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=100&last=b")
        );
        assert_eq!(
            next_link("<https://r.example/v2/a/tags/list?next_page=opaque%3D%3D>;rel=next")
                .as_deref(),
            Some("https://r.example/v2/a/tags/list?next_page=opaque%3D%3D")
        );
        // Several links, `next` not first, params with commas inside quotes.
        assert_eq!(
            next_link(r#"</first>; rel="first"; title="a, b", </2>; rel="prev next""#).as_deref(),
            Some("/2")
        );
        assert_eq!(next_link(r#"</prev>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("garbage"), None);
        assert_eq!(next_link("<unterminated; rel=next"), None);
    }

    #[test]
    fn resolves_relative_and_absolute_links_on_the_same_origin() {
        let base = Url::parse("https://r.example:5000/v2/a/tags/list?n=10").unwrap();
        assert_eq!(
            resolve_next(&base, "/v2/a/tags/list?n=10&last=x")
                .unwrap()
                .as_str(),
            "https://r.example:5000/v2/a/tags/list?n=10&last=x"
        );
        assert_eq!(
            resolve_next(&base, "list?cursor=abc").unwrap().as_str(),
            "https://r.example:5000/v2/a/tags/list?cursor=abc"
        );
        assert_eq!(
            resolve_next(&base, "https://r.example:5000/v2/a/tags/list?c=1")
                .unwrap()
                .as_str(),
            "https://r.example:5000/v2/a/tags/list?c=1"
        );
        // Default ports compare equal to explicit ones.
        let base443 = Url::parse("https://r.example/v2/a/tags/list").unwrap();
        assert!(resolve_next(&base443, "https://r.example:443/v2/x").is_ok());
    }

    #[test]
    fn rejects_other_origins() {
        let base = Url::parse("https://r.example:5000/v2/a/tags/list").unwrap();
        for (link, origin) in [
            (
                "https://evil.example/v2/a/tags/list",
                "https://evil.example",
            ),
            (
                "http://r.example:5000/v2/a/tags/list",
                "http://r.example:5000",
            ),
            // Nexus once dropped the port (flux #343): a different origin, reported clearly.
            ("https://r.example/v2/a/tags/list", "https://r.example"),
            ("//evil.example/x", "https://evil.example"),
        ] {
            assert_eq!(
                resolve_next(&base, link),
                Err(LinkError::ForeignOrigin(origin.into())),
                "{link}"
            );
        }
    }
}
