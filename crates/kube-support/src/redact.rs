//! Scrubbing the credentials we sent to a remote out of text the remote sent back.
//!
//! Some registries and git servers quote the request (its `Authorization` header included)
//! in their error bodies. Whatever a remote says is quoted into statuses, events, the API
//! and logs only through [`Secrets::scrub`], which replaces every form of every credential
//! sent to that remote with [`REDACTED`]: the raw secret, `user:password`, their base64 in
//! the standard and URL-safe alphabets with and without padding, and the full header values
//! (`Basic …`, `Bearer …`), and the percent-encoded secret (as it sits in a URL). The
//! password of any URL's userinfo (`scheme://user:password@host`) is scrubbed too, whether
//! or not it is held. A text cut at a length limit can end in the first part of a secret;
//! [`Secrets::scrub_cut`] scrubs that tail too. Pure: no I/O.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// What a scrubbed secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// A trailing piece of text this long that starts a secret is scrubbed (the text was cut
/// in the middle of it). Shorter tails say too little to matter and match too often.
const MIN_CUT_SECRET: usize = 4;

/// The credentials sent to one remote, in every form they may come back in.
///
/// `Debug` shows only how many forms are held, never one of them.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Longest first, so `Basic <base64>` goes before the bare `<base64>` it contains.
    needles: Vec<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("forms", &self.needles.len())
            .finish()
    }
}

impl Secrets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is held (scrubbing changes nothing).
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// HTTP Basic credentials: the password, `user:password`, its base64 forms and the
    /// `Basic` header value. The username alone is not a secret and stays.
    pub fn with_basic(mut self, username: &str, password: &str) -> Self {
        self.add_secret(password);
        if !password.is_empty() || !username.is_empty() {
            let pair = format!("{username}:{password}");
            self.add_secret(&pair);
            self.add_needle(format!("Basic {}", STANDARD.encode(pair.as_bytes())));
        }
        self.sort();
        self
    }

    /// A token (Bearer, API key): the token, its base64 forms and the `Bearer` header value.
    pub fn with_token(mut self, token: &str) -> Self {
        self.add_secret(token);
        if !token.is_empty() {
            self.add_needle(format!("Bearer {token}"));
        }
        self.sort();
        self
    }

    /// The credentials in a URL's userinfo (`scheme://user:password@host/...`, percent
    /// escapes decoded), as HTTP Basic credentials. A URL without them adds nothing.
    pub fn with_url(self, url: &str) -> Self {
        match url_userinfo(url) {
            Some((user, Some(password))) => {
                self.with_basic(&percent_decode(user), &percent_decode(password))
            }
            _ => self,
        }
    }

    /// Any other secret: itself and its base64 forms.
    pub fn with_secret(mut self, secret: &str) -> Self {
        self.add_secret(secret);
        self.sort();
        self
    }

    /// Adds everything `other` holds.
    pub fn merge(mut self, other: &Secrets) -> Self {
        for needle in &other.needles {
            self.add_needle(needle.clone());
        }
        self.sort();
        self
    }

    /// `text` with every held form of every secret replaced by [`REDACTED`]. Occurrences
    /// are found in `text` as given and replaced in one pass (overlapping ones merge), so a
    /// replacement never creates or hides another match.
    pub fn scrub(&self, text: &str) -> String {
        self.scrub_ranges(text, false)
    }

    /// [`Secrets::scrub`] for text that was cut at a length limit: a tail that starts a
    /// secret (at least 4 bytes of it) is replaced too.
    pub fn scrub_cut(&self, text: &str) -> String {
        self.scrub_ranges(text, true)
    }

    fn scrub_ranges(&self, text: &str, cut_at_end: bool) -> String {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for needle in &self.needles {
            ranges.extend(
                text.match_indices(needle.as_str())
                    .map(|(start, found)| (start, start + found.len())),
            );
        }
        let cut = if cut_at_end {
            self.cut_secret_tail(text)
        } else {
            0
        };
        if cut > 0 {
            ranges.push((text.len() - cut, text.len()));
        }
        ranges.extend(url_password_ranges(text));
        if ranges.is_empty() {
            return text.to_string();
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut kept_from = 0;
        let mut iter = ranges.into_iter();
        let mut current = iter.next();
        while let Some((start, mut end)) = current {
            current = None;
            for (next_start, next_end) in iter.by_ref() {
                if next_start <= end {
                    end = end.max(next_end);
                } else {
                    current = Some((next_start, next_end));
                    break;
                }
            }
            out.push_str(&text[kept_from..start]);
            out.push_str(REDACTED);
            kept_from = end;
        }
        out.push_str(&text[kept_from..]);
        out
    }

    /// Whether `text` holds any form of a secret (for tests and assertions).
    pub fn leaks_in(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }

    /// The length of the longest tail of `text` that is a proper start of a secret.
    fn cut_secret_tail(&self, text: &str) -> usize {
        let mut longest = 0;
        for needle in &self.needles {
            let max = needle.len().saturating_sub(1).min(text.len());
            for len in (MIN_CUT_SECRET..=max).rev() {
                if len <= longest {
                    break;
                }
                let start = text.len() - len;
                if text.is_char_boundary(start)
                    && needle.is_char_boundary(len)
                    && text[start..] == needle[..len]
                {
                    longest = len;
                    break;
                }
            }
        }
        longest
    }

    fn add_secret(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        self.add_needle(secret.to_string());
        // As it appears inside a JSON string (quotes, backslashes, control characters).
        if let Ok(json) = serde_json::to_string(secret) {
            self.add_needle(json[1..json.len() - 1].to_string());
        }
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            self.add_needle(engine.encode(secret.as_bytes()));
        }
        // As it appears in a URL: every byte but the unreserved ones escaped (upper and
        // lower hex), and the lighter userinfo escaping of WHATWG URL serialisers.
        let strict = |b: u8| !(b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        let userinfo = |b: u8| !b.is_ascii_graphic() || b" \"#/:;<=>?@[\\]^`{|}".contains(&b);
        for (escape, upper) in [
            (&strict as &dyn Fn(u8) -> bool, true),
            (&strict, false),
            (&userinfo, true),
        ] {
            let encoded = percent_encode(secret, escape, upper);
            if encoded != secret {
                self.add_needle(encoded);
            }
        }
    }

    fn add_needle(&mut self, needle: String) {
        if !needle.is_empty() && !self.needles.contains(&needle) {
            self.needles.push(needle);
        }
    }

    fn sort(&mut self) {
        self.needles
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }
}

