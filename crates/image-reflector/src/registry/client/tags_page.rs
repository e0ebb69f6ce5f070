//! Streaming parse of a `tags/list` page (`{"tags": [..]}`) that stops as soon as the
//! scan's tag budget is exceeded.

/// Why a `tags/list` page was not taken.
#[derive(Debug)]
pub(super) enum PageError {
    /// More tags than the budget left for the scan.
    OverBudget,
    Json(serde_json::Error),
}

/// Reads `{"tags": [..]}` (other keys ignored, `null` or no `tags` meaning none) into
/// `tags`, failing as soon as more than `budget` tags were read.
pub(super) struct TagsPageSeed<'t> {
    pub(super) tags: &'t mut Vec<String>,
    pub(super) budget: usize,
}

impl TagsPageSeed<'_> {
    pub(super) fn parse(self, body: &[u8]) -> Result<(), PageError> {
        let over = std::cell::Cell::new(false);
        let mut json = serde_json::Deserializer::from_slice(body);
        let seed = PageVisitor {
            tags: self.tags,
            budget: self.budget,
            over: &over,
        };
        let parsed =
            serde::de::DeserializeSeed::deserialize(seed, &mut json).and_then(|()| json.end());
        match parsed {
            Ok(()) => Ok(()),
            Err(_) if over.get() => Err(PageError::OverBudget),
            Err(e) => Err(PageError::Json(e)),
        }
    }
}

pub(super) struct PageVisitor<'t, 'o> {
    pub(super) tags: &'t mut Vec<String>,
    pub(super) budget: usize,
    pub(super) over: &'o std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for PageVisitor<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PageVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object with a tags array")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut list = Some(TagListSeed {
            tags: self.tags,
            budget: self.budget,
            over: self.over,
        });
        while let Some(key) = map.next_key::<String>()? {
            match (key.as_str(), list.take()) {
                ("tags", Some(seed)) => map.next_value_seed(seed)?,
                (_, unused) => {
                    list = unused;
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

pub(super) struct TagListSeed<'t, 'o> {
    pub(super) tags: &'t mut Vec<String>,
    pub(super) budget: usize,
    pub(super) over: &'o std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for TagListSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TagListSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of tags or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut read = 0usize;
        while let Some(tag) = seq.next_element::<String>()? {
            if read >= self.budget {
                self.over.set(true);
                return Err(serde::de::Error::custom("more tags than the scan's budget"));
            }
            self.tags.push(tag);
            read += 1;
        }
        Ok(())
    }
}

/// Parses one `tags/list` answer as a scan does, reading at most `budget` tags; `None` when
/// the answer is not a tag list or holds more tags than that (public for the fuzz targets).
pub fn parse_tags_page(body: &[u8], budget: usize) -> Option<Vec<String>> {
    let mut tags = Vec::new();
    TagsPageSeed {
        tags: &mut tags,
        budget,
    }
    .parse(body)
    .ok()
    .map(|()| tags)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn parse(body: &str, budget: usize) -> Result<Vec<String>, PageError> {
        let mut tags = vec!["earlier".to_string()];
        TagsPageSeed {
            tags: &mut tags,
            budget,
        }
        .parse(body.as_bytes())?;
        Ok(tags)
    }

    #[test]
    fn page_shapes() {
        assert_eq!(parse(r#"{"tags":null}"#, 5).unwrap(), ["earlier"]);
        assert_eq!(parse(r#"{"name":"x"}"#, 5).unwrap(), ["earlier"]);
        assert_eq!(
            parse(r#"{"name":"x","tags":["a","b"],"extra":{"k":[1]}}"#, 5).unwrap(),
            ["earlier", "a", "b"]
        );
        assert!(matches!(
            parse(r#"{"tags":["a","b","c"]}"#, 2),
            Err(PageError::OverBudget)
        ));
        for bad in [r#"{"tags":[1]}"#, r#"["a"]"#, r#"{"tags":["a"]} x"#, "{"] {
            assert!(matches!(parse(bad, 5), Err(PageError::Json(_))), "{bad}");
        }
    }

    proptest! {
        /// Within the budget, the streaming parser reads what `serde_json` reads; over it,
        /// it stops with `OverBudget`.
        #[test]
        fn agrees_with_serde(
            name in "[a-z/]{0,10}",
            tags in proptest::collection::vec("[ -~]{0,12}", 0..40),
            budget in 0usize..50,
        ) {
            let body = serde_json::json!({"name": name, "tags": tags}).to_string();
            match parse(&body, budget) {
                Ok(parsed) => {
                    prop_assert!(tags.len() <= budget);
                    prop_assert_eq!(&parsed[1..], &tags[..]);
                }
                Err(PageError::OverBudget) => prop_assert!(tags.len() > budget),
                Err(PageError::Json(e)) => prop_assert!(false, "{}", e),
            }
        }
    }
}
