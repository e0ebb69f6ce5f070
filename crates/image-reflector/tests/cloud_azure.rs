//! `spec.provider: azure` end to end: `image-reflector serve` as a real process with the
//! workload identity environment the AKS webhook injects (`AZURE_CLIENT_ID`,
//! `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`), an Entra ID
//! token endpoint stand-in that checks what it receives, and ACR's own endpoints
//! (`/oauth2/exchange`, `/oauth2/token`) served over HTTPS for `fluxtest.azurecr.io` by
//! `testbed::azure::AcrFront`, in front of the testbed's real docker-registry in token mode.
//!
//! How `fluxtest.azurecr.io` is reached, honestly: the ImageRepository's `proxySecretRef`
//! names `testbed::mapping_proxy`, which tunnels `CONNECT fluxtest.azurecr.io:443` to the
//! front and lets loopback calls (the Entra stand-in) through. Every token call goes through
//! that proxy, as Flux sends them, and the tests check it. TLS is real: the front's
//! certificate for `fluxtest.azurecr.io` comes from a test CA the controller trusts through
//! `SSL_CERT_FILE` (its system roots, as Flux's token calls use). Nothing resolves the name;
//! Entra and ACR themselves are stand-ins.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod cloud_common;
mod serve_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cloud_common::{serve_with_env, text, wait_failing, wait_ready, write_manifests_for};
use serve_common::Serve;
use testbed::azure::{AcrFront, AcrOptions, EntraFake, EntraOptions};
use testbed::mapping_proxy::MappingProxy;
use testbed::registry::{Registry, RegistryOptions};

const ACR_HOST: &str = "fluxtest.azurecr.io";
const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "5a1c3e2b-8d4f-4e6a-9b7c-0d1e2f3a4b5c";
/// The projected ServiceAccount token the webhook mounts (audience api://AzureADTokenExchange).
const FEDERATED_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.federated-service-account-token.sig";
const ENTRA_ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.entra-access-token-for-acr.sig";
/// What Entra answers when the app has no federated credential for the pod's subject.
const DENIAL: &str = "AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:flux-system:image-reflector-controller'.";

fn image() -> String {
    format!("{ACR_HOST}/apps/podinfo")
}

/// The registry, Entra and ACR stand-ins and the proxy, with `tags` pushed.
struct Azure {
    registry: Registry,
    entra: EntraFake,
    acr: AcrFront,
    proxy: MappingProxy,
}

impl Azure {
    async fn start(tags: &[&str], refresh_lifetimes: Vec<i64>, deny: Option<&str>) -> Self {
        let registry = Registry::start(RegistryOptions::token()).await.unwrap();
        registry.push_tags("apps/podinfo", tags).await.unwrap();
        let entra = EntraFake::start(EntraOptions {
            tenant_id: TENANT_ID.into(),
            client_id: CLIENT_ID.into(),
            assertion: FEDERATED_TOKEN.into(),
            access_token: ENTRA_ACCESS_TOKEN.into(),
            deny: deny.map(str::to_string),
        })
        .await
        .unwrap();
        let acr = AcrFront::start(
            &registry,
            AcrOptions {
                host: ACR_HOST.into(),
                access_token: ENTRA_ACCESS_TOKEN.into(),
                refresh_lifetimes,
            },
        )
        .await
        .unwrap();
        let proxy = MappingProxy::start(&[(&format!("{ACR_HOST}:443"), acr.addr())])
            .await
            .unwrap();
        Self {
            registry,
            entra,
            acr,
            proxy,
        }
    }

    /// The Entra token call as the proxy records it.
    fn entra_call(&self) -> String {
        format!(
            "POST {}{TENANT_ID}/oauth2/v2.0/token",
            self.entra.authority_host()
        )
    }
}

/// Writes the manifests and the federated token file; returns (manifests, storage, token file).
fn set_up(dir: &Path, proxy: &MappingProxy) -> (PathBuf, PathBuf, PathBuf) {
    let (manifests, storage) = (dir.join("manifests"), dir.join("data"));
    std::fs::create_dir_all(&manifests).unwrap();
    write_manifests_for(&manifests, &proxy.url(), "azure", &image(), false);
    let token_file = dir.join("azure-identity-token");
    std::fs::write(&token_file, format!("{FEDERATED_TOKEN}\n")).unwrap();
    (manifests, storage, token_file)
}

/// `serve` with the AKS workload identity environment, trusting the front's CA.
async fn serve_with_workload_identity(azure: &Azure, dir: &Path) -> Serve {
    let (manifests, storage, token_file) = set_up(dir, &azure.proxy);
    let token_file = token_file.display().to_string();
    let authority = azure.entra.authority_host();
    let ca = azure.acr.ca_cert().display().to_string();
    serve_with_env(
        &manifests,
        &storage,
        dir,
        &[
            ("AZURE_CLIENT_ID", CLIENT_ID),
            ("AZURE_TENANT_ID", TENANT_ID),
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.as_str()),
            ("AZURE_AUTHORITY_HOST", authority.as_str()),
            ("SSL_CERT_FILE", ca.as_str()),
        ],
    )
    .await
}

