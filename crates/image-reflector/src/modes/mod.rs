//! `image-reflector serve` on the controller kit (`kube-support`): [`standalone`]
//! (`--manifests DIR`) and [`kube`] (against a cluster), both over the [`crate::reconcile`]
//! cores.

pub mod kube;
pub mod standalone;

/// The kind name of ImageRepositories (metric labels, logs, manifests).
pub const REPOSITORY: &str = "ImageRepository";
/// The kind name of ImagePolicies.
pub const POLICY: &str = "ImagePolicy";

/// The two kinds both modes reconcile (part of their schedule keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Repository,
    Policy,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Repository => REPOSITORY,
            Self::Policy => POLICY,
        }
    }
}
