//! Marker comments: `# {"$imagepolicy": "NS:NAME[:tag|:name|:digest]"}`.
//!
//! Flux (kyaml `fieldmeta.FieldMeta.Read`) strips leading `#` characters from the comment and
//! requires the rest to be exactly one JSON object of strings; the setter name is the value of
//! the `$imagepolicy` key. We follow that grammar to the letter so a marker that works in Flux
//! works here and vice versa.

use std::collections::BTreeMap;

/// The bytes every marker contains, quotes included. Flux screens files with this token before
/// parsing them; so do we.
pub const TOKEN: &str = "\"$imagepolicy\"";

/// The key naming the setter inside a marker object.
const KEY: &str = "$imagepolicy";

/// What a comment says about setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a marker (plain prose, or a JSON object without `$imagepolicy`).
    NotAMarker,
    /// A marker naming this setter, e.g. `flux-system:podinfo:tag`.
    Setter(String),
    /// The comment mentions the token but Flux would not read it as a marker.
    Invalid(String),
}

/// Reads one comment. `text` is the comment's payload after its first `#` (several comment lines
/// are joined with `"\n#"`, which is what yaml.v3 hands to Flux for a multi-line head comment).
pub fn parse(text: &str) -> Parsed {
    let body = text.trim_start_matches('#').trim_end_matches('\r');
    match serde_json::from_str::<BTreeMap<String, String>>(body) {
        Ok(map) => match map.get(KEY) {
            Some(setter) => Parsed::Setter(setter.clone()),
            None => Parsed::NotAMarker,
        },
        Err(err) if text.contains(TOKEN) => Parsed::Invalid(format!(
            "comment is not exactly one JSON object of strings ({err})"
        )),
        Err(_) => Parsed::NotAMarker,
    }
}

/// Which part of the policy's latest image a setter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `NS:NAME`: `name:tag`, or `name:tag@digest` when the policy has a digest.
    Image,
    /// `NS:NAME:tag`.
    Tag,
    /// `NS:NAME:name`: the repository without tag.
    Name,
    /// `NS:NAME:digest` (may be empty).
    Digest,
}

/// A setter name split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetterName<'a> {
    pub namespace: &'a str,
    pub policy: &'a str,
    /// `None` when the suffix is not one Flux defines (kept for the report).
    pub field: Option<Field>,
    pub suffix: Option<&'a str>,
}

/// Splits `NS:NAME[:FIELD]`; `None` when there is no `:` at all. Whitespace is significant, as
/// in Flux, where the name is looked up verbatim.
pub fn split(setter: &str) -> Option<SetterName<'_>> {
    let mut parts = setter.splitn(3, ':');
    let namespace = parts.next()?;
    let policy = parts.next()?;
    let suffix = parts.next();
    let field = match suffix {
        None => Some(Field::Image),
        Some("tag") => Some(Field::Tag),
        Some("name") => Some(Field::Name),
        Some("digest") => Some(Field::Digest),
        Some(_) => None,
    };
    Some(SetterName {
        namespace,
        policy,
        field,
        suffix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flux_marker_forms() {
        assert_eq!(
            parse(r#" {"$imagepolicy": "ns:p"}"#),
            Parsed::Setter("ns:p".into())
        );
        assert_eq!(
            parse(r#"## {"$imagepolicy":"ns:p:tag", "other": "x"}"#),
            Parsed::Setter("ns:p:tag".into())
        );
        assert_eq!(
            parse(" {\"$imagepolicy\": \"ns:p\"}\r"),
            Parsed::Setter("ns:p".into())
        );
    }

    #[test]
    fn rejects_what_flux_rejects() {
        // Trailing text after the object.
        assert!(matches!(
            parse(r#" {"$imagepolicy": "ns:p"} # note"#),
            Parsed::Invalid(_)
        ));
        // Non-string values.
        assert!(matches!(
            parse(r#" {"$imagepolicy": "ns:p", "n": 1}"#),
            Parsed::Invalid(_)
        ));
        // A multi-line head comment.
        assert!(matches!(
            parse(" {\"$imagepolicy\": \"ns:p\"}\n# more"),
            Parsed::Invalid(_)
        ));
        assert_eq!(parse(" just a comment"), Parsed::NotAMarker);
        assert_eq!(parse(r#" {"other": "x"}"#), Parsed::NotAMarker);
    }

    #[test]
    fn splits_setter_names() {
        let s = split("ns:p:tag").unwrap();
        assert_eq!(
            (s.namespace, s.policy, s.field),
            ("ns", "p", Some(Field::Tag))
        );
        assert_eq!(split("ns:p").unwrap().field, Some(Field::Image));
        assert_eq!(split("ns:p:repository").unwrap().field, None);
        assert_eq!(split("ns"), None);
    }
}
