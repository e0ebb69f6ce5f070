//! Image policies: which tag of a repository is "latest".
//!
//! Pure logic, no I/O. [`Policy::from_spec`] validates an `ImagePolicySpec` once (every error
//! names the field); [`Policy::select`] then runs Flux's pipeline over a tag list in one pass:
//!
//! 1. `filterTags`, when set (even with an empty pattern): keep the tags the pattern matches
//!    (unanchored); the compared value is the `extract` expansion, or the tag itself.
//! 2. The policer compares values: `semver` (tags that do not parse as versions, or fall
//!    outside the range, are skipped), `alphabetical` (bytes), or `numerical` (Go `ParseFloat`;
//!    one unparsable value fails the whole selection, as in Flux).
//! 3. The answer is the **original tag**, plus the value it was compared by.
//!
//! Precedence when several policies are set: semver > alphabetical > numerical.
//!
//! # Determinism: the total order
//!
//! Flux's choice among equal candidates depends on Go map order when a filter is set and
//! flaps between reconciles (flux2#5691, image-reflector-controller#77). Here the winner is the
//! greatest candidate under a total order that does not depend on the input order:
//!
//! - **semver**: higher version precedence wins (build metadata ignored); among equal
//!   precedence (`1.0.0` vs `v1.0.0` vs `1.0.0+b`), the **bytewise-greatest value** wins;
//!   then the **bytewise-smallest original tag**.
//! - **alphabetical**: the greatest value (`asc`) or least value (`desc`) in byte order; among
//!   equal values (several tags extracting the same value), the **bytewise-smallest original
//!   tag**.
//! - **numerical**: the highest (`asc`) or lowest (`desc`) number; NaN never beats a number
//!   (Flux lets it win depending on position); among equal numbers (`1`, `1.0`, `01`), the
//!   **bytewise-smallest value**, then the **bytewise-smallest original tag**.
//!
//! These rules reproduce what Flux picks deterministically without a filter (its tag cache is
//! sorted descending: the first of equal versions wins, the last of equal numbers wins) and
//! with duplicate extracted values (the bytewise-smallest original is kept), and extend them
//! to the cases where Flux is random. When numerical values fail to parse, the error names the
//! bytewise-greatest of them (the one Flux reports first without a filter).

pub mod alphabetical;
pub mod digest;
pub mod filter;
pub mod numerical;
/// Shared with image-automation's `ref.semver` checkout, so it lives in its own crate.
pub use semver_range as semver;

use std::cmp::Ordering;
use std::fmt;

use api_types::{ImagePolicyChoice, ImagePolicySpec, SortOrder};

pub use filter::{MatchError, PatternError, TagFilter};
pub use semver::{Constraint, ConstraintError, Version, VersionError};

/// An invalid policy specification. The message starts with the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `spec.policy` has none of its members.
    #[error(
        "spec.policy: invalid policy: given ImagePolicyChoice object is invalid \
         (set one of semver, alphabetical, numerical)"
    )]
    NoPolicy,
    /// `spec.policy.semver.range` is not a Masterminds constraint.
    #[error("spec.policy.semver.range: invalid semver range {range:?}: {source}")]
    SemverRange {
        range: String,
        source: ConstraintError,
    },
    /// An order string other than `asc`/`desc` (any case) or empty.
    #[error("{field}: invalid order {value:?}: must be asc or desc")]
    Order { field: String, value: String },
    /// `spec.filterTags.pattern` is not a valid (Go RE2) regular expression.
    #[error("spec.filterTags.pattern: failed to filter tags: {0}")]
    Pattern(PatternError),
}

/// Why no tag could be selected (Flux's messages; the counts help explain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// No tags at all, or none passed the filter.
    #[error("version list argument cannot be empty")]
    Empty { total: usize },
    /// semver: no tag parses as a version inside the range.
    #[error("unable to determine latest version from provided list")]
    NoMatch { total: usize, filtered: usize },
    /// numerical: a value is not a number (Go `ParseFloat`).
    #[error("failed to parse invalid numeric value '{value}'")]
    InvalidNumber { value: String, tag: String },
    /// The filter failed while matching (fancy-regex limit).
    #[error(transparent)]
    Match(#[from] MatchError),
}

