//! Cloud and forge identity: the tokens Flux obtains for `provider: aws|gcp|azure` on an
//! ImageRepository and `provider: github` on a GitRepository.
//!
//! Shape: pure functions build each HTTP request ([`http::HttpRequest`]) and parse each
//! response; [`http::HttpClient`] is the only I/O (10 s timeout, as Flux). Endpoints come from
//! [`config::Endpoints`], read from the environment in one place ([`config::Endpoints::from_env`])
//! so tests and private clouds can point every call at a local server.
//!
//! - [`registry`]: which cloud a registry host belongs to, and its region or scope input.
//! - [`login`]: the registry login (username, password, expiry) and the cache-lifetime rule.
//! - [`cache`]: credentials cached per identity and registry until shortly before expiry.
//! - [`metrics`]: Flux's `gotk_token_*` series.
//! - [`aws`]: credential sources, SigV4, STS AssumeRoleWithWebIdentity, ECR tokens.
//! - [`gcp`], [`azure`], [`github`]: the other providers' flows.
//!
//! No secret (token, password, key) ever appears in an error message or `Debug` output:
//! secrets travel as [`secret::Secret`].

pub mod aws;
pub mod azure;
pub mod cache;
pub mod config;
pub mod credentials;
pub mod error;
pub mod gcp;
pub mod github;
pub mod http;
pub mod login;
pub mod metrics;
pub mod registry;
pub mod secret;
pub mod time;
pub mod workload_identity;

pub use credentials::{RegistryCredentials, ServiceAccountRef};
pub use error::{Error, Provider, Result, Step};
pub use login::RegistryLogin;
pub use secret::Secret;
