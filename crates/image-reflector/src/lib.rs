//! image-reflector: registry scanning, the tag store and policy evaluation.

pub mod policy;
pub mod select;

pub mod reference;
pub mod registry;
pub mod store;
