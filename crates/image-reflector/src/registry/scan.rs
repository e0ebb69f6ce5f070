//! A scan's decisions on the listed tags: drop invalid and excluded ones, sort, checksum
//! ([`ScanResult::new`]). Pure; the controller lists the tags.

use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

/// How many tags `status.lastScanResult.latestTags` holds.
pub const LATEST_TAGS: usize = 10;

/// An `exclusionList` entry that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to compile regex spec.exclusionList[{index}] '{pattern}': {reason}")]
pub struct ExclusionError {
    pub index: usize,
    pub pattern: String,
    pub reason: String,
}

/// Compiled `spec.exclusionList`: a tag matching any entry (unanchored, as Go's
/// `MatchString`) is dropped.
///
/// The `regex` crate implements RE2's syntax and linear-time semantics, as Go's `regexp`
/// does; the differences (Unicode-aware `\d`, `\w`, `\b` here, ASCII in Go) cannot show on
/// tags, which are ASCII.
#[derive(Debug, Clone, Default)]
pub struct ExclusionList {
    regexes: Vec<regex::Regex>,
}

impl ExclusionList {
    /// Compiles `patterns` as given; pass `ImageRepositorySpec::effective_exclusion_list()`
    /// so an empty list gets Flux's default (`^.*\.sig$`).
    pub fn compile<S: AsRef<str>>(patterns: &[S]) -> Result<Self, ExclusionError> {
        let regexes = patterns
            .iter()
            .enumerate()
            .map(|(index, pattern)| {
                regex::Regex::new(pattern.as_ref()).map_err(|e| ExclusionError {
                    index,
                    pattern: pattern.as_ref().to_string(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { regexes })
    }

    pub fn excludes(&self, tag: &str) -> bool {
        self.regexes.iter().any(|r| r.is_match(tag))
    }
}

/// Whether `tag` is made of the tag grammar's characters (`A-Z a-z 0-9 _ . -`, 1 to 128 of
/// them). A registry may list anything; a tag with other characters (spaces, `/`, control
/// characters) cannot be pulled, looked up or written into a manifest, so scans skip it. A
/// leading `.` or `-`, outside the OCI grammar, is kept as Flux keeps it (negative numbers
/// for numerical policies); the automation skips a policy that selects one.
pub fn is_valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Tags a scan skipped because they are not valid tags ([`is_valid_tag`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkippedTags {
    pub count: usize,
    /// The first one, shortened, for the message.
    pub example: Option<String>,
}

impl SkippedTags {
    /// How many characters of an invalid tag a message quotes.
    const EXAMPLE_CHARS: usize = 64;

    fn record(&mut self, tag: &str) {
        self.count += 1;
        if self.example.is_none() {
            self.example = Some(
                tag.chars()
                    .take(Self::EXAMPLE_CHARS)
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect(),
            );
        }
    }
}

impl std::fmt::Display for SkippedTags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped {} invalid tag(s)", self.count)?;
        if let Some(example) = &self.example {
            write!(f, " such as {example:?}")?;
        }
        Ok(())
    }
}

/// A successful scan: what the store keeps and `status.lastScanResult` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanResult {
    /// `status.canonicalImageName`, e.g. `index.docker.io/library/alpine`.
    pub canonical_image: String,
    /// Valid tags after exclusion, sorted descending bytewise; duplicates kept (as Flux).
    pub tags: Vec<String>,
    /// Listed tags that are not valid tags: not stored, reported.
    pub skipped: SkippedTags,
    /// [`revision`] of `tags`.
    pub revision: String,
    pub scan_time: SystemTime,
}

impl ScanResult {
    /// Drops invalid and excluded tags, sorts the rest and computes the revision.
    pub fn new(
        canonical_image: impl Into<String>,
        mut tags: Vec<String>,
        exclusions: &ExclusionList,
        scan_time: SystemTime,
    ) -> Self {
        let mut skipped = SkippedTags::default();
        tags.retain(|t| {
            if is_valid_tag(t) {
                !exclusions.excludes(t)
            } else {
                skipped.record(t);
                false
            }
        });
        sort_descending(&mut tags);
        let revision = revision(&tags);
        Self {
            canonical_image: canonical_image.into(),
            tags,
            skipped,
            revision,
            scan_time,
        }
    }

    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// `status.lastScanResult.latestTags`: the first [`LATEST_TAGS`].
    pub fn latest_tags(&self) -> &[String] {
        &self.tags[..self.tags.len().min(LATEST_TAGS)]
    }
}

/// Flux's cache order: descending bytewise (not semver-aware).
pub fn sort_descending(tags: &mut [String]) {
    tags.sort_unstable_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
}

/// The revision of a sorted tag list: `sha256:<hex>` of the tags, each followed by `\n`,
/// the format of Flux's filesystem storage (`FluxStorage` gate), so revisions match a
/// Flux controller with that gate for the same list.
pub fn revision<S: AsRef<str>>(sorted_tags: &[S]) -> String {
    let mut hash = Sha256::new();
    for tag in sorted_tags {
        hash.update(tag.as_ref().as_bytes());
        hash.update(b"\n");
    }
    format!("sha256:{}", hex::encode(hash.finalize()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    fn result(tags: &[&str], exclusions: &[&str]) -> Vec<String> {
        let list = ExclusionList::compile(exclusions).unwrap();
        ScanResult::new("x", strings(tags), &list, SystemTime::UNIX_EPOCH).tags
    }

    #[test]
    fn fluxs_sorting_cases() {
        // 7.5 #66, #72, #74, #75.
        assert_eq!(result(&["b", "a", "d", "c"], &[]), ["d", "c", "b", "a"]);
        assert_eq!(
            result(&["1.0.0", "0.0.8", "1.2.5", "3.0.1", "1.0.1"], &[]),
            ["3.0.1", "1.2.5", "1.0.1", "1.0.0", "0.0.8"]
        );
        assert_eq!(
            result(&["-62", "-88", "73", "72", "15"], &[]),
            ["73", "72", "15", "-88", "-62"]
        );
        let twelve = [
            "-62", "-88", "73", "72", "15", "16", "15", "29", "-33", "-91", "100", "101",
        ];
        let scan = ScanResult::new(
            "x",
            strings(&twelve),
            &ExclusionList::default(),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(scan.tag_count(), 12, "duplicates kept");
        assert_eq!(
            scan.latest_tags(),
            [
                "73", "72", "29", "16", "15", "15", "101", "100", "-91", "-88"
            ]
        );
        // #68: 11 tags, latestTags is the first 10.
        let eleven: Vec<String> = ('a'..='k').map(String::from).collect();
        let scan = ScanResult::new(
            "x",
            eleven,
            &ExclusionList::default(),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(scan.latest_tags().len(), 10);
        assert_eq!(scan.latest_tags()[0], "k");
        assert!(
            ScanResult::new(
                "x",
                vec![],
                &ExclusionList::default(),
                SystemTime::UNIX_EPOCH
            )
            .latest_tags()
            .is_empty()
        );
    }

    #[test]
    fn fluxs_exclusion_cases() {
        // 7.5 #69, #77-#82.
        assert_eq!(result(&["a", "b", "c", "d"], &["c"]), ["d", "b", "a"]);
        assert_eq!(result(&["a", "b", "c", "d"], &["c", "a"]), ["d", "b"]);
        assert_eq!(result(&["a", "b", "c", "d"], &["[abc]"]), ["d"]);
        assert_eq!(result(&["a", "b", "c", "d"], &["[a]", "[d]"]), ["c", "b"]);
        assert_eq!(
            result(
                &[
                    "0.1.0",
                    "0.2.0",
                    "0.2.-alpha",
                    "0.3.0",
                    "0.4.0",
                    "0.4.0.sig"
                ],
                &[r"^.*\-alpha$", r"^.*\.sig$"]
            ),
            ["0.4.0", "0.3.0", "0.2.0", "0.1.0"]
        );
        assert_eq!(
            result(&["aaa", "bbb", "ccc", "ddd"], &["aaa|ccc"]),
            ["ddd", "bbb"]
        );
        let six = [
            "0.1.0",
            "0.1.1",
            "0.1.1.sig",
            "0.2.0-alpha",
            "1.0.0",
            "1.0.0.sig",
        ];
        assert_eq!(result(&six, &[api_types_default()]).len(), 4);
        assert_eq!(result(&six, &[r"^.*\-alpha$"]).len(), 5);
    }

    fn api_types_default() -> &'static str {
        api_types::image_repository::DEFAULT_EXCLUSION_LIST
    }

    #[test]
    fn invalid_tags_are_skipped_and_counted() {
        let listed = strings(&[
            "1.0.0",
            "bad tag",
            "-starts-with-dash",
            ".hidden",
            "",
            &"x".repeat(129),
            "ok_2",
            "a/b",
            "zzz\u{7}",
        ]);
        let scan = ScanResult::new(
            "x",
            listed,
            &ExclusionList::default(),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(scan.tags, ["ok_2", "1.0.0", ".hidden", "-starts-with-dash"]);
        assert_eq!(scan.skipped.count, 5);
        assert_eq!(scan.skipped.example.as_deref(), Some("bad tag"));
        assert_eq!(
            scan.skipped.to_string(),
            "skipped 5 invalid tag(s) such as \"bad tag\""
        );
        assert!(is_valid_tag(&"x".repeat(128)));
        assert!(is_valid_tag("_x.Y-1"));
    }

    #[test]
    fn invalid_exclusion_names_the_field() {
        // 7.5 #70.
        let e = ExclusionList::compile(&["ok", "[="]).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(
            e.to_string()
                .starts_with("failed to compile regex spec.exclusionList[1] '[='"),
            "{e}"
        );
        // RE2 rejects look-around and backreferences; so does `regex`.
        assert!(ExclusionList::compile(&["(?!x)"]).is_err());
        assert!(ExclusionList::compile(&[r"(a)\1"]).is_err());
    }

    #[test]
    fn revision_matches_flux_filesystem_storage() {
        // The reference's derived values for d,c,b,a and the empty list.
        assert_eq!(
            revision(&["d", "c", "b", "a"]),
            "sha256:5c6861a52da9e6bfd5f0b37a8c51af173d7550443bb36253b18b2caf57987f53"
        );
        assert_eq!(
            revision::<&str>(&[]),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
