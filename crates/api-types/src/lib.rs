//! Kubernetes API types shared by image-reflector and image-automation.
//!
//! Types only: no client, no runtime, no I/O. The Flux API group
//! `image.toolkit.fluxcd.io` is served as `v1` (storage), `v1beta2` and `v1beta1` from one
//! superset schema, so manifests written for any Flux release apply unchanged.

pub mod crd;
pub mod duration;
pub mod git_repository;
pub mod http_api;
pub mod image_policy;
pub mod image_repository;
pub mod image_update_automation;
pub mod meta;
mod optional_spec;

pub use git_repository::{GitRepository, GitRepositoryRef, GitRepositorySpec};
pub use image_policy::{
    AlphabeticalPolicy, ImagePolicy, ImagePolicyChoice, ImagePolicySpec, ImagePolicyStatus,
    ImageRef, NumericalPolicy, ReflectionPolicy, SemVerPolicy, SortOrder, TagFilter,
};
pub use image_repository::{
    AccessFrom, ImageRepository, ImageRepositorySpec, ImageRepositoryStatus, NamespaceSelector,
    RegistryProvider, ScanResult,
};
pub use image_update_automation::{
    CommitSpec, CommitUser, CrossNamespaceSourceReference, GitCheckoutSpec, GitSpec,
    ImageUpdateAutomation, ImageUpdateAutomationSpec, ImageUpdateAutomationStatus, PushSpec,
    SigningKey, SigningKeyType, SourceKind, UpdateStrategy, UpdateStrategyName,
};
pub use meta::{LocalObjectReference, NamespacedObjectReference};
pub use optional_spec::OptionalSpec;

/// The API group of the image automation objects.
pub const GROUP: &str = "image.toolkit.fluxcd.io";