/// `%XX` escapes of `text` for every byte `escape` says, with upper- or lower-case hex.
fn percent_encode(text: &str, escape: &dyn Fn(u8) -> bool, upper: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if escape(b) {
            if upper {
                out.push_str(&format!("%{b:02X}"));
            } else {
                out.push_str(&format!("%{b:02x}"));
            }
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// `%XX` escapes decoded (invalid escapes stay as they are; invalid UTF-8 is replaced):
/// how a URL's userinfo reads (also the automation's Git credentials from a URL).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'%'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a URL's authority ends (its path, query, fragment, or the text around it).
fn authority_end(c: char) -> bool {
    c.is_whitespace() || "/?#'\"<>`".contains(c)
}

/// `(user, password)` of the first URL in `url` (escapes kept).
fn url_userinfo(url: &str) -> Option<(&str, Option<&str>)> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(authority_end).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    Some(match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    })
}

/// The byte ranges of the passwords in every `scheme://user:password@host` of `text`.
fn url_password_ranges(text: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        let end = text[start..]
            .find(authority_end)
            .map_or(text.len(), |e| start + e);
        let authority = &text[start..end];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
            && colon + 1 < at
        {
            ranges.push((start + colon + 1, start + at));
        }
        from = end.max(start);
    }
    ranges
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn every_form(user: &str, password: &str) -> Vec<String> {
        let pair = format!("{user}:{password}");
        let mut forms = vec![password.to_string(), pair.clone()];
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            forms.push(engine.encode(&pair));
            forms.push(engine.encode(password));
        }
        forms.push(format!("Basic {}", STANDARD.encode(&pair)));
        forms
    }

    #[test]
    fn basic_credentials_in_every_form() {
        // Characters that make the alphabets differ: '+' and '/' vs '-' and '_'.
        let (user, password) = ("testbed", "p>?~s3cr3t??>>");
        let secrets = Secrets::new().with_basic(user, password);
        for form in every_form(user, password) {
            let text = format!("401: bad header Authorization: {form} for /v2/");
            let scrubbed = secrets.scrub(&text);
            assert!(!scrubbed.contains(&form), "{form} left in {scrubbed}");
            assert!(scrubbed.contains(REDACTED), "{scrubbed}");
            assert!(scrubbed.starts_with("401: bad header"), "{scrubbed}");
        }
        // The username alone is kept: messages may name it.
        assert_eq!(secrets.scrub("user testbed"), "user testbed");
        assert!(!format!("{secrets:?}").contains(password));
    }

    #[test]
    fn tokens_and_json_escapes() {
        let secrets = Secrets::new().with_token("tok\"en/12345");
        let scrubbed = secrets.scrub(r#"{"message":"Authorization: Bearer tok\"en/12345"}"#);
        assert_eq!(
            scrubbed,
            r#"{"message":"Authorization: Bearer [redacted]"}"#
        );
        assert_eq!(secrets.scrub("Bearer tok\"en/12345"), REDACTED);
    }

    #[test]
    fn a_secret_cut_at_the_end_is_scrubbed() {
        let secrets = Secrets::new().with_basic("u", "averylongpassword");
        let base64 = STANDARD.encode("u:averylongpassword");
        let cut = format!("Authorization: Basic {}", &base64[..10]);
        assert_eq!(
            secrets.scrub_cut(&cut),
            format!("Authorization: {REDACTED}")
        );
        assert_eq!(secrets.scrub(&cut), cut, "only text known to be cut");
        // Short tails that merely look like a start stay.
        assert_eq!(secrets.scrub_cut("ave"), "ave");
    }

    #[test]
    fn url_credentials_and_percent_encoded_forms() {
        let secrets = Secrets::new().with_url("https://bot:p%40ss%2Fw!rd@git.example/r.git");
        for form in [
            "p@ss/w!rd",
            "p%40ss%2Fw!rd",
            "p%40ss%2Fw%21rd",
            "p%40ss%2fw%21rd",
        ] {
            assert_eq!(secrets.scrub(&format!("said {form}.")), "said [redacted].");
        }
        let header = format!("Basic {}", STANDARD.encode("bot:p@ss/w!rd"));
        assert_eq!(secrets.scrub(&header), REDACTED);
        assert!(
            Secrets::new()
                .with_url("https://git.example/r.git")
                .is_empty()
        );
        assert!(
            Secrets::new()
                .with_url("https://bot@git.example/r.git")
                .is_empty()
        );
    }

    #[test]
    fn any_url_password_is_scrubbed() {
        let none = Secrets::new();
        assert_eq!(
            none.scrub("fatal: 'https://u:pw@h:8/r' and http://p:x%2Fy@proxy:3128 'ftp://a:b@c'"),
            "fatal: 'https://u:[redacted]@h:8/r' and http://p:[redacted]@proxy:3128 'ftp://a:[redacted]@c'"
        );
        for kept in [
            "https://u@h/r",
            "see https://h/a:b@c",
            "x://",
            "://:@",
            "a://b:@c",
        ] {
            assert_eq!(none.scrub(kept), kept);
        }
    }

    #[test]
    fn nothing_to_scrub_changes_nothing() {
        assert_eq!(Secrets::new().scrub("plain text"), "plain text");
        assert!(Secrets::new().with_basic("", "").is_empty());
    }

    proptest! {
        #[test]
        fn no_form_survives(
            user in "[ -~]{0,12}",
            password in "[ -~]{1,40}",
            before in "[ -~]{0,40}",
            after in "[ -~]{0,40}",
            form in 0usize..11,
        ) {
            let secrets = Secrets::new().with_basic(&user, &password);
            let forms = every_form(&user, &password);
            let needle = &forms[form % forms.len()];
            let scrubbed = secrets.scrub(&format!("{before}{needle}{after}"));
            // What is left between the replacements holds no form of the secret.
            for piece in scrubbed.split(REDACTED) {
                prop_assert!(!secrets.leaks_in(piece), "{:?} left in {:?}", piece, scrubbed);
            }
            prop_assert!(scrubbed.contains(REDACTED));
        }

        #[test]
        fn text_without_secrets_is_unchanged(text in "[A-M ]{0,80}", password in "[n-z]{4,12}") {
            let secrets = Secrets::new().with_basic("u", &password);
            prop_assert_eq!(secrets.scrub(&text), text);
        }
    }
}
