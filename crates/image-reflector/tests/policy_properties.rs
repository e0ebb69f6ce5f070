#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests: selection does not depend on input order (the documented total order), and
//! version parsing/printing invariants.

use std::cmp::Ordering;

use api_types::{
    AlphabeticalPolicy, ImagePolicyChoice, ImagePolicySpec, NumericalPolicy, SemVerPolicy,
    SortOrder, TagFilter,
};
use image_reflector::policy::{Policy, Version};
use proptest::prelude::*;

fn spec(choice: ImagePolicyChoice, filter: Option<(&str, &str)>) -> ImagePolicySpec {
    ImagePolicySpec {
        policy: choice,
        filter_tags: filter.map(|(p, e)| TagFilter {
            pattern: p.into(),
            extract: e.into(),
        }),
        ..Default::default()
    }
}

/// Tags with many ties: equal versions spelled differently, metadata, duplicates after
/// extraction, equal numbers (`1`, `01`, `1.0`), NaN and junk.
fn tag() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec!["", "v", "app-", "rc-"]);
    let num = prop::sample::select(vec!["0", "1", "01", "2", "10"]);
    let pre = prop::sample::select(vec!["", "", "-rc.1", "-rc.2", "-alpha", "-0"]);
    let build = prop::sample::select(vec!["", "", "+a", "+b"]);
    let junk = prop::sample::select(vec![
        "", "", "", "", "latest", "1.0", "NaN", "1e2", "1_0", "-1", ".5",
    ]);
    (prefix, num.clone(), num.clone(), num, pre, build, junk).prop_map(
        |(p, a, b, c, pre, build, junk)| {
            if junk.is_empty() {
                format!("{p}{a}.{b}.{c}{pre}{build}")
            } else {
                junk.to_owned()
            }
        },
    )
}

fn policies() -> Vec<ImagePolicySpec> {
    let semver = |r: &str| ImagePolicyChoice {
        semver: Some(SemVerPolicy { range: r.into() }),
        ..Default::default()
    };
    let alpha = |o| ImagePolicyChoice {
        alphabetical: Some(AlphabeticalPolicy { order: o }),
        ..Default::default()
    };
    let num = |o| ImagePolicyChoice {
        numerical: Some(NumericalPolicy { order: o }),
        ..Default::default()
    };
    vec![
        spec(semver(">=0.0.0-0"), None),
        spec(semver("1.x || 2.0.0"), None),
        spec(semver("*"), Some((r"^(?:app-|rc-)?v?(.*)$", "$1"))),
        spec(semver(">=0.0.0-0"), Some((r"^(?:app-|v)(.*)", "$1"))),
        spec(alpha(SortOrder::Asc), None),
        spec(alpha(SortOrder::Desc), Some((r"(\d+)\.", "$1"))),
        spec(num(SortOrder::Asc), Some((r"^(?:app-)?(\d+)\.", "$1"))),
        spec(num(SortOrder::Desc), Some((r"^(?:rc-)?(\d+)", "$1"))),
        spec(num(SortOrder::Asc), Some((r"^[0-9.e_N-]+$|^NaN$", ""))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn selection_does_not_depend_on_input_order(
        tags in prop::collection::vec(tag(), 0..30),
        seed in any::<u64>(),
    ) {
        let mut shuffled = tags.clone();
        // Deterministic shuffle from the seed (Fisher-Yates with an LCG).
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut reversed = tags.clone();
        reversed.reverse();
        for spec in policies() {
            let p = Policy::from_spec(&spec).unwrap();
            let a = p.select(tags.iter().map(String::as_str));
            let b = p.select(shuffled.iter().map(String::as_str));
            let c = p.select(reversed.iter().map(String::as_str));
            prop_assert_eq!(&a, &b, "{:?}", spec.policy);
            prop_assert_eq!(&a, &c, "{:?}", spec.policy);
        }
    }

    #[test]
    fn the_selected_semver_tag_is_a_maximum(tags in prop::collection::vec(tag(), 1..30)) {
        let p = Policy::from_spec(&spec(ImagePolicyChoice {
            semver: Some(SemVerPolicy { range: ">=0.0.0-0".into() }),
            ..Default::default()
        }, None)).unwrap();
        if let Ok(s) = p.select(tags.iter().map(String::as_str)) {
            let best = Version::parse_tag(&s.tag).unwrap();
            for t in &tags {
                if let Ok(v) = Version::parse_tag(t) {
                    prop_assert_ne!(v.precedence(&best), Ordering::Greater, "{} > {}", t, s.tag);
                }
            }
        }
    }

    #[test]
    fn canonical_versions_print_back_unchanged(
        major in 0u64..100_000, minor in 0u64..1000, patch in 0u64..1000,
        pre in prop::collection::vec("[0-9A-Za-z-]{1,6}", 0..3),
        build in prop::collection::vec("[0-9A-Za-z-]{1,6}", 0..3),
    ) {
        // Numeric pre-release identifiers must not have leading zeros.
        let pre: Vec<String> = pre.into_iter().map(|p| {
            if p.len() > 1 && p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()) {
                format!("x{p}")
            } else {
                p
            }
        }).collect();
        let mut s = format!("{major}.{minor}.{patch}");
        if !pre.is_empty() { s.push('-'); s.push_str(&pre.join(".")); }
        if !build.is_empty() { s.push('+'); s.push_str(&build.join(".")); }
        let v = Version::parse_tag(&s).unwrap();
        prop_assert_eq!(v.to_string(), s.clone());
        let with_v = format!("v{s}");
        let v2 = Version::parse_tag(&with_v).unwrap();
        prop_assert_eq!(v2.precedence(&v), Ordering::Equal);
        prop_assert_eq!(v2.to_string(), s);
    }

    #[test]
    fn leading_zeros_and_partial_versions_normalise(
        major in 0u64..1000, minor in 0u64..1000, zeros in 0usize..3,
    ) {
        let z = "0".repeat(zeros);
        // The tag pre-check needs two dots anywhere: a dot in the pre-release counts.
        let one_dot = format!("{z}{major}.{z}{minor}-rc1");
        prop_assert!(Version::parse_tag(&one_dot).is_err());
        let two_dots = format!("{z}{major}.{z}{minor}-rc.1");
        let v = Version::parse_tag(&two_dots).unwrap();
        prop_assert_eq!(v.to_string(), format!("{major}.{minor}.0-rc.1"));
    }

    #[test]
    fn precedence_is_a_total_preorder(a in tag(), b in tag(), c in tag()) {
        if let (Ok(a), Ok(b), Ok(c)) =
            (Version::parse_loose(&a), Version::parse_loose(&b), Version::parse_loose(&c))
        {
            prop_assert_eq!(a.precedence(&b), b.precedence(&a).reverse());
            if a.precedence(&b) != Ordering::Greater && b.precedence(&c) != Ordering::Greater {
                prop_assert_ne!(a.precedence(&c), Ordering::Greater);
            }
        }
    }
}