/// The policer of a policy.
#[derive(Debug, Clone)]
pub enum Policer {
    SemVer(Constraint),
    Alphabetical(SortOrder),
    Numerical(SortOrder),
}

/// A validated image policy: an optional tag filter and a policer.
#[derive(Debug, Clone)]
pub struct Policy {
    policer: Policer,
    filter: Option<TagFilter>,
}

/// The selected tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The original tag, as listed by the registry.
    pub tag: String,
    /// The value it was compared by (the `extract` expansion, or the tag itself).
    pub value: String,
    /// How many tags were given.
    pub total: usize,
    /// How many passed the filter (all of them without a filter).
    pub filtered: usize,
}

/// Flux's order parsing for alphabetical and numerical policies: case-insensitive, empty is
/// `asc`.
pub fn parse_sort_order(field: &str, value: &str) -> Result<SortOrder, PolicyError> {
    if value.is_empty() || value.eq_ignore_ascii_case("asc") {
        Ok(SortOrder::Asc)
    } else if value.eq_ignore_ascii_case("desc") {
        Ok(SortOrder::Desc)
    } else {
        Err(PolicyError::Order {
            field: field.to_owned(),
            value: value.to_owned(),
        })
    }
}

impl Policer {
    /// Builds the policer of `spec.policy` (semver > alphabetical > numerical).
    pub fn from_choice(choice: &ImagePolicyChoice) -> Result<Self, PolicyError> {
        if let Some(semver) = &choice.semver {
            return Constraint::parse(&semver.range)
                .map(Policer::SemVer)
                .map_err(|source| PolicyError::SemverRange {
                    range: semver.range.clone(),
                    source,
                });
        }
        if let Some(a) = &choice.alphabetical {
            return Ok(Policer::Alphabetical(a.order));
        }
        if let Some(n) = &choice.numerical {
            return Ok(Policer::Numerical(n.order));
        }
        Err(PolicyError::NoPolicy)
    }
}

/// The best candidate so far. Strings are reused, so a pass allocates only when the best
/// changes to a longer string.
#[derive(Default)]
struct Best {
    found: bool,
    tag: String,
    value: String,
    /// semver: major, minor, patch and the pre-release's byte range in `value`.
    ver: (u64, u64, u64, usize, usize),
    /// numerical: the number.
    num: f64,
}

impl Best {
    fn set(&mut self, tag: &str, value: &str) {
        self.found = true;
        self.tag.clear();
        self.tag.push_str(tag);
        self.value.clear();
        self.value.push_str(value);
    }

    fn version(&self) -> Version<'_> {
        let (major, minor, patch, s, e) = self.ver;
        Version {
            major,
            minor,
            patch,
            pre: &self.value[s..e],
            build: "",
        }
    }
}

/// The tie-breaks shared by all policers: value order (given), then the smaller tag.
fn then_smaller_tag(by_value: Ordering, tag: &str, best_tag: &str) -> Ordering {
    by_value.then_with(|| best_tag.as_bytes().cmp(tag.as_bytes()))
}

/// Numbers for selection: NaN ranks below everything in both orders.
fn rank_number(order: SortOrder, x: f64, best: f64) -> Ordering {
    match (x.is_nan(), best.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => {
            let o = x.partial_cmp(&best).unwrap_or(Ordering::Equal);
            match order {
                SortOrder::Asc => o,
                SortOrder::Desc => o.reverse(),
            }
        }
    }
}

impl Policy {
    /// Validates a spec: the policer, and the filter when `filterTags` is set.
    pub fn from_spec(spec: &ImagePolicySpec) -> Result<Self, PolicyError> {
        let policer = Policer::from_choice(&spec.policy)?;
        let filter = match &spec.filter_tags {
            Some(f) => Some(TagFilter::new(&f.pattern, &f.extract).map_err(PolicyError::Pattern)?),
            None => None,
        };
        Ok(Policy { policer, filter })
    }

