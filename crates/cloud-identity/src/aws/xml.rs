//! Just enough XML for STS answers: the text of the first `<name>` element, optionally
//! inside the first `<parent>` element. Linear in the input; no DTDs, no entity expansion
//! beyond the five predefined entities and character references.

/// The body of the first `<name ...>...</name>` element in `xml`.
pub fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let mut search_from = 0;
    loop {
        let start = search_from + xml[search_from..].find(&format!("<{name}"))?;
        let after_name = start + 1 + name.len();
        let next = xml[after_name..].chars().next()?;
        if next == '>' || next == '/' || next.is_whitespace() {
            let open_end = after_name + xml[after_name..].find('>')?;
            if xml[..open_end].ends_with('/') {
                return Some("");
            }
            let content_start = open_end + 1;
            let close = xml[content_start..].find(&format!("</{name}>"))?;
            return Some(&xml[content_start..content_start + close]);
        }
        search_from = after_name;
    }
}

/// The decoded text of `<name>` inside `<parent>`.
pub fn text_in(xml: &str, parent: &str, name: &str) -> Option<String> {
    element(element(xml, parent)?, name).map(decode)
}

/// Decodes the predefined entities and character references; unknown ones stay as they are.
pub fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_text_and_decodes() {
        let xml = r#"<?xml version="1.0"?><R xmlns="x"><Result><Credentials>
            <AccessKeyId>ASIA1</AccessKeyId><SessionToken>a&amp;b&#x2F;c&#61;</SessionToken>
            </Credentials><Other/></Result></R>"#;
        assert_eq!(text_in(xml, "Credentials", "AccessKeyId").unwrap(), "ASIA1");
        assert_eq!(
            text_in(xml, "Credentials", "SessionToken").unwrap(),
            "a&b/c="
        );
        assert_eq!(element(xml, "Other"), Some(""));
        assert_eq!(text_in(xml, "Credentials", "Expiration"), None);
    }

    #[test]
    fn prefix_names_do_not_match() {
        let xml = "<CredentialsX>no</CredentialsX><Credentials><A>yes</A></Credentials>";
        assert_eq!(text_in(xml, "Credentials", "A").unwrap(), "yes");
    }

    #[test]
    fn malformed_input_gives_none() {
        assert_eq!(element("<Credentials><A>x", "A"), None);
        assert_eq!(element("<Credentials", "Credentials"), None);
        assert_eq!(decode("a & b &bogus; &#xZZ;"), "a & b &bogus; &#xZZ;");
    }
}
