//! What the cloud provider tests share: the manifests (an ImageRepository with a provider and
//! a `proxySecretRef`), `image-reflector serve` without ambient cloud credentials, and the
//! repository as the HTTP API shows it.

#![allow(dead_code)] // Each test file uses its own subset.

use std::path::Path;
use std::time::Duration;

use api_types::http_api::ImageRepositoryInfo;
use base64::Engine as _;
use testbed::controllers::{serve_manifests_command, start_serving};
use testbed::process::free_port;

use crate::serve_common::Serve;

pub const WAIT: Duration = Duration::from_secs(60);

/// Writes a proxy Secret (`address: proxy_url`) and the ImageRepository `podinfo` with
/// `provider` and `image`; `insecure` for plain-HTTP registries. `secretRef` names a Secret
/// that does not exist: ignored with a cloud provider, as in Flux.
pub fn write_manifests_for(
    dir: &Path,
    proxy_url: &str,
    provider: &str,
    image: &str,
    insecure: bool,
) {
    let address = base64::engine::general_purpose::STANDARD.encode(proxy_url);
    std::fs::write(
        dir.join("objects.yaml"),
        format!(
            "apiVersion: v1
kind: Secret
metadata:
  name: to-registry
  namespace: flux-system
type: Opaque
data:
  address: {address}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata:
  name: podinfo
  namespace: flux-system
spec:
  image: {image}
  interval: 5m
  provider: {provider}
  insecure: {insecure}
  proxySecretRef:
    name: to-registry
  # Ignored with a cloud provider, as in Flux: this Secret does not exist.
  secretRef:
    name: static-credentials-ignored
"
        ),
    )
    .unwrap();
}

/// `serve` with `env` and no ambient cloud credentials.
pub async fn serve_with_env(
    manifests: &Path,
    storage: &Path,
    log_dir: &Path,
    env: &[(&str, &str)],
) -> Serve {
    let port = free_port().unwrap();
    let log = log_dir.join(format!("serve-{port}.log"));
    let program = Path::new(env!("CARGO_BIN_EXE_image-reflector"));
    let mut command = serve_manifests_command(program, manifests, storage, port);
    command.args(["--log-level", "debug", "--log-encoding", "json"]);
    for ambient in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "GCE_METADATA_HOST",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_AUTHORITY_HOST",
        "AZURE_CLIENT_SECRET",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        command.env_remove(ambient);
    }
    command.envs(env.iter().copied());
    let (process, base) = start_serving(
        "image-reflector serve",
        command,
        port,
        &log,
        "/healthz",
        WAIT,
    )
    .await;
    Serve {
        process,
        base,
        http: reqwest::Client::new(),
    }
}

pub async fn repository(serve: &Serve) -> Option<ImageRepositoryInfo> {
    let response = serve
        .send("/api/v1/namespaces/flux-system/imagerepositories/podinfo")
        .await?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

pub async fn text(serve: &Serve, path: &str) -> String {
    serve.send(path).await.unwrap().text().await.unwrap()
}

/// Waits until the repository is Ready with `tags` tags.
pub async fn wait_ready(serve: &Serve, tags: i64) -> ImageRepositoryInfo {
    let ready = serve
        .wait_document(
            &format!("ImageRepository podinfo Ready with {tags} tags"),
            WAIT,
            || repository(serve),
            |r: &ImageRepositoryInfo| r.readiness.ready && r.tag_count == tags,
        )
        .await;
    assert_eq!(ready.readiness.reason, "Succeeded", "{ready:?}");
    ready
}

/// Waits until the repository reports a failure (not merely a scan in progress).
pub async fn wait_failing(serve: &Serve) -> ImageRepositoryInfo {
    serve
        .wait_document(
            "ImageRepository podinfo failing",
            WAIT,
            || repository(serve),
            |r: &ImageRepositoryInfo| {
                !r.readiness.ready
                    && !r.readiness.message.is_empty()
                    && r.readiness.reason != "Progressing"
            },
        )
        .await
}
