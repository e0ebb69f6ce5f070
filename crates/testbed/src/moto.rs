//! moto in server mode: the AWS emulator (STS, IAM, ECR, EC2 instance metadata on one port).
//!
//! Installed by `e2e/moto.sh` into `<cache>/moto-venv` (or `$MOTO_SERVER`). Started on a
//! free loopback port; each test gets its own server, so there is no shared state.
//!
//! moto validates nothing by default (any token, any signature). With
//! [`MotoOptions::verify_after`] it verifies SigV4 signatures and IAM policies after that many
//! unauthenticated actions, which makes it a real check of a SigV4 signer.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::process::{Process, free_port};

/// How to start moto.
#[derive(Debug, Clone, Default)]
pub struct MotoOptions {
    /// `INITIAL_NO_AUTH_ACTION_COUNT`: after this many actions, signatures and IAM policies
    /// are enforced. `None` never enforces.
    pub verify_after: Option<u32>,
}

/// A running moto server; stopped on drop.
#[derive(Debug)]
pub struct Moto {
    process: Process,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The `moto_server` executable: `$MOTO_SERVER`, else the venv `e2e/moto.sh` creates.
pub fn moto_server() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let path = crate::tools::cache_dir().join("moto-venv/bin/moto_server");
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Missing {
            component: "moto_server",
            hint: format!(
                "looked in $MOTO_SERVER and {}; run `bash e2e/moto.sh`",
                path.display()
            ),
        })
    }
}

impl Moto {
    pub async fn start(options: MotoOptions) -> Result<Self> {
        let binary = moto_server()?;
        let dir = tempfile::Builder::new()
            .prefix("testbed-moto-")
            .tempdir()
            .context(|| "moto: creating a temporary directory".into())?;
        let port = free_port()?;
        let mut command = Command::new(binary);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            // No credentials or config from the machine running the tests.
            .env("HOME", dir.path())
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        if let Some(count) = options.verify_after {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", count.to_string());
        }
        let mut process = Process::spawn("moto", command, &dir.path().join("moto.log"))?;
        let ping = format!("http://127.0.0.1:{port}/moto-api/");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|err| crate::error::http_error(&ping, err))?;
        process
            .wait_ready(Duration::from_secs(60), || {
                let request = client.get(&ping);
                async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
            })
            .await?;
        Ok(Self {
            process,
            port,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT/`: the endpoint for every AWS service.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates the IAM role `name` in moto's default account (123456789012), trusting web
    /// identities, with an inline policy allowing `allowed_actions` (none: no policy). One
    /// or two actions: count them in [`MotoOptions::verify_after`]. Signed with a dummy
    /// signature that names IAM's scope (what moto routes by; it checks nothing before strict
    /// mode starts).
    pub async fn create_role(&self, name: &str, allowed_actions: &[&str]) -> Result<()> {
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/oidc.eks.example"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
        self.iam(&[
            ("Action", "CreateRole"),
            ("Version", "2010-05-08"),
            ("RoleName", name),
            ("AssumeRolePolicyDocument", trust),
        ])
        .await?;
        if !allowed_actions.is_empty() {
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": allowed_actions, "Resource": "*"}],
            })
            .to_string();
            self.iam(&[
                ("Action", "PutRolePolicy"),
                ("Version", "2010-05-08"),
                ("RoleName", name),
                ("PolicyName", "allowed"),
                ("PolicyDocument", &policy),
            ])
            .await?;
        }
        Ok(())
    }

    async fn iam(&self, fields: &[(&str, &str)]) -> Result<()> {
        let url = self.endpoint();
        let response = reqwest::Client::new()
            .post(&url)
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIASETUPEXAMPLE/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00",
            )
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(fields)
                    .finish(),
            )
            .send()
            .await
            .map_err(|err| crate::error::http_error(&url, err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(Error::Command {
            context: format!("moto IAM {fields:?}"),
            message: format!("{status}: {body}"),
        })
    }

    /// The server's last log lines (requests and tracebacks), for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
