//! Every manifest under tests/manifests (the seed how-to's, and examples of each Flux API
//! era) deserialises into our types without losing a field, and defaults apply.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};

use api_types::{
    GitRepository, ImagePolicy, ImageRepository, ImageUpdateAutomation, ReflectionPolicy,
    RegistryProvider, SortOrder, UpdateStrategyName,
};
use serde_json::Value;

fn manifest_paths() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 16, "fixtures missing from {}", dir.display());
    paths
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load_named(name: &str) -> Value {
    load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/manifests")
            .join(name),
    )
}

/// Deserialises by kind into our typed object and serialises it back.
fn round_trip(input: &Value) -> Value {
    fn through<T: serde::de::DeserializeOwned + serde::Serialize>(input: &Value) -> Value {
        let typed: T = serde_json::from_value(input.clone()).unwrap();
        serde_json::to_value(&typed).unwrap()
    }
    match input["kind"].as_str().unwrap() {
        "ImageRepository" => through::<ImageRepository>(input),
        "ImagePolicy" => through::<ImagePolicy>(input),
        "ImageUpdateAutomation" => through::<ImageUpdateAutomation>(input),
        "GitRepository" => through::<GitRepository>(input),
        other => panic!("no type for kind {other}"),
    }
}

/// Asserts every value in `input` appears unchanged at the same place in `output`.
fn assert_contained(input: &Value, output: &Value, at: &str) {
    match (input, output) {
        (Value::Object(want), Value::Object(got)) => {
            for (key, value) in want {
                let Some(found) = got.get(key) else {
                    panic!("{at}.{key} was lost (input {value})");
                };
                assert_contained(value, found, &format!("{at}.{key}"));
            }
        }
        (Value::Array(want), Value::Array(got)) => {
            assert_eq!(want.len(), got.len(), "{at}: list length changed");
            for (index, (w, g)) in want.iter().zip(got).enumerate() {
                assert_contained(w, g, &format!("{at}[{index}]"));
            }
        }
        _ => assert_eq!(input, output, "{at} changed"),
    }
}

#[test]
fn every_manifest_round_trips_without_loss() {
    for path in manifest_paths() {
        let mut input = load(&path);
        let output = round_trip(&input);
        // The typed objects always carry the storage version: the versions differ in name only.
        let group = input["apiVersion"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            output["apiVersion"].as_str().unwrap(),
            format!("{group}/v1"),
            "{}",
            path.display()
        );
        input.as_object_mut().unwrap().remove("apiVersion");
        assert_contained(
            &input,
            &output,
            &path.file_name().unwrap().to_string_lossy(),
        );
        // A second trip is a fixed point.
        assert_eq!(round_trip(&output), output, "{}", path.display());
    }
}

#[test]
fn seed_repository_gets_flux_defaults() {
    let repo: ImageRepository =
        serde_json::from_value(load_named("seed-v1beta2-imagerepository.yaml")).unwrap();
    assert_eq!(repo.spec.image, "registry.example.com/team/checkout");
    assert_eq!(repo.spec.interval, "5m");
    assert_eq!(repo.spec.secret_ref.as_ref().unwrap().name, "registry-pull");
    assert_eq!(repo.spec.exclusion_list, vec!["^.*\\.sig$"]);
    assert_eq!(repo.spec.provider, RegistryProvider::Generic);
    assert!(!repo.spec.insecure && !repo.spec.suspend);
    assert_eq!(repo.spec.timeout, None);
}

#[test]
fn seed_policies_keep_range_and_filter() {
    let semver: ImagePolicy =
        serde_json::from_value(load_named("seed-v1beta2-imagepolicy-semver.yaml")).unwrap();
    assert_eq!(
        semver.spec.policy.semver.as_ref().unwrap().range,
        ">=1.0.0 <2.0.0"
    );
    assert_eq!(semver.spec.image_repository_ref.name, "checkout");
    assert_eq!(semver.spec.image_repository_ref.namespace, None);
    assert_eq!(
        semver.spec.digest_reflection_policy,
        ReflectionPolicy::Never
    );

    let builds: ImagePolicy =
        serde_json::from_value(load_named("seed-v1beta2-imagepolicy-timestamp.yaml")).unwrap();
    let filter = builds.spec.filter_tags.as_ref().unwrap();
    assert_eq!(
        filter.pattern,
        r"^(?P<timestamp>[0-9]{4}\.[0-9]{2}\.[0-9]{2})-[a-f0-9]+$"
    );
    assert_eq!(filter.extract, "$timestamp");
    assert_eq!(
        builds.spec.policy.alphabetical.as_ref().unwrap().order,
        SortOrder::Asc
    );
}

#[test]
fn seed_automation_keeps_template_bytes() {
    let automation: ImageUpdateAutomation =
        serde_json::from_value(load_named("seed-v1beta1-imageupdateautomation.yaml")).unwrap();
    let git = automation.spec.git.as_ref().unwrap();
    assert_eq!(
        git.commit.message_template.as_deref(),
        Some("Auto-update images\n{{ range .Updated.Images }}\n- {{.}}\n{{ end }}\n")
    );
    assert_eq!(
        git.checkout.as_ref().unwrap().reference.branch.as_deref(),
        Some("main")
    );
    assert_eq!(git.push.as_ref().unwrap().branch.as_deref(), Some("main"));
    let update = automation.spec.update.as_ref().unwrap();
    assert_eq!(update.strategy, UpdateStrategyName::Setters);
    assert_eq!(update.path.as_deref(), Some("./clusters/prod"));
}

#[test]
fn omitted_update_and_orders_default_like_flux() {
    let status_example: ImageUpdateAutomation =
        serde_json::from_value(load_named("v1-imageupdateautomation-status.yaml")).unwrap();
    let update = status_example.spec.update.as_ref().unwrap();
    assert_eq!(
        (update.strategy, update.path.as_deref()),
        (UpdateStrategyName::Setters, None)
    );

    let full: ImageUpdateAutomation =
        serde_json::from_value(load_named("v1-imageupdateautomation-full.yaml")).unwrap();
    assert_eq!(
        full.spec.update.as_ref().unwrap().strategy,
        UpdateStrategyName::Setters
    );
    let commit = &full.spec.git.as_ref().unwrap().commit;
    assert_eq!(commit.author.name, None);
    assert_eq!(
        commit.signing_key.as_ref().unwrap().key_type,
        Some(api_types::SigningKeyType::Ssh)
    );

    let policy: ImagePolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1",
        "kind": "ImagePolicy",
        "metadata": {"name": "p"},
        "spec": {"imageRepositoryRef": {"name": "r"}, "policy": {"numerical": {}}}
    }))
    .unwrap();
    assert_eq!(
        policy.spec.policy.numerical.as_ref().unwrap().order,
        SortOrder::Asc
    );
}

#[test]
fn unknown_enum_values_are_rejected() {
    let bad = serde_json::json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1",
        "kind": "ImagePolicy",
        "metadata": {"name": "p"},
        "spec": {"imageRepositoryRef": {"name": "r"}, "policy": {"alphabetical": {"order": "up"}}}
    });
    let err = serde_json::from_value::<ImagePolicy>(bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `up`"), "{err}");
}
