use super::state::unescape;
use super::*;

#[test]
fn sparse_path_is_cleaned_like_flux_and_matches_whole_components() {
    assert_eq!(
        sparse_path("./clusters//prod/").as_deref(),
        Some("clusters/prod")
    );
    assert_eq!(sparse_path("/a/../b/./c").as_deref(), Some("b/c"));
    assert_eq!(sparse_path("../../x").as_deref(), Some("x"));
    for root in ["", ".", "./", "/", "a/..", "../.."] {
        assert_eq!(sparse_path(root), None, "{root:?} is the whole tree");
    }
    assert!(in_sparse_set("clusters/prod", "clusters/prod"));
    assert!(in_sparse_set("clusters/prod/a.yaml", "clusters/prod"));
    assert!(!in_sparse_set(
        "clusters/production/a.yaml",
        "clusters/prod"
    ));
    assert!(!in_sparse_set("clusters", "clusters/prod"));
}

#[test]
fn state_lines_round_trip() {
    let e = Entry {
        path: "a dir/we\\ird\nname.yaml".into(),
        kind: Kind::Exec,
        id: ObjectId::empty_blob(gix::hash::Kind::Sha1),
        stat: Stat {
            size: 12,
            mtime: (1_700_000_000, 5),
            ctime: (1_700_000_001, 6),
            ino: 42,
        },
    };
    let s = &e.stat;
    let line = format!(
        "{} {} {} {} {} {} {} {} {}",
        e.kind.code(),
        e.id,
        s.size,
        s.mtime.0,
        s.mtime.1,
        s.ctime.0,
        s.ctime.1,
        s.ino,
        escape(&e.path)
    );
    assert!(!line.contains('\n'));
    let back = parse_entry(&line).unwrap();
    assert_eq!(back.path, e.path);
    assert_eq!(back.kind, e.kind);
    assert_eq!(back.id, e.id);
    assert_eq!(back.stat, e.stat);
    assert!(parse_entry("f nothex 1 2 3 4 5 6 p").is_none());
    assert!(unescape("bad\\q").is_none());
}
