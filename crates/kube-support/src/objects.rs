//! Helpers on the watched objects: the watcher config of `--watch-label-selector`, the
//! trigger fingerprint and the error category (the status write is
//! [`crate::driver::Context::write_status`]).

use std::collections::BTreeMap;

use cloud_identity::Secret;
use cloud_identity::workload_identity::{BoxFuture, ServiceAccounts};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Resource;
use kube::runtime::watcher;

/// The watcher config for a label selector as given (empty or blank: every object).
pub fn watcher_config(label_selector: &str) -> watcher::Config {
    let config = watcher::Config::default();
    match label_selector.trim() {
        "" => config,
        selector => config.labels(selector),
    }
}

/// What last triggered a reconcile of an object (its identity, generation and
/// `reconcile.fluxcd.io/requestedAt`): a new reconcile runs when this changes, so the
/// controllers' own status writes never trigger one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub uid: Option<String>,
    pub generation: Option<i64>,
    pub requested_at: Option<String>,
}

/// The object's current [`Fingerprint`].
pub fn fingerprint<K: Resource>(obj: &K) -> Fingerprint {
    let meta = obj.meta();
    Fingerprint {
        uid: meta.uid.clone(),
        generation: meta.generation,
        requested_at: meta.annotations.as_ref().and_then(|a| {
            a.get(api_types::meta::RECONCILE_REQUEST_ANNOTATION)
                .cloned()
        }),
    }
}

/// The controller action for a delay before the next run (`None`: on change).
pub fn action_after(delay: Option<std::time::Duration>) -> kube::runtime::controller::Action {
    use kube::runtime::controller::Action;
    delay.map_or_else(Action::await_change, Action::requeue)
}

/// The controller action that skips a reconcile, or `None` when it must run.
pub fn skip_action(skip: crate::schedule::Skip) -> Option<kube::runtime::controller::Action> {
    use crate::schedule::Skip;
    use kube::runtime::controller::Action;
    match skip {
        Skip::Run => None,
        Skip::AwaitChange => Some(Action::await_change()),
        Skip::RequeueAfter(delay) => Some(Action::requeue(delay)),
    }
}

/// What kind of failure an API call met, for metric labels and logs (as Stackable's
/// operators label errors): a stable, small set of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// 401/403: RBAC or credentials.
    NotAllowed,
    /// 404/409/422 and other 4xx: the request or the object.
    Invalid,
    /// 429 and 5xx: the API server is overloaded or failing.
    Unavailable,
    /// The connection, TLS or a timeout.
    Transport,
    /// Anything else (decoding, configuration).
    Other,
}

impl ErrorCategory {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAllowed => "not_allowed",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
            Self::Transport => "transport",
            Self::Other => "other",
        }
    }

    /// The category of a Kubernetes client error.
    pub fn of(error: &kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => match status.code {
                401 | 403 => Self::NotAllowed,
                429 | 500..=599 => Self::Unavailable,
                _ => Self::Invalid,
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => Self::Transport,
            _ => Self::Other,
        }
    }
}

impl std::fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// [`ServiceAccounts`] over the API server: `get` for the annotations, the `token`
/// subresource (TokenRequest) for the tokens.
#[derive(Clone)]
pub struct KubeServiceAccounts(pub kube::Client);

impl std::fmt::Debug for KubeServiceAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeServiceAccounts")
            .finish_non_exhaustive()
    }
}

impl ServiceAccounts for KubeServiceAccounts {
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>> {
        Box::pin(async move {
            let api: kube::Api<ServiceAccount> = kube::Api::namespaced(self.0.clone(), namespace);
            let found = api.get_opt(name).await.map_err(|e| e.to_string())?;
            Ok(found.map(|sa| sa.metadata.annotations.unwrap_or_default()))
        })
    }

    fn token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audiences: Vec<String>,
    ) -> BoxFuture<'a, Result<Secret, String>> {
        Box::pin(async move {
            let api: kube::Api<ServiceAccount> = kube::Api::namespaced(self.0.clone(), namespace);
            // No expirationSeconds: the API server's default (1h), as Flux asks.
            let request = TokenRequest {
                spec: Some(TokenRequestSpec {
                    audiences: Some(audiences),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let answer = api
                .create_token_request(name, &kube::api::PostParams::default(), &request)
                .await
                .map_err(|e| e.to_string())?;
            match answer.status.and_then(|status| status.token) {
                Some(token) if !token.is_empty() => Ok(Secret::new(token)),
                _ => Err("the API server answered without a token".to_string()),
            }
        })
    }
}
