//! etcd + kube-apiserver (v1.20, built by `e2e/setup.sh`) with token authentication and RBAC,
//! and our CRDs applied. No kubelet or controller-manager: controllers run as local
//! processes with a kubeconfig, the way envtest-based controller tests work.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use tempfile::TempDir;

use crate::error::{Error, IoContext, Result};
use crate::process::{Process, free_port, run};
use crate::tools;

/// The user a non-admin token authenticates as; bind roles to it to test RBAC.
pub const NON_ADMIN_USER: &str = "image-automation-test";

/// A running API server. Everything stops, and the data is deleted, on drop.
#[derive(Debug)]
pub struct KubeApiServer {
    // Field order matters: the API server stops before etcd, etcd before the files go.
    apiserver: Process,
    etcd: Process,
    url: String,
    admin_token: String,
    user_token: String,
    admin_kubeconfig: PathBuf,
    user_kubeconfig: PathBuf,
    dir: TempDir,
}

impl KubeApiServer {
    /// Starts etcd and kube-apiserver, then applies our CRDs and the GitRepository stand-in
    /// and waits until they are established.
    pub async fn start() -> Result<Self> {
        let apiserver_bin = tools::kube_apiserver()?;
        let etcd_bin = tools::etcd()?;
        let dir = tempfile::Builder::new()
            .prefix("testbed-kube-")
            .tempdir()
            .context(|| "creating a temp dir".into())?;
        let path = |name: &str| dir.path().join(name);

        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd_cmd = Command::new(etcd_bin);
        etcd_cmd
            .arg("--data-dir")
            .arg(path("etcd"))
            .args(["--name", "testbed"])
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("testbed={peer_url}")])
            // Tests need no durability; skipping fsync keeps etcd fast on a busy machine.
            .arg("--unsafe-no-fsync");
        let mut etcd = Process::spawn("etcd", etcd_cmd, &path("etcd.log"))?;
        let http = reqwest::Client::new();
        let health = format!("{client_url}/health");
        etcd.wait_ready(Duration::from_secs(30), || async {
            http.get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await?;

        let admin_token = random_token()?;
        let user_token = random_token()?;
        std::fs::write(
            path("tokens.csv"),
            format!("{admin_token},admin,admin,system:masters\n{user_token},{NON_ADMIN_USER},{NON_ADMIN_USER}\n"),
        )
        .context(|| "writing tokens.csv".into())?;
        run(
            "generating the service account key",
            Command::new(tools::openssl()?)
                .args(["genrsa", "-out"])
                .arg(path("sa.key"))
                .arg("2048"),
        )?;

        let port = free_port()?;
        let mut apiserver_cmd = Command::new(apiserver_bin);
        apiserver_cmd
            .arg(format!("--etcd-servers={client_url}"))
            .args(["--bind-address=127.0.0.1", &format!("--secure-port={port}")])
            // Without --tls-cert-file the server writes a self-signed certificate here.
            .arg(format!("--cert-dir={}", path("certs").display()))
            .arg(format!(
                "--token-auth-file={}",
                path("tokens.csv").display()
            ))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!(
                "--service-account-key-file={}",
                path("sa.key").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                path("sa.key").display()
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--allow-privileged=false")
            .arg("--v=1");
        let mut apiserver =
            Process::spawn("kube-apiserver", apiserver_cmd, &path("kube-apiserver.log"))?;
        let url = format!("https://127.0.0.1:{port}");
        let insecure = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| crate::error::http_error(&url, e))?;
        let readyz = format!("{url}/readyz");
        apiserver
            .wait_ready(Duration::from_secs(90), || async {
                insecure
                    .get(&readyz)
                    .bearer_auth(&admin_token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await?;

        let admin_kubeconfig = path("admin.kubeconfig");
        let user_kubeconfig = path("user.kubeconfig");
        write_kubeconfig(&admin_kubeconfig, &url, "admin", &admin_token)?;
        write_kubeconfig(&user_kubeconfig, &url, NON_ADMIN_USER, &user_token)?;

        let server = Self {
            apiserver,
            etcd,
            url,
            admin_token,
            user_token,
            admin_kubeconfig,
            user_kubeconfig,
            dir,
        };
        server.apply_crds()?;
        Ok(server)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub fn user_token(&self) -> &str {
        &self.user_token
    }

    /// A kubeconfig for the admin (`system:masters`).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// A kubeconfig for [`NON_ADMIN_USER`], who can do nothing until a role is bound.
    pub fn user_kubeconfig(&self) -> &Path {
        &self.user_kubeconfig
    }

    /// The log files of kube-apiserver and etcd, for failure messages.
    pub fn log_paths(&self) -> [&Path; 2] {
        [self.apiserver.log_path(), self.etcd.log_path()]
    }

    /// The temp dir holding data, logs and kubeconfigs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kube-rs client authenticated as the admin.
    pub async fn admin_client(&self) -> Result<kube::Client> {
        client_from(&self.admin_kubeconfig).await
    }

    /// A kube-rs client authenticated as [`NON_ADMIN_USER`].
    pub async fn user_client(&self) -> Result<kube::Client> {
        client_from(&self.user_kubeconfig).await
    }

    /// `kubectl` pointed at this server as the admin.
    pub fn kubectl(&self) -> Result<Command> {
        let mut command = Command::new(tools::kubectl()?);
        command.arg("--kubeconfig").arg(&self.admin_kubeconfig);
        Ok(command)
    }

    /// `kubectl apply -f -` with `yaml` as the admin; returns kubectl's stdout.
    pub fn apply(&self, yaml: &str) -> Result<String> {
        let file = self
            .dir
            .path()
            .join(format!("apply-{}.yaml", random_token()?));
        std::fs::write(&file, yaml).context(|| format!("writing {}", file.display()))?;
        let output = run(
            "kubectl apply",
            self.kubectl()?.arg("apply").arg("-f").arg(&file),
        )?;
        let _ = std::fs::remove_file(&file);
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Applies the generated CRDs (both charts and the GitRepository stand-in) and waits
    /// until the API server serves them.
    fn apply_crds(&self) -> Result<()> {
        let root = crate::repo_root();
        let dirs = [
            root.join("charts/image-reflector-controller/crds"),
            root.join("charts/image-automation-controller/crds"),
            root.join("e2e/crds"),
        ];
        let mut apply = self.kubectl()?;
        // kubectl validates against the server's OpenAPI, and 1.20's JSONSchemaProps has no
        // `x-kubernetes-validations` (CEL, 1.25+); the API server itself drops the field.
        apply.arg("apply").arg("--validate=false");
        for dir in &dirs {
            apply.arg("-f").arg(dir);
        }
        run("applying CRDs", &mut apply)?;
        run(
            "waiting for CRDs",
            self.kubectl()?
                .args(["wait", "--for=condition=established", "--timeout=60s"])
                .args(CRD_NAMES.map(|name| format!("crd/{name}"))),
        )?;
        Ok(())
    }
}

/// The CRDs every testbed API server has.
pub const CRD_NAMES: [&str; 4] = [
    "imagerepositories.image.toolkit.fluxcd.io",
    "imagepolicies.image.toolkit.fluxcd.io",
    "imageupdateautomations.image.toolkit.fluxcd.io",
    "gitrepositories.source.toolkit.fluxcd.io",
];

async fn client_from(kubeconfig: &Path) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).map_err(|e| Error::Kube(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kube(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| Error::Kube(e.to_string()))
}

fn write_kubeconfig(path: &Path, url: &str, user: &str, token: &str) -> Result<()> {
    // The serving certificate is self-signed by the API server; loopback only.
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {url}\n    insecure-skip-tls-verify: true\n\
         users:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: {user}\n    namespace: default\n\
         current-context: testbed\n"
    );
    std::fs::write(path, text).context(|| format!("writing {}", path.display()))
}

/// 32 hex characters from the OS's randomness.
fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context(|| "reading /dev/urandom".into())?;
    Ok(hex::encode(bytes))
}