/// No token or refresh token in the API, the metrics or the log.
async fn assert_no_secret(serve: &Serve, azure: &Azure, api: &str) {
    let metrics = text(serve, "/metrics").await;
    let log = serve.log_text();
    let mut secrets = vec![FEDERATED_TOKEN.to_string(), ENTRA_ACCESS_TOKEN.to_string()];
    secrets.extend(azure.acr.refresh_tokens());
    for (what, published) in [("API", api), ("metrics", &metrics), ("log", &log)] {
        for secret in &secrets {
            assert!(
                !published.contains(secret.as_str()),
                "a token leaked into the {what}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_azure_scans_acr_with_workload_identity_through_the_proxy() {
    let azure = Azure::start(&["6.5.0", "6.5.1", "6.6.0"], vec![3 * 3600], None).await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = serve_with_workload_identity(&azure, tmp.path()).await;

    let ready = wait_ready(&serve, 3).await;
    let seen = azure.proxy.seen();
    // One Entra token, one exchange, then the registry token from ACR's realm, all through
    // the object's proxy.
    assert_eq!(azure.entra.requests(), 1, "{seen:?}");
    assert_eq!(azure.acr.exchanges(), 1, "{seen:?}");
    assert!(azure.acr.token_requests() >= 1, "{seen:?}");
    assert_eq!(azure.acr.refused_tokens(), 0);
    assert_eq!(azure.proxy.count(&azure.entra_call()), 1, "{seen:?}");
    assert!(
        azure.proxy.count(&format!("CONNECT {ACR_HOST}:443")) >= 2,
        "the exchange and the scan go to {ACR_HOST} through the proxy: {seen:?}"
    );
    assert!(azure.registry.tokens_issued() >= 1);
    assert_no_secret(&serve, &azure, &format!("{ready:?}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_acr_refresh_token_is_used_once_then_exchanged_again_once() {
    // The first exchange hands out a refresh token that expired a minute ago; ACR refuses it
    // at /oauth2/token. The next scan must exchange again, once, and never loop.
    let azure = Azure::start(&["1.0.0", "1.1.0"], vec![-60, 3 * 3600], None).await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = serve_with_workload_identity(&azure, tmp.path()).await;

    let ready = wait_ready(&serve, 2).await;
    assert_eq!(azure.acr.refused_tokens(), 1, "{:?}", azure.proxy.seen());
    assert_eq!(azure.acr.exchanges(), 2, "{:?}", azure.proxy.seen());
    assert_no_secret(&serve, &azure, &format!("{ready:?}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_azure_identity_fails_the_scan_with_fluxs_chain_and_no_anonymous_scan() {
    let azure = Azure::start(&["1.0.0"], vec![3 * 3600], Some(DENIAL)).await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = serve_with_workload_identity(&azure, tmp.path()).await;

    let failed = wait_failing(&serve).await;
    assert_eq!(failed.readiness.reason, "ReadOperationFailed", "{failed:?}");
    let message = &failed.readiness.message;
    assert!(
        message.starts_with(
            "scan failed: failed to get access token for artifact registry: failed to create provider access token for the controller: azure: Entra ID (AAD) token: "
        ),
        "{failed:?}"
    );
    // Entra's reason and what to check.
    assert!(message.contains("AADSTS700213"), "{message}");
    assert!(
        message.contains(
            "(check AZURE_CLIENT_ID, AZURE_TENANT_ID and the app's federated credential)"
        ),
        "{message}"
    );
    assert!(azure.entra.requests() >= 1);
    assert_eq!(azure.acr.exchanges(), 0);
    assert_eq!(azure.acr.forwarded(), 0, "scanned without the cloud login");
    assert_no_secret(&serve, &azure, &format!("{failed:?}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_imds_times_out_cleanly() {
    // No workload identity environment: the controller asks IMDS (169.254.169.254), through
    // the object's proxy as Flux's SDK does. Here IMDS accepts the connection and never
    // answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr: SocketAddr = silent.local_addr().unwrap();
    let registry = Registry::start(RegistryOptions::token()).await.unwrap();
    registry
        .push_tags("apps/podinfo", &["1.0.0"])
        .await
        .unwrap();
    let proxy = MappingProxy::start(&[("169.254.169.254:80", silent_addr)])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (manifests, storage, _) = set_up(tmp.path(), &proxy);
    let serve = serve_with_env(&manifests, &storage, tmp.path(), &[]).await;

    let failed = wait_failing(&serve).await;
    assert_eq!(failed.readiness.reason, "ReadOperationFailed", "{failed:?}");
    let message = &failed.readiness.message;
    assert!(
        message.starts_with(
            "scan failed: failed to get access token for artifact registry: failed to create provider access token for the controller: azure: "
        ),
        "{message}"
    );
    assert!(
        message.contains("missing environment variables for workload identity"),
        "{message}"
    );
    assert!(
        message.contains(
            "IMDS managed identity token: request to http://169.254.169.254/metadata/identity/oauth2/token failed: timed out after 10s"
        ),
        "{message}"
    );
    assert!(
        proxy.count("GET http://169.254.169.254/metadata/identity/oauth2/token") >= 1,
        "{:?}",
        proxy.seen()
    );
    drop(silent);
}
