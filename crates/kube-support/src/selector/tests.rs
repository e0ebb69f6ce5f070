use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(s: &str) -> LabelSelector {
    s.parse().unwrap()
}

#[test]
fn empty_matches_everything() {
    assert!(sel("").matches(&labels(&[])));
    assert!(sel("  ").is_empty());
}

#[test]
fn equality_based() {
    let l = labels(&[("app", "web"), ("tier", "front")]);
    assert!(sel("app=web").matches(&l));
    assert!(sel("app==web").matches(&l));
    assert!(sel("app = web , tier=front").matches(&l));
    assert!(!sel("app=api").matches(&l));
    assert!(sel("app!=api").matches(&l));
    assert!(!sel("app!=web").matches(&l));
    // != matches objects without the label, as in Kubernetes.
    assert!(sel("env!=prod").matches(&l));
    assert!(!sel("app=web,tier=back").matches(&l));
}

#[test]
fn set_based_and_existence() {
    let l = labels(&[("env", "prod"), ("team", "a")]);
    assert!(sel("env in (prod, staging)").matches(&l));
    assert!(!sel("env in (dev)").matches(&l));
    assert!(sel("env notin (dev,staging)").matches(&l));
    assert!(!sel("env notin (prod)").matches(&l));
    assert!(sel("missing notin (x)").matches(&l));
    assert!(!sel("missing in (x)").matches(&l));
    assert!(sel("team").matches(&l));
    assert!(!sel("!team").matches(&l));
    assert!(sel("!missing,env in (prod),team=a").matches(&l));
}

#[test]
fn numeric_comparisons() {
    let l = labels(&[("replicas", "3")]);
    assert!(sel("replicas>2").matches(&l));
    assert!(!sel("replicas<3").matches(&l));
    assert!(!sel("missing>0").matches(&l));
}

#[test]
fn prefixed_keys_and_empty_values() {
    let l = labels(&[("app.kubernetes.io/name", "web"), ("flag", "")]);
    assert!(sel("app.kubernetes.io/name=web").matches(&l));
    assert!(sel("flag=").matches(&l));
    assert!(sel("flag in (,x)").matches(&l));
}

#[test]
fn rejects_invalid() {
    for bad in INVALID_EXAMPLES {
        assert!(bad.parse::<LabelSelector>().is_err(), "accepted {bad:?}");
    }
}

#[test]
fn display_round_trips() {
    let s = sel("a=b,c!=d,e in (x,y),f notin (z),g,!h,i>1,j<2");
    assert_eq!(s.to_string().parse::<LabelSelector>().unwrap(), s);
}
