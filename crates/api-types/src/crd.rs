//! The CustomResourceDefinitions, assembled from the types.
//!
//! Flux served `v1beta1`, `v1beta2` and `v1` of the image API over the years. We serve all
//! three from one superset schema with `conversion: None`, so a manifest of any era applies
//! unchanged; `v1` is the storage version. Only the `kubectl get` columns differ per version.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionVersion,
    CustomResourceSubresourceStatus, CustomResourceSubresources, JSON, JSONSchemaProps,
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, ValidationRule,
};
use kube::CustomResourceExt;
use serde_json::json;

use crate::git_repository::GitRepository;
use crate::image_policy::ImagePolicy;
use crate::image_repository::ImageRepository;
use crate::image_update_automation::ImageUpdateAutomation;

/// Versions served besides the storage version `v1`, oldest last.
pub const LEGACY_VERSIONS: [&str; 2] = ["v1beta2", "v1beta1"];

/// The CRDs image-reflector owns: ImageRepository and ImagePolicy.
pub fn reflector_crds() -> Vec<CustomResourceDefinition> {
    vec![
        image_crd(ImageRepository::crd()),
        image_crd(ImagePolicy::crd()),
    ]
}

/// The CRD image-automation owns: ImageUpdateAutomation.
pub fn automation_crds() -> Vec<CustomResourceDefinition> {
    vec![image_crd(ImageUpdateAutomation::crd())]
}

/// A stand-in for source-controller's GitRepository CRD, for test clusters without Flux.
/// Only the fields the automation reads are typed; the rest are preserved as given.
pub fn git_repository_test_crd() -> CustomResourceDefinition {
    let mut crd = GitRepository::crd();
    for version in &mut crd.spec.versions {
        if let Some(root) = root_schema(version) {
            root.description = Some(
                "GitRepository as source-controller serves it; a test stand-in with only the \
                 fields image-automation reads typed."
                    .into(),
            );
            make_portable(root);
        }
        if let Some(spec) = spec_schema(version) {
            spec.x_kubernetes_preserve_unknown_fields = Some(true);
        }
        if let Some(root) = root_schema(version) {
            let status = JSONSchemaProps {
                type_: Some("object".into()),
                x_kubernetes_preserve_unknown_fields: Some(true),
                ..Default::default()
            };
            root.properties
                .get_or_insert_default()
                .insert("status".into(), status);
        }
        version.subresources = Some(CustomResourceSubresources {
            status: Some(CustomResourceSubresourceStatus(json!({}))),
            ..Default::default()
        });
    }
    crd
}

/// Adds Flux's CRD conventions to a derived v1 CRD and the legacy versions beside it.
fn image_crd(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let kind = crd.spec.names.kind.clone();
    for version in &mut crd.spec.versions {
        if let Some(root) = root_schema(version) {
            root.description = Some(format!(
                "{kind} is the Schema for the {} API.",
                crd.spec.names.plural
            ));
        }
    }
    crd.metadata.annotations.get_or_insert_default().insert(
        // Flux's CRDs opt out of kustomize-controller's variable substitution, so `${...}`
        // in descriptions and defaults is never rewritten.
        "kustomize.toolkit.fluxcd.io/substitute".into(),
        "disabled".into(),
    );
    let Some(mut storage) = crd.spec.versions.pop() else {
        return crd;
    };
    if let Some(root) = root_schema(&mut storage) {
        make_portable(root);
        declare_as_flux(&kind, root);
    }
    if let Some(status) = root_schema(&mut storage).and_then(|root| {
        root.properties
            .as_mut()
            .and_then(|properties| properties.get_mut("status"))
    }) {
        // Flux's CRDs default a new object's status so `observedGeneration` starts at -1.
        status.default = Some(JSON(json!({"observedGeneration": -1})));
    }
    storage.storage = true;
    storage.served = true;
    let mut versions = vec![storage.clone()];
    for name in LEGACY_VERSIONS {
        let mut legacy = storage.clone();
        legacy.name = name.into();
        legacy.storage = false;
        legacy.deprecated = Some(true);
        legacy.additional_printer_columns = legacy_printer_columns(&kind);
        legacy.deprecation_warning = Some(format!(
            "image.toolkit.fluxcd.io/{name} {kind} is deprecated, upgrade to v1"
        ));
        versions.push(legacy);
    }
    crd.spec.versions = versions;
    crd
}

/// The `kubectl get` columns Flux printed for `v1beta2` and `v1beta1`, from the releases in
/// which each was the storage version (both printed the same ones). Printer columns are per
/// version, so the shared schema does not constrain them. `None` keeps only NAME and AGE.
fn legacy_printer_columns(kind: &str) -> Option<Vec<CustomResourceColumnDefinition>> {
    let columns: &[(&str, &str)] = match kind {
        "ImageRepository" => &[
            ("Last scan", ".status.lastScanResult.scanTime"),
            ("Tags", ".status.lastScanResult.tagCount"),
        ],
        "ImagePolicy" => &[("LatestImage", ".status.latestImage")],
        "ImageUpdateAutomation" => &[("Last run", ".status.lastAutomationRunTime")],
        _ => return None,
    };
    Some(
        columns
            .iter()
            .map(|(name, json_path)| CustomResourceColumnDefinition {
                name: (*name).into(),
                // Flux typed all of these `string`, the tag count included.
                type_: "string".into(),
                json_path: (*json_path).into(),
                ..Default::default()
            })
            .collect(),
    )
}

