#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Table tests: every policy behaviour pinned in the reference spec, section 7 (7.1 policy
//! unit tests, 7.2 controller-level policy selection, 7.7 ParseVersion, 7.8 derived edge
//! cases), plus the constraint table of section 2.3. Each test is named after its case.

use api_types::{
    AlphabeticalPolicy, ImagePolicyChoice, ImagePolicySpec, NumericalPolicy, SemVerPolicy,
    SortOrder, TagFilter as TagFilterSpec,
};
use image_reflector::policy::{
    Constraint, Policy, PolicyError, SelectError, TagFilter, Version, parse_sort_order,
};

fn semver(range: &str) -> ImagePolicySpec {
    ImagePolicySpec {
        policy: ImagePolicyChoice {
            semver: Some(SemVerPolicy {
                range: range.into(),
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn alphabetical(order: SortOrder) -> ImagePolicySpec {
    ImagePolicySpec {
        policy: ImagePolicyChoice {
            alphabetical: Some(AlphabeticalPolicy { order }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn numerical(order: SortOrder) -> ImagePolicySpec {
    ImagePolicySpec {
        policy: ImagePolicyChoice {
            numerical: Some(NumericalPolicy { order }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn filtered(mut spec: ImagePolicySpec, pattern: &str, extract: &str) -> ImagePolicySpec {
    spec.filter_tags = Some(TagFilterSpec {
        pattern: pattern.into(),
        extract: extract.into(),
    });
    spec
}

fn select(spec: &ImagePolicySpec, tags: &[&str]) -> Result<String, SelectError> {
    Policy::from_spec(spec)
        .expect("valid policy")
        .select(tags.iter().copied())
        .map(|s| s.tag)
}

fn ok(spec: &ImagePolicySpec, tags: &[&str]) -> String {
    select(spec, tags).unwrap_or_else(|e| panic!("selection failed: {e}"))
}

/// Values the filter lets through (sorted, deduplicated), as Flux's filter tests check.
fn filter_values(pattern: &str, extract: &str, tags: &[&str]) -> Vec<String> {
    let f = TagFilter::new(pattern, extract).unwrap();
    let mut out = Vec::new();
    let mut buf = String::new();
    for t in tags {
        if f.apply(t, &mut buf).unwrap() {
            out.push(buf.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}

// ---- 7.1 Policy unit tests -------------------------------------------------------------

#[test]
fn case01_semver_ignores_malformed_tags() {
    let tags = ["1.0.0", "1.0.0.1", "1.0.0p", "1.0.1", "1.2.0", "0.1.0"];
    assert_eq!(ok(&semver("1.0.x"), &tags), "1.0.1");
}

#[test]
fn case02_semver_keeps_the_v_prefix_in_the_output() {
    assert_eq!(
        ok(&semver("1.0.x"), &["v1.2.3", "v1.0.0", "v0.1.0"]),
        "v1.0.0"
    );
}

#[test]
fn case03_semver_no_parseable_tag_is_an_error() {
    let e = select(&semver("1.0.x"), &["b1.2.3", "b1.0.0", "b0.1.0"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unable to determine latest version from provided list"
    );
}

#[test]
fn case04_semver_empty_list_is_an_error() {
    let e = select(&semver("1.0.x"), &[]).unwrap_err();
    assert_eq!(e.to_string(), "version list argument cannot be empty");
    assert_eq!(e, SelectError::Empty { total: 0 });
}

#[test]
fn case05_semver_no_match_is_an_error() {
    let e = select(&semver("1.0.x"), &["1.2.0"]).unwrap_err();
    assert_eq!(
        e,
        SelectError::NoMatch {
            total: 1,
            filtered: 1
        }
    );
}

#[test]
fn case06_semver_valid_ranges() {
    for r in [
        "1.0.x", "^1.0", "=1.0.0", "~1.0", ">=1.0", ">0,<2.0", "v1.0.x",
    ] {
        assert!(Constraint::parse(r).is_ok(), "{r} should be valid");
        assert!(Policy::from_spec(&semver(r)).is_ok(), "{r}");
    }
}

#[test]
fn case07_semver_invalid_ranges() {
    for r in ["1.0.0p", "1x", "x1", "-1", "a", ""] {
        assert!(Constraint::parse(r).is_err(), "{r:?} should be invalid");
    }
}

#[test]
fn case08_factory_rejects_star_dash_star() {
    let e = Policy::from_spec(&semver("*-*")).unwrap_err();
    assert!(matches!(e, PolicyError::SemverRange { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("spec.policy.semver.range: invalid semver range \"*-*\""),
        "{e}"
    );
}

#[test]
fn case09_factory_needs_a_policy() {
    let e = Policy::from_spec(&ImagePolicySpec::default()).unwrap_err();
    assert_eq!(e, PolicyError::NoPolicy);
    assert!(e.to_string().starts_with("spec.policy: "), "{e}");
    assert!(
        e.to_string()
            .contains("given ImagePolicyChoice object is invalid")
    );
    assert!(Policy::from_spec(&semver("1.0.x")).is_ok());
    assert!(Policy::from_spec(&alphabetical(SortOrder::default())).is_ok());
}

const UBUNTU_NUMBERS: [&str; 5] = ["16.04", "16.04.1", "16.10", "20.04", "20.10"];

#[test]
fn case10_alphabetical_asc() {
    assert_eq!(ok(&alphabetical(SortOrder::Asc), &UBUNTU_NUMBERS), "20.10");
}

#[test]
fn case11_alphabetical_desc() {
    assert_eq!(ok(&alphabetical(SortOrder::Desc), &UBUNTU_NUMBERS), "16.04");
}

#[test]
fn case12_alphabetical_names() {
    let tags = ["xenial", "yakkety", "zesty", "artful", "bionic"];
    assert_eq!(ok(&alphabetical(SortOrder::Asc), &tags), "zesty");
    assert_eq!(ok(&alphabetical(SortOrder::Desc), &tags), "artful");
}

const TIMESTAMPS: [&str; 5] = [
    "1606234201",
    "1606364286",
    "1606334092",
    "1606334284",
    "1606334201",
];

#[test]
fn case13_alphabetical_timestamps() {
    assert_eq!(ok(&alphabetical(SortOrder::Asc), &TIMESTAMPS), "1606364286");
    assert_eq!(
        ok(&alphabetical(SortOrder::Desc), &TIMESTAMPS),
        "1606234201"
    );
}

#[test]
fn case14_alphabetical_prefixed_timestamps() {
    let tags: Vec<String> = TIMESTAMPS.iter().map(|t| format!("rel-{t}")).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    assert_eq!(ok(&alphabetical(SortOrder::Asc), &tags), "rel-1606364286");
}

#[test]
fn case15_alphabetical_rfc3339_like() {
    let tags = [
        "2021-01-08T21-18-21Z",
        "2020-05-08T21-18-21Z",
        "2021-01-08T19-20-00Z",
        "1990-01-08T00-20-00Z",
        "2023-05-08T00-20-00Z",
    ];
    assert_eq!(
        ok(&alphabetical(SortOrder::Asc), &tags),
        "2023-05-08T00-20-00Z"
    );
    assert_eq!(
        ok(&alphabetical(SortOrder::Desc), &tags),
        "1990-01-08T00-20-00Z"
    );
}

#[test]
fn case16_alphabetical_empty_is_an_error() {
    let e = select(&alphabetical(SortOrder::Asc), &[]).unwrap_err();
    assert_eq!(e.to_string(), "version list argument cannot be empty");
}

#[test]
fn case17_order_strings_are_read_case_insensitively() {
    assert_eq!(parse_sort_order("o", ""), Ok(SortOrder::Asc));
    assert_eq!(parse_sort_order("o", "ASC"), Ok(SortOrder::Asc));
    assert_eq!(parse_sort_order("o", "DESC"), Ok(SortOrder::Desc));
    assert_eq!(parse_sort_order("o", "desc"), Ok(SortOrder::Desc));
    let e = parse_sort_order("spec.policy.numerical.order", "invalid").unwrap_err();
    assert!(
        e.to_string().starts_with("spec.policy.numerical.order: "),
        "{e}"
    );
}

#[test]
fn case18_numerical_asc() {
    let tags = [
        "-62", "-88", "73", "72", "15", "16", "15", "29", "-33", "-91",
    ];
    assert_eq!(ok(&numerical(SortOrder::Asc), &tags), "73");
}

#[test]
fn case19_numerical_desc() {
    let tags = ["5", "-8", "-78", "25", "70", "-4", "80", "92", "-20", "-24"];
    assert_eq!(ok(&numerical(SortOrder::Desc), &tags), "-78");
}

const FLOATS: [&str; 10] = [
    "47.40896403322944",
    "-27.8520927455902",
    "-27.930666514224427",
    "-31.352485948094568",
    "-50.41072694704882",
    "-21.962849842263736",
    "-90.29082099756083",
    "53.47333823144817",
    "3.2008173095042186",
    "-6.954869117917148",
];

#[test]
fn case20_numerical_floats_asc() {
    assert_eq!(ok(&numerical(SortOrder::Asc), &FLOATS), "53.47333823144817");
}

#[test]
fn case21_numerical_floats_desc() {
    assert_eq!(
        ok(&numerical(SortOrder::Desc), &FLOATS),
        "-90.29082099756083"
    );
}

#[test]
fn case22_numerical_timestamps() {
    assert_eq!(ok(&numerical(SortOrder::Asc), &TIMESTAMPS), "1606364286");
    assert_eq!(ok(&numerical(SortOrder::Desc), &TIMESTAMPS), "1606234201");
}

#[test]
fn case23_numerical_single() {
    assert_eq!(ok(&numerical(SortOrder::Asc), &["1"]), "1");
    assert_eq!(ok(&numerical(SortOrder::Desc), &["1"]), "1");
}

#[test]
fn case24_numerical_one_bad_value_fails_everything() {
    let e = select(&numerical(SortOrder::Asc), &["0", "1a", "b"]).unwrap_err();
    // The bytewise-greatest bad value is named: the one Flux meets first in its cache order.
    assert_eq!(e.to_string(), "failed to parse invalid numeric value 'b'");
}

#[test]
fn case25_numerical_empty_is_an_error() {
    let e = select(&numerical(SortOrder::Asc), &[]).unwrap_err();
    assert_eq!(e.to_string(), "version list argument cannot be empty");
}

#[test]
fn case26_filter_without_pattern_keeps_everything() {
    assert_eq!(filter_values("", "", &["a"]), ["a"]);
}

#[test]
fn case27_filter_pattern() {
    let tags = ["ver1", "ver2", "ver3", "rel1"];
    assert_eq!(filter_values("^ver", "", &tags), ["ver1", "ver2", "ver3"]);
}

#[test]
fn case28_filter_extract_group() {
    let tags = ["ver1", "ver2", "ver3", "rel1"];
    assert_eq!(filter_values(r"ver(\d+)", "$1", &tags), ["1", "2", "3"]);
}

const DEBUG_TAGS: [&str; 4] = [
    "123-123.123.abcd123-debug",
    "123-123.123.abcd123",
    "123-123.123.abcd456-debug",
    "123-123.123.abcd456",
];

#[test]
fn case29_filter_debug_tags() {
    assert_eq!(
        filter_values(r"^(123-[0-9]+\.[0-9]+\.[a-z0-9]+-debug)", "", &DEBUG_TAGS),
        ["123-123.123.abcd123-debug", "123-123.123.abcd456-debug"]
    );
}

#[test]
fn case30_filter_named_group_collapses_debug_and_plain() {
    assert_eq!(
        filter_values(
            r"^(?P<tag>123-[0-9]+\.[0-9]+\.[a-z0-9]+[^-debug])",
            "$tag",
            &DEBUG_TAGS
        ),
        ["123-123.123.abcd123", "123-123.123.abcd456"]
    );
}

#[test]
fn case31_filter_named_group_anchored() {
    assert_eq!(
        filter_values(
            r"^(?P<tag>123-[0-9]+\.[0-9]+\.[a-z0-9]+$)",
            "$tag",
            &DEBUG_TAGS
        ),
        ["123-123.123.abcd123", "123-123.123.abcd456"]
    );
}

// ---- 7.2 Controller-level policy tests (the selection part) ------------------------------

#[test]
fn case32_no_tags_is_an_error() {
    assert!(matches!(
        select(&semver("1.0.x"), &[]),
        Err(SelectError::Empty { total: 0 })
    ));
}

#[test]
fn case34_semver_plain() {
    assert_eq!(
        ok(&semver("1.0.x"), &["1.0.0", "2.0.0", "1.0.1", "1.2.0"]),
        "1.0.1"
    );
}

#[test]
fn case35_semver_v_in_range_and_tags() {
    assert_eq!(
        ok(&semver("v1.0.x"), &["v1.0.0", "v2.0.0", "v1.0.1", "v1.2.0"]),
        "v1.0.1"
    );
}

#[test]
fn case36_semver_v_in_range_only() {
    assert_eq!(
        ok(&semver("v1.0.x"), &["1.0.0", "2.0.0", "1.0.1", "1.2.0"]),
        "1.0.1"
    );
}

#[test]
fn case37_semver_v_in_tags_only() {
    assert_eq!(
        ok(&semver("1.0.x"), &["v1.0.0", "v2.0.0", "v1.0.1", "v1.2.0"]),
        "v1.0.1"
    );
}

#[test]
fn case38_invalid_filter_pattern() {
    let e = Policy::from_spec(&filtered(semver("1.0.x"), "[=", "")).unwrap_err();
    assert!(matches!(e, PolicyError::Pattern(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("spec.filterTags.pattern: failed to filter tags: invalid regular expression pattern '[='"),
        "{e}"
    );
}

#[test]
fn case39_numerical_extract_returns_the_original_tag() {
    let spec = filtered(
        numerical(SortOrder::Asc),
        r"1.0.0-rc\.(?P<num>[0-9]+)",
        "$num",
    );
    let tags = [
        "1.0.0",
        "1.0.0-rc.1",
        "1.0.0-rc.2",
        "1.0.0-rc.3",
        "1.0.1-rc.2",
    ];
    let s = Policy::from_spec(&spec)
        .unwrap()
        .select(tags.iter().copied())
        .unwrap();
    assert_eq!(s.tag, "1.0.0-rc.3");
    assert_eq!(s.value, "3");
}

#[test]
fn case40_alphabetical_extract() {
    let spec = filtered(
        alphabetical(SortOrder::Asc),
        "foo-(?P<word>[a-z]+)",
        "$word",
    );
    let tags = ["foo-aaa", "bar-bbb", "foo-zzz", "baz-nnn", "foo-ooo"];
    assert_eq!(ok(&spec, &tags), "foo-zzz");
}

const REGISTRY_TAGS: [&str; 7] = [
    "0.1.0",
    "0.1.1",
    "0.2.0",
    "1.0.0",
    "1.0.1",
    "1.0.2",
    "1.1.0-alpha",
];

#[test]
fn case41_semver_registry_tags() {
    assert_eq!(ok(&semver("1.0.x"), &REGISTRY_TAGS), "1.0.2");
}

#[test]
fn case42_invalid_range_is_an_invalid_policy() {
    assert!(Policy::from_spec(&semver("*-*")).is_err());
}

#[test]
fn case43_alphabetical_default_order() {
    let tags = ["xenial", "yakkety", "zesty", "artful", "bionic"];
    assert_eq!(ok(&alphabetical(SortOrder::default()), &tags), "zesty");
}

#[test]
fn case44_filter_extract_then_semver() {
    let spec = filtered(semver(">=0.x"), "^test-(.*)$", "$1");
    let tags = [
        "test-0.1.0",
        "test-0.1.1",
        "dev-0.2.0",
        "1.0.0",
        "1.0.1",
        "1.0.2",
        "1.1.0-alpha",
    ];
    assert_eq!(ok(&spec, &tags), "test-0.1.1");
}

#[test]
fn case45_unbalanced_pattern_is_invalid() {
    let e = Policy::from_spec(&filtered(semver(">=0.x"), "^test-(.*", "$1")).unwrap_err();
    assert!(
        e.to_string().contains("invalid regular expression pattern"),
        "{e}"
    );
}

#[test]
fn case46_semver_cross_namespace_selection() {
    // The ACL part is the controller's; the selection is the same in every allowed case.
    assert_eq!(ok(&semver("1.0.x"), &["1.0.0", "1.0.1"]), "1.0.1");
}

#[test]
fn case47_filter_and_range_then_exclusion_moves_back() {
    let spec = filtered(semver("6.7.x"), r"^6\.7\.\d+$", "");
    let tags = ["6.6.3", "6.7.0", "6.7.1", "6.7.1-rc.1", "6.8.0", "latest"];
    assert_eq!(ok(&spec, &tags), "6.7.1");
    // The repository's exclusion of ^6\.7\.1$ removes the tag: the policy moves to 6.7.0.
    let without: Vec<&str> = tags.iter().copied().filter(|t| *t != "6.7.1").collect();
    assert_eq!(ok(&spec, &without), "6.7.0");
}

// ---- 7.7 fluxcd/pkg version.ParseVersion ---------------------------------------------------

#[test]
fn case_7_7_parse_version_accepts() {
    for t in [
        "v1.2.3",
        "v2025.07.03",
        "v1.2.0-x.Y.0+metadata",
        "v1.2.0-x.Y.0+metadata-width-hypen",
        "v1.2.3-rc1-with-hypen",
    ] {
        assert!(Version::parse_tag(t).is_ok(), "{t} should parse");
    }
    let v = Version::parse_tag("v2025.07.03").unwrap();
    assert_eq!((v.major, v.minor, v.patch), (2025, 7, 3));
}

#[test]
fn case_7_7_parse_version_rejects() {
    for t in [
        "v1.0",
        "v1",
        "v1.2.beta",
        "v1.2-5",
        "v1.2-beta5",
        "\nv1.2",
        "v1.2.3.4",
    ] {
        assert!(Version::parse_tag(t).is_err(), "{t:?} should not parse");
    }
}

#[test]
fn case_7_7_sort_order_ties_keep_the_first_seen() {
    // Library Sort test: 1.2.4, v1.2.4 are equal; our total order picks the greater string.
    let tags = ["1.2.4", "v1.2.4", "v1.2.3", "v1.2.0"];
    assert_eq!(ok(&semver("*"), &tags), "v1.2.4");
}

// ---- 7.8 Derived edge cases ----------------------------------------------------------------

#[test]
fn case_7_8_partial_version_with_dots_in_prerelease() {
    let v = Version::parse_tag("1.2-rc.1").unwrap();
    assert_eq!((v.major, v.minor, v.patch, v.pre), (1, 2, 0, "rc.1"));
    assert_eq!(ok(&semver(">=1.0.0-0"), &["1.2-rc.1"]), "1.2-rc.1");
    assert_eq!(Version::parse_tag("1-rc.1.2").unwrap().pre, "rc.1.2");
    assert_eq!(Version::parse_tag("1.2+build.5").unwrap().build, "build.5");
}

#[test]
fn case_7_8_leading_zero_prerelease_is_ignored() {
    assert!(Version::parse_tag("1.0.0-rc.01").is_err());
    assert!(select(&semver(">=0.0.0-0"), &["1.0.0-rc.01"]).is_err());
}

#[test]
fn case_7_8_uppercase_v_is_ignored() {
    assert!(Version::parse_tag("V1.2.3").is_err());
    assert!(select(&semver("*"), &["V1.2.3"]).is_err());
}

#[test]
fn case_7_8_rc9_beats_rc10_bytewise() {
    assert_eq!(
        ok(&semver(">=0.0.1-0"), &["1.0.1-rc9", "1.0.1-rc10"]),
        "1.0.1-rc9"
    );
}

#[test]
fn case_7_8_numeric_identifiers_compare_numerically() {
    assert_eq!(
        ok(&semver(">=0.0.1-0"), &["1.0.1-rc.9", "1.0.1-rc.10"]),
        "1.0.1-rc.10"
    );
}

#[test]
fn case_7_8_prerelease_needs_a_prerelease_comparator() {
    assert!(select(&semver(">=1.0.0"), &["1.5.0-rc.1"]).is_err());
}

#[test]
fn case_7_8_whole_and_group_admits_prereleases() {
    assert_eq!(
        ok(&semver(">=1.0.0-0 <2.0.0"), &["1.5.0-rc.1"]),
        "1.5.0-rc.1"
    );
}

#[test]
fn case_7_8_underscore_is_ignored() {
    assert!(Version::parse_tag("1.0.0_build1").is_err());
}

#[test]
fn case_7_8_v_prefix_wins_a_tie() {
    assert_eq!(ok(&semver("1.x"), &["1.2.3", "v1.2.3"]), "v1.2.3");
    assert_eq!(ok(&semver("1.x"), &["v1.2.3", "1.2.3"]), "v1.2.3");
}

#[test]
fn case_7_8_numerical_underscores() {
    assert_eq!(ok(&numerical(SortOrder::Asc), &["1_000", "999"]), "1_000");
}

#[test]
fn case_7_8_numerical_out_of_range_fails() {
    let e = select(&numerical(SortOrder::Asc), &["1", "1e400"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to parse invalid numeric value '1e400'"
    );
}

// ---- 2.3 constraint table -----------------------------------------------------------------

fn admits(range: &str, version: &str) -> bool {
    let c = Constraint::parse(range).unwrap_or_else(|e| panic!("{range}: {e}"));
    c.matches(&Version::parse_loose(version).unwrap())
}

#[test]
fn constraint_table_of_section_2_3() {
    let table: &[(&str, &[&str], &[&str])] = &[
        ("1.2.3", &["1.2.3", "1.2.3+meta"], &["1.2.4", "1.2.2"]),
        ("=1.2.3", &["1.2.3"], &["1.2.4"]),
        ("1.2", &["1.2.0", "1.2.9"], &["1.3.0", "1.1.9"]),
        ("1.2.x", &["1.2.0", "1.2.9"], &["1.3.0"]),
        ("1.2.*", &["1.2.5"], &["1.3.0"]),
        ("=1.2", &["1.2.5"], &["1.3.0"]),
        ("1", &["1.0.0", "1.9.9"], &["2.0.0", "0.9.0"]),
        ("1.x", &["1.5.0"], &["2.0.0"]),
        ("1.x.x", &["1.5.0"], &["2.0.0"]),
        ("*", &["0.0.0", "9.9.9"], &["1.0.0-rc.1"]),
        ("x", &["3.0.0"], &[]),
        (">1.2.3", &["1.2.4"], &["1.2.3"]),
        (">=1.2.3", &["1.2.3"], &["1.2.2"]),
        ("<1.2.3", &["1.2.2"], &["1.2.3"]),
        ("<=1.2.3", &["1.2.3"], &["1.2.4"]),
        (">1.2", &["1.3.0"], &["1.2.9"]),
        (">1", &["2.0.0"], &["1.9.9"]),
        ("<=1.2", &["1.2.9"], &["1.3.0"]),
        ("<1.2", &["1.1.9"], &["1.2.0"]),
        (">=1.2", &["1.2.0"], &["1.1.9"]),
        ("~1.2.3", &["1.2.3", "1.2.9"], &["1.3.0", "1.2.2"]),
        ("~>1.2.3", &["1.2.9"], &["1.3.0"]),
        ("~1.2", &["1.2.0"], &["1.3.0"]),
        ("~1", &["1.0.0", "1.9.0"], &["2.0.0"]),
        ("^1.2.3", &["1.2.3", "1.9.0"], &["2.0.0", "1.2.2"]),
        ("^0.2.3", &["0.2.3", "0.2.9"], &["0.3.0"]),
        ("^0.0.3", &["0.0.3"], &["0.0.4", "0.0.2"]),
        ("^0.0", &["0.0.9"], &["0.1.0"]),
        ("^0", &["0.9.9"], &["1.0.0"]),
        ("!=1.2.x", &["1.3.0", "1.1.0"], &["1.2.0", "1.2.7"]),
        ("1.2 - 1.4.5", &["1.2.0", "1.4.5"], &["1.4.6", "1.1.9"]),
        (">= 1.0, < 2.0", &["1.5.0"], &["2.0.0"]),
        ("<1 || >=3", &["0.5.0", "3.0.0"], &["2.0.0"]),
        ("1 - 2 <1.5", &["1.4.0"], &["1.6.0"]),
        ("~3.3.x-0", &["3.3.1-rc.1", "3.3.1"], &["3.4.0-rc.1"]),
        ("^1.x-0", &["1.2.0-rc.1"], &["2.0.0-rc.1"]),
    ];
    for (range, yes, no) in table {
        for v in *yes {
            assert!(admits(range, v), "{range} should admit {v}");
        }
        for v in *no {
            assert!(!admits(range, v), "{range} should not admit {v}");
        }
    }
}

#[test]
fn build_metadata_is_ignored_for_precedence() {
    let a = Version::parse_loose("1.0.0+a").unwrap();
    let b = Version::parse_loose("1.0.0+b").unwrap();
    assert_eq!(a.precedence(&b), std::cmp::Ordering::Equal);
    // The tie-break picks the greater string, as Flux does without a filter.
    assert_eq!(ok(&semver("1.0.0"), &["1.0.0+a", "1.0.0+b"]), "1.0.0+b");
}

#[test]
fn precedence_of_semver_policy_over_others() {
    let mut spec = semver(">=2.0.0");
    spec.policy.alphabetical = Some(AlphabeticalPolicy {
        order: SortOrder::Asc,
    });
    spec.policy.numerical = Some(NumericalPolicy {
        order: SortOrder::Asc,
    });
    assert_eq!(ok(&spec, &["zzz", "1.0.0", "2.1.0"]), "2.1.0");
    spec.policy.semver = None;
    assert_eq!(ok(&spec, &["zzz", "1.0.0", "2.1.0"]), "zzz");
}
