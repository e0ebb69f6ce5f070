//! A small Flux-style repository whose manifests carry image policy markers.

/// The markers [`seed_manifests`] places: `(policy "NAMESPACE:NAME", image path under
/// the registry host, current tag)`.
pub const FIXTURE_POLICIES: &[(&str, &str, &str)] = &[
    ("flux-system:checkout", "team/checkout", "1.2.3"),
    ("flux-system:sidecar", "team/sidecar", "0.9.0"),
    ("flux-system:payments", "team/payments", "0.4.1"),
    (
        "flux-system:checkout-staging",
        "team/checkout",
        "1.3.0-rc.1",
    ),
];

/// Files of a Flux-style repository, images under `registry_host` (e.g. `127.0.0.1:5000`):
///
/// - `clusters/prod/checkout.yaml`: a Deployment with two containers, each image marked
///   with a whole-reference setter (`flux-system:checkout`, `flux-system:sidecar`);
/// - `clusters/prod/payments.yaml`: a HelmRelease whose values split the image into
///   `repository` (`flux-system:payments:name`) and `tag` (`flux-system:payments:tag`);
/// - `clusters/staging/checkout.yaml`: a Deployment marked `flux-system:checkout-staging`;
/// - `clusters/prod/kustomization.yaml`, `clusters/prod/configmap.yaml` (an image
///   reference without a marker, which must stay as it is) and `README.md`.
///
/// Pass to [`super::BareRepos::create`].
pub fn seed_manifests(registry_host: &str) -> Vec<(String, String)> {
    let r = registry_host.trim_end_matches('/');
    let files = [
        (
            "README.md",
            "# fleet\n\nManifests reconciled by Flux; image tags are updated by automation.\n"
                .to_string(),
        ),
        (
            "clusters/prod/kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1beta1\n\
             kind: Kustomization\n\
             resources:\n\
             \x20 - checkout.yaml\n\
             \x20 - payments.yaml\n\
             \x20 - configmap.yaml\n"
                .to_string(),
        ),
        (
            "clusters/prod/checkout.yaml",
            format!(
                "apiVersion: apps/v1\n\
                 kind: Deployment\n\
                 metadata:\n\
                 \x20 name: checkout\n\
                 \x20 namespace: prod\n\
                 spec:\n\
                 \x20 replicas: 2\n\
                 \x20 selector:\n\
                 \x20   matchLabels:\n\
                 \x20     app: checkout\n\
                 \x20 template:\n\
                 \x20   metadata:\n\
                 \x20     labels:\n\
                 \x20       app: checkout\n\
                 \x20   spec:\n\
                 \x20     containers:\n\
                 \x20       - name: checkout\n\
                 \x20         image: {r}/team/checkout:1.2.3 # {{\"$imagepolicy\": \"flux-system:checkout\"}}\n\
                 \x20         ports:\n\
                 \x20           - containerPort: 8080\n\
                 \x20       - name: sidecar\n\
                 \x20         image: {r}/team/sidecar:0.9.0 # {{\"$imagepolicy\": \"flux-system:sidecar\"}}\n"
            ),
        ),
        (
            "clusters/prod/payments.yaml",
            format!(
                "apiVersion: helm.toolkit.fluxcd.io/v2\n\
                 kind: HelmRelease\n\
                 metadata:\n\
                 \x20 name: payments\n\
                 \x20 namespace: prod\n\
                 spec:\n\
                 \x20 interval: 10m\n\
                 \x20 chart:\n\
                 \x20   spec:\n\
                 \x20     chart: payments\n\
                 \x20     sourceRef:\n\
                 \x20       kind: HelmRepository\n\
                 \x20       name: team\n\
                 \x20 values:\n\
                 \x20   image:\n\
                 \x20     repository: {r}/team/payments # {{\"$imagepolicy\": \"flux-system:payments:name\"}}\n\
                 \x20     tag: 0.4.1 # {{\"$imagepolicy\": \"flux-system:payments:tag\"}}\n"
            ),
        ),
        (
            "clusters/prod/configmap.yaml",
            format!(
                "apiVersion: v1\n\
                 kind: ConfigMap\n\
                 metadata:\n\
                 \x20 name: settings\n\
                 \x20 namespace: prod\n\
                 data:\n\
                 \x20 # No marker: automation must leave this line alone.\n\
                 \x20 debugImage: {r}/team/checkout:1.2.3\n"
            ),
        ),
        (
            "clusters/staging/checkout.yaml",
            format!(
                "apiVersion: apps/v1\n\
                 kind: Deployment\n\
                 metadata:\n\
                 \x20 name: checkout\n\
                 \x20 namespace: staging\n\
                 spec:\n\
                 \x20 selector:\n\
                 \x20   matchLabels:\n\
                 \x20     app: checkout\n\
                 \x20 template:\n\
                 \x20   metadata:\n\
                 \x20     labels:\n\
                 \x20       app: checkout\n\
                 \x20   spec:\n\
                 \x20     containers:\n\
                 \x20       - name: checkout\n\
                 \x20         image: {r}/team/checkout:1.3.0-rc.1 # {{\"$imagepolicy\": \"flux-system:checkout-staging\"}}\n"
            ),
        ),
    ];
    files
        .into_iter()
        .map(|(path, contents)| (path.to_string(), contents))
        .collect()
}