/// metav1.Condition's kubebuilder markers, which k8s-openapi's schema leaves out.
pub const CONDITION_TYPE_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$";
/// metav1.Condition's `reason` pattern.
pub const CONDITION_REASON_PATTERN: &str = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$";

/// ImagePolicy's CEL rules and messages, as Flux's CRD declares them.
pub const IMAGE_POLICY_RULES: [(&str, &str); 2] = [
    (
        "!has(self.interval) || (has(self.digestReflectionPolicy) && self.digestReflectionPolicy == 'Always')",
        "spec.interval is only accepted when spec.digestReflectionPolicy is set to 'Always'",
    ),
    (
        "has(self.interval) || !has(self.digestReflectionPolicy) || self.digestReflectionPolicy != 'Always'",
        "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'",
    ),
];

/// Adds the validation Flux's CRDs declare and the derived schema lacks.
fn declare_as_flux(kind: &str, root: &mut JSONSchemaProps) {
    // Flux's CRDs leave `spec` optional (the spec types read a missing one as their default:
    // see `optional_spec`).
    if let Some(required) = root.required.as_mut() {
        required.retain(|name| name != "spec");
        if required.is_empty() {
            root.required = None;
        }
    }
    if let Some(conditions) = property(root, &["status", "conditions"])
        && let Some(JSONSchemaPropsOrArray::Schema(item)) = conditions.items.as_mut()
    {
        declare_condition(item);
    }
    if kind == "ImageRepository"
        && let Some(scan) = property(root, &["status", "lastScanResult"])
    {
        // Required and not defaulted, or the default would satisfy the requirement.
        scan.required = Some(vec!["tagCount".into()]);
        if let Some(tag_count) = property(scan, &["tagCount"]) {
            tag_count.default = None;
        }
    }
    if kind == "ImagePolicy"
        && let Some(spec) = property(root, &["spec"])
    {
        // CEL arrived in Kubernetes 1.25; older servers ignore the rules and the reflector
        // enforces both at reconcile time with the same messages.
        spec.x_kubernetes_validations = Some(
            IMAGE_POLICY_RULES
                .iter()
                .map(|(rule, message)| ValidationRule {
                    rule: (*rule).into(),
                    message: Some((*message).into()),
                    ..Default::default()
                })
                .collect(),
        );
    }
    if kind == "ImageUpdateAutomation"
        && let Some(selector) = property(root, &["spec", "policySelector"])
    {
        // As metav1.LabelSelector declares it: server-side apply replaces it whole.
        selector.x_kubernetes_map_type = Some("atomic".into());
        if let Some(expressions) = property(selector, &["matchExpressions"]) {
            expressions.x_kubernetes_list_type = Some("atomic".into());
            if let Some(JSONSchemaPropsOrArray::Schema(item)) = expressions.items.as_mut()
                && let Some(values) = property(item, &["values"])
            {
                values.x_kubernetes_list_type = Some("atomic".into());
            }
        }
    }
}

fn declare_condition(condition: &mut JSONSchemaProps) {
    if let Some(type_) = property(condition, &["type"]) {
        type_.pattern = Some(CONDITION_TYPE_PATTERN.into());
        type_.max_length = Some(316);
    }
    if let Some(reason) = property(condition, &["reason"]) {
        reason.pattern = Some(CONDITION_REASON_PATTERN.into());
        reason.min_length = Some(1);
        reason.max_length = Some(1024);
    }
    if let Some(message) = property(condition, &["message"]) {
        message.max_length = Some(32768);
    }
    if let Some(status) = property(condition, &["status"]) {
        status.enum_ = Some(
            ["True", "False", "Unknown"]
                .map(|value| JSON(json!(value)))
                .to_vec(),
        );
    }
    if let Some(generation) = property(condition, &["observedGeneration"]) {
        generation.minimum = Some(0.0);
    }
    if let Some(time) = property(condition, &["lastTransitionTime"]) {
        time.format = Some("date-time".into());
    }
}

/// The schema at `path` below `schema`, following `properties`.
fn property<'a>(schema: &'a mut JSONSchemaProps, path: &[&str]) -> Option<&'a mut JSONSchemaProps> {
    let mut at = schema;
    for name in path {
        at = at.properties.as_mut()?.get_mut(*name)?;
    }
    Some(at)
}

/// Rewrites what the derived schema says in ways older API servers reject (the testbed
/// runs Kubernetes 1.20):
/// - `null` in an `enum` (from optional enums; `nullable: true` already admits null);
/// - empty-string defaults, which 1.20 reads as `null` and refuses for a string field.
///   Dropping them changes nothing: a missing field and an empty one mean the same here.
fn make_portable(schema: &mut JSONSchemaProps) {
    if let Some(values) = schema.enum_.as_mut() {
        values.retain(|value| !value.0.is_null());
    }
    if schema
        .default
        .as_ref()
        .is_some_and(|d| d.0.as_str() == Some(""))
    {
        schema.default = None;
    }
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        make_portable(child);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(item)) = schema.items.as_mut() {
        make_portable(item);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = schema.additional_properties.as_mut() {
        make_portable(values);
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of] {
        for child in list.iter_mut().flatten() {
            make_portable(child);
        }
    }
}

fn root_schema(version: &mut CustomResourceDefinitionVersion) -> Option<&mut JSONSchemaProps> {
    version.schema.as_mut()?.open_api_v3_schema.as_mut()
}

fn spec_schema(version: &mut CustomResourceDefinitionVersion) -> Option<&mut JSONSchemaProps> {
    root_schema(version)?.properties.as_mut()?.get_mut("spec")
}
