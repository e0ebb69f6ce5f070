//! `image-reflector select`: try a policy on a list of tags, offline.
//!
//! Tags come one per line (empty lines are ignored, a trailing CR is dropped). The policy is
//! given by exactly one of `--semver`, `--alphabetical`, `--numerical` or `--policy FILE` (an
//! ImagePolicy manifest, YAML or JSON, any apiVersion). `--filter-pattern` and
//! `--filter-extract` set `spec.filterTags`; with `--policy` they replace the manifest's
//! corresponding field.
//!
//! Exit codes: 0 with the chosen original tag on stdout; 1 when no tag qualifies; 2 when the
//! policy or the command line is invalid.

use std::fmt;

use api_types::{
    AlphabeticalPolicy, ImagePolicyChoice, ImagePolicySpec, NumericalPolicy, SemVerPolicy,
    TagFilter as TagFilterSpec,
};

use crate::policy::{Policer, Policy, PolicyError, SelectError, parse_sort_order};

/// Arguments of `image-reflector select`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(group(
    clap::ArgGroup::new("policy-kind")
        .required(true)
        .args(["semver", "alphabetical", "numerical", "policy"])
))]
pub struct SelectArgs {
    /// Semver range, Masterminds syntax (e.g. '>=1.0.0 <2.0.0', '^1.2', '1.x || >=3.0.0-0').
    #[arg(long, value_name = "RANGE")]
    pub semver: Option<String>,
    /// Alphabetical order: asc picks the last tag in byte order, desc the first.
    #[arg(long, value_name = "asc|desc")]
    pub alphabetical: Option<String>,
    /// Numerical order: asc picks the highest number, desc the lowest.
    #[arg(long, value_name = "asc|desc")]
    pub numerical: Option<String>,
    /// An ImagePolicy manifest (YAML or JSON) whose spec.policy and spec.filterTags are used.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<std::path::PathBuf>,
    /// Keep only tags matching this regular expression (Go RE2 syntax, unanchored).
    #[arg(long, value_name = "RE")]
    pub filter_pattern: Option<String>,
    /// Compare the expansion of this template ($1, ${1}, $name, ${name}, $$) instead of the tag.
    #[arg(long, value_name = "TPL")]
    pub filter_extract: Option<String>,
}

/// Why `select` did not print a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectFailure {
    /// The policy or the invocation is invalid (exit 2).
    Invalid(String),
    /// No tag qualifies (exit 1).
    NoMatch(String),
}

impl SelectFailure {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            SelectFailure::Invalid(_) => 2,
            SelectFailure::NoMatch(_) => 1,
        }
    }
}

impl fmt::Display for SelectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectFailure::Invalid(m) | SelectFailure::NoMatch(m) => f.write_str(m),
        }
    }
}

fn invalid(e: impl fmt::Display) -> SelectFailure {
    SelectFailure::Invalid(e.to_string())
}

/// Reads an ImagePolicy manifest's `spec.policy` and `spec.filterTags`. Order values are
/// read like Flux's factory does (case-insensitive).
pub fn spec_from_manifest(text: &str) -> Result<ImagePolicySpec, SelectFailure> {
    let doc: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| invalid(format!("policy file: not YAML or JSON: {e}")))?;
    if let Some(kind) = doc.get("kind").and_then(|k| k.as_str())
        && kind != "ImagePolicy"
    {
        return Err(invalid(format!(
            "policy file: kind is {kind:?}, expected \"ImagePolicy\""
        )));
    }
    let spec = doc
        .get("spec")
        .ok_or_else(|| invalid("policy file: spec: missing"))?;
    let mut policy = spec
        .get("policy")
        .cloned()
        .ok_or_else(|| invalid("spec.policy: missing"))?;
    for kind in ["alphabetical", "numerical"] {
        if let Some(order) = policy.get_mut(kind).and_then(|p| p.get_mut("order")) {
            let field = format!("spec.policy.{kind}.order");
            let text = order
                .as_str()
                .ok_or_else(|| invalid(format!("{field}: must be a string")))?;
            let parsed = parse_sort_order(&field, text).map_err(invalid)?;
            *order = serde_json::to_value(parsed).map_err(invalid)?;
        }
    }
    let policy: ImagePolicyChoice =
        serde_json::from_value(policy).map_err(|e| invalid(format!("spec.policy: {e}")))?;
    let filter_tags = match spec.get("filterTags") {
        None | Some(serde_json::Value::Null) => None,
        Some(f) => Some(
            serde_json::from_value::<TagFilterSpec>(f.clone())
                .map_err(|e| invalid(format!("spec.filterTags: {e}")))?,
        ),
    };
    Ok(ImagePolicySpec {
        policy,
        filter_tags,
        ..Default::default()
    })
}

