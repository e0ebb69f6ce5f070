//! Snapshot of the generated CRDs: any schema change shows up as a reviewable diff.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use api_types::crd;

#[test]
fn generated_crds_match_snapshots() {
    let mut all = crd::reflector_crds();
    all.extend(crd::automation_crds());
    all.push(crd::git_repository_test_crd());
    for crd in all {
        let name = crd.metadata.name.clone().unwrap();
        insta::assert_yaml_snapshot!(name, crd);
    }
}

#[test]
fn image_crds_serve_three_versions_with_v1_stored() {
    let mut all = crd::reflector_crds();
    all.extend(crd::automation_crds());
    assert_eq!(all.len(), 3);
    for crd in all {
        let versions: Vec<(&str, bool, bool)> = crd
            .spec
            .versions
            .iter()
            .map(|v| (v.name.as_str(), v.served, v.storage))
            .collect();
        assert_eq!(
            versions,
            [
                ("v1", true, true),
                ("v1beta2", true, false),
                ("v1beta1", true, false)
            ]
        );
        // Legacy versions print the columns Flux printed for them; v1 prints its own.
        let columns: Vec<Vec<&str>> = crd
            .spec
            .versions
            .iter()
            .map(|v| {
                v.additional_printer_columns
                    .iter()
                    .flatten()
                    .map(|c| c.name.as_str())
                    .collect()
            })
            .collect();
        let legacy: &[&str] = match crd.spec.names.kind.as_str() {
            "ImageRepository" => &["Last scan", "Tags"],
            "ImagePolicy" => &["LatestImage"],
            _ => &["Last run"],
        };
        assert_eq!(columns[1], legacy, "{}", crd.spec.names.kind);
        assert_eq!(columns[2], legacy, "{}", crd.spec.names.kind);
        assert_ne!(columns[0], legacy, "{}", crd.spec.names.kind);
        // One superset schema: the versions share it.
        let schemas: Vec<_> = crd.spec.versions.iter().map(|v| &v.schema).collect();
        assert!(schemas.windows(2).all(|pair| pair[0] == pair[1]));
        assert!(crd.spec.conversion.is_none());
        // CEL rules (Kubernetes 1.25+) only where Flux declares them: ImagePolicy's spec.
        let text = serde_json::to_string(&crd).unwrap();
        assert_eq!(
            text.matches("x-kubernetes-validations").count(),
            if crd.spec.names.kind == "ImagePolicy" {
                3
            } else {
                0
            },
            "{:?}",
            crd.metadata.name
        );
        // Kubernetes 1.20 rejects `null` in enums and empty-string defaults.
        assert!(
            !text.contains(",null]") && !text.contains("[null"),
            "{text}"
        );
        assert!(!text.contains(r#""default":"""#), "{text}");
    }
}
