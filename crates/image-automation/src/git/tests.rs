use super::*;

#[test]
fn semver_checkout_picks_the_highest_matching_tag() {
    let tags = [
        "v1.0.0",
        "v1.2.0",
        "v2.0.0-rc.1",
        "v1.10.0",
        "latest",
        "v1.9",
        "release-1.11.0",
    ];
    let pick = |range: &str| {
        let constraint = semver_constraint(range).map_err(|e| e.to_string())?;
        Ok::<_, String>(highest_matching_tag(&constraint, tags))
    };
    // Numeric, not lexical: v1.10.0 > v1.2.0; the pre-release of 2.0.0 is outside.
    assert_eq!(pick(">=1.0.0 <2.0.0"), Ok(Some("v1.10.0")));
    assert_eq!(pick("~1.2"), Ok(Some("v1.2.0")));
    // Pre-releases only match a range that names one (Masterminds).
    assert_eq!(pick(">=2.0.0-0"), Ok(Some("v2.0.0-rc.1")));
    assert_eq!(pick(">=3.0.0"), Ok(None));
    // Equal precedence (build metadata): a deterministic choice.
    let constraint = semver_constraint("1.x").map_err(|e| e.to_string());
    assert_eq!(
        constraint.map(|c| highest_matching_tag(&c, ["1.0.0+b", "1.0.0+a"])),
        Ok(Some("1.0.0+b"))
    );
    let bad = semver_constraint("not a range");
    assert!(
        matches!(&bad, Err(e @ GitError::InvalidConfig(m)) if e.is_stall() && m.contains("spec.ref.semver")),
        "{bad:?}"
    );
}

#[test]
fn checkout_precedence() {
    let all = GitRef {
        branch: Some("b".into()),
        tag: Some("t".into()),
        semver: Some("1.x".into()),
        name: Some("refs/pull/1/head".into()),
        commit: Some("c".into()),
    };
    assert!(matches!(all.checkout(), Checkout::Commit { .. }));
    let no_commit = GitRef {
        commit: None,
        ..all.clone()
    };
    assert_eq!(
        no_commit.checkout(),
        Checkout::Name("refs/pull/1/head".into())
    );
    let no_name = GitRef {
        name: None,
        ..no_commit
    };
    assert_eq!(no_name.checkout(), Checkout::Tag("t".into()));
    let no_tag = GitRef {
        tag: None,
        ..no_name
    };
    assert_eq!(no_tag.checkout(), Checkout::Semver("1.x".into()));
    assert!(matches!(
        no_tag.checkout().remote_ref(),
        Err(GitError::InvalidConfig(_))
    ));
    let branch = GitRef {
        semver: None,
        ..no_tag
    };
    assert_eq!(branch.checkout(), Checkout::Branch("b".into()));
    assert_eq!(
        GitRef::default().checkout(),
        Checkout::Branch("master".into())
    );
    assert_eq!(
        GitRef::default().checkout_branch().as_deref(),
        Some("master")
    );
    assert_eq!(
        GitRef {
            tag: Some("t".into()),
            ..GitRef::default()
        }
        .checkout_branch(),
        None
    );
}

#[test]
fn ref_names_are_checked() {
    assert!(check_ref_part("b", "main").is_ok());
    assert!(check_ref_part("b", "feature/x").is_ok());
    assert!(check_ref_part("b", "--upload-pack=x").is_err());
    assert!(check_ref_part("b", "a b").is_err());
    assert!(check_ref_part("b", "a..b").is_err());
}

#[test]
fn cache_dir_is_stable_per_url() {
    let c = GitCache::new("/s");
    assert_eq!(
        c.repo_dir("https://h/r.git"),
        c.repo_dir("https://h/r.git/")
    );
    assert_ne!(c.repo_dir("https://h/r.git"), c.repo_dir("https://h/s.git"));
    assert!(c.repo_dir("x").starts_with("/s/git"));
}
