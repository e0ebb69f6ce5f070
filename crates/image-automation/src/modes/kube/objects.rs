//! The objects of one run, read from the API server before the core runs (the core's
//! `Objects` is a snapshot).

use super::*;
use crate::git::provider::KubeServiceAccounts;

fn read_error(
    what: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> ApplyError {
    let (namespace, name) = (namespace.to_owned(), name.to_owned());
    move |source| ApplyError::Read {
        what,
        namespace,
        name,
        source,
    }
}

/// Reads what a run of `obj` needs: its GitRepository, that one's secretRef and
/// proxySecretRef, and the signing key Secret. Missing objects stay missing (the core
/// reports them); other API errors fail the attempt.
pub(super) async fn read_objects(
    client: &Client,
    obj: &ImageUpdateAutomation,
    no_cross_namespace_refs: bool,
) -> Result<ObjectMap, ApplyError> {
    let mut out =
        ObjectMap::default().with_service_accounts(Arc::new(KubeServiceAccounts(client.clone())));
    let namespace = key_of(obj).0;
    let source = &obj.spec.source_ref;
    let repo_ns = source
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| namespace.clone());
    let mut secrets: Vec<Key> = Vec::new();
    // A denied cross-namespace reference is not read at all (the core stalls on it).
    let denied = no_cross_namespace_refs && repo_ns != namespace;
    if !denied && !source.name.is_empty() {
        let api: Api<GitRepository> = Api::namespaced(client.clone(), &repo_ns);
        let repo = api.get_opt(&source.name).await.map_err(read_error(
            "GitRepository",
            &repo_ns,
            &source.name,
        ))?;
        if let Some(repo) = repo {
            for r in [&repo.spec.secret_ref, &repo.spec.proxy_secret_ref]
                .into_iter()
                .flatten()
            {
                secrets.push((repo_ns.clone(), r.name.clone()));
            }
            out.repositories
                .insert((repo_ns.clone(), source.name.clone()), repo);
        }
    }
    if let Some(key) = obj
        .spec
        .git
        .as_ref()
        .and_then(|g| g.commit.signing_key.as_ref())
    {
        secrets.push((namespace.clone(), key.secret_ref.name.clone()));
    }
    for (ns, name) in secrets {
        if name.is_empty() || out.has_secret(&(ns.clone(), name.clone())) {
            continue;
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let secret = api
            .get_opt(&name)
            .await
            .map_err(read_error("Secret", &ns, &name))?;
        if let Some(secret) = secret {
            let data = kube_support::manifests::secret_of(secret).data;
            out.insert_secret((ns, name), data);
        }
    }
    Ok(out)
}