/// Builds the spec the arguments describe; `manifest` is the `--policy` file's text.
pub fn spec_from_args(
    args: &SelectArgs,
    manifest: Option<&str>,
) -> Result<ImagePolicySpec, SelectFailure> {
    let mut spec = match manifest {
        Some(text) => spec_from_manifest(text)?,
        None => {
            let mut choice = ImagePolicyChoice::default();
            if let Some(range) = &args.semver {
                choice.semver = Some(SemVerPolicy {
                    range: range.clone(),
                });
            } else if let Some(order) = &args.alphabetical {
                choice.alphabetical = Some(AlphabeticalPolicy {
                    order: parse_sort_order("--alphabetical", order).map_err(invalid)?,
                });
            } else if let Some(order) = &args.numerical {
                choice.numerical = Some(NumericalPolicy {
                    order: parse_sort_order("--numerical", order).map_err(invalid)?,
                });
            }
            ImagePolicySpec {
                policy: choice,
                ..Default::default()
            }
        }
    };
    if args.filter_pattern.is_some() || args.filter_extract.is_some() {
        let f = spec.filter_tags.get_or_insert_with(TagFilterSpec::default);
        if let Some(p) = &args.filter_pattern {
            f.pattern.clone_from(p);
        }
        if let Some(e) = &args.filter_extract {
            f.extract.clone_from(e);
        }
    }
    Ok(spec)
}

/// The tags of `input`: one per line, empty lines ignored, trailing CR dropped.
pub fn tags_from_input(input: &str) -> impl Iterator<Item = &str> {
    input
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
}

/// Runs the policy over the tags of `input` and returns the chosen original tag.
pub fn select(spec: &ImagePolicySpec, input: &str) -> Result<String, SelectFailure> {
    let policy = Policy::from_spec(spec).map_err(|e: PolicyError| invalid(e))?;
    match policy.select(tags_from_input(input)) {
        Ok(s) => Ok(s.tag),
        Err(e) => Err(explain(&policy, spec, &e)),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn explain(policy: &Policy, spec: &ImagePolicySpec, e: &SelectError) -> SelectFailure {
    let pattern = spec
        .filter_tags
        .as_ref()
        .map(|f| f.pattern.as_str())
        .unwrap_or("");
    let msg = match e {
        SelectError::Empty { total: 0 } => "no tag matches: no tags given on stdin".to_owned(),
        SelectError::Empty { total } => format!(
            "no tag matches: 0 of {} passed the filter pattern {pattern:?}",
            plural(*total, "tag", "tags")
        ),
        SelectError::NoMatch { total, filtered } => {
            let which = if policy.filter().is_some() {
                format!(
                    "{} (of {total})",
                    plural(*filtered, "filtered tag", "filtered tags")
                )
            } else {
                plural(*filtered, "tag", "tags")
            };
            let range = match policy.policer() {
                Policer::SemVer(_) => spec
                    .policy
                    .semver
                    .as_ref()
                    .map(|s| s.range.as_str())
                    .unwrap_or(""),
                _ => "",
            };
            format!(
                "no tag matches: none of the {which} is a version satisfying the range \
                 {range:?} ({e}; tags that do not parse as versions, and pre-releases unless \
                 the range names one, are skipped)"
            )
        }
        SelectError::InvalidNumber { value, tag } => {
            let from = if value == tag {
                String::new()
            } else {
                format!(" (extracted from tag {tag:?})")
            };
            format!(
                "{e}{from}: the numerical policy fails when any value is not a number; add a \
                 filter pattern that keeps only numeric tags"
            )
        }
        SelectError::Match(m) => m.to_string(),
    };
    SelectFailure::NoMatch(msg)
}