    /// A policy from parts (for callers that validated them already).
    pub fn new(policer: Policer, filter: Option<TagFilter>) -> Self {
        Policy { policer, filter }
    }

    /// The policer.
    pub fn policer(&self) -> &Policer {
        &self.policer
    }

    /// The filter, if any.
    pub fn filter(&self) -> Option<&TagFilter> {
        self.filter.as_ref()
    }

    /// Selects the latest tag (see the module documentation for the pipeline and the order).
    /// The result does not depend on the order of `tags`.
    pub fn select<'t, I>(&self, tags: I) -> Result<Selected, SelectError>
    where
        I: IntoIterator<Item = &'t str>,
    {
        let mut best = Best::default();
        let mut buf = String::new();
        let mut total = 0usize;
        let mut filtered = 0usize;
        let mut invalid: Option<(String, String)> = None;
        for tag in tags {
            total += 1;
            let value: &str = match &self.filter {
                Some(f) => {
                    if !f.apply(tag, &mut buf)? {
                        continue;
                    }
                    &buf
                }
                None => tag,
            };
            filtered += 1;
            match &self.policer {
                Policer::SemVer(c) => {
                    let Ok(v) = Version::parse_tag(value) else {
                        continue;
                    };
                    if !c.matches(&v) {
                        continue;
                    }
                    let better = !best.found
                        || then_smaller_tag(
                            v.precedence(&best.version())
                                .then_with(|| value.as_bytes().cmp(best.value.as_bytes())),
                            tag,
                            &best.tag,
                        ) == Ordering::Greater;
                    if better {
                        // `value` ends with `[-pre][+build]`: keep the pre-release's offsets.
                        let build = if v.build.is_empty() {
                            0
                        } else {
                            v.build.len() + 1
                        };
                        let end = value.len() - build;
                        best.ver = (v.major, v.minor, v.patch, end - v.pre.len(), end);
                        best.set(tag, value);
                    }
                }
                Policer::Alphabetical(order) => {
                    let better = !best.found
                        || then_smaller_tag(
                            alphabetical::rank(*order, value, &best.value),
                            tag,
                            &best.tag,
                        ) == Ordering::Greater;
                    if better {
                        best.set(tag, value);
                    }
                }
                Policer::Numerical(order) => {
                    let x = match numerical::parse_go_float(value) {
                        Ok(x) => x,
                        Err(_) => {
                            let replace = invalid
                                .as_ref()
                                .is_none_or(|(v, t)| (value, tag) > (v.as_str(), t.as_str()));
                            if replace {
                                invalid = Some((value.to_owned(), tag.to_owned()));
                            }
                            continue;
                        }
                    };
                    let better = !best.found
                        || then_smaller_tag(
                            rank_number(*order, x, best.num)
                                .then_with(|| best.value.as_bytes().cmp(value.as_bytes())),
                            tag,
                            &best.tag,
                        ) == Ordering::Greater;
                    if better {
                        best.num = x;
                        best.set(tag, value);
                    }
                }
            }
        }
        if let Some((value, tag)) = invalid {
            return Err(SelectError::InvalidNumber { value, tag });
        }
        if filtered == 0 {
            return Err(SelectError::Empty { total });
        }
        if !best.found {
            return Err(SelectError::NoMatch { total, filtered });
        }
        Ok(Selected {
            tag: best.tag,
            value: best.value,
            total,
            filtered,
        })
    }
}

impl fmt::Display for Policer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = |o: &SortOrder| match o {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        };
        match self {
            Policer::SemVer(c) => write!(f, "semver range {c:?}", c = c.to_string()),
            Policer::Alphabetical(o) => write!(f, "alphabetical {}", order(o)),
            Policer::Numerical(o) => write!(f, "numerical {}", order(o)),
        }
    }
}
