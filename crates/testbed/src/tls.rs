//! A throwaway certificate authority and server certificates for loopback TLS, made with
//! the `openssl` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Result;
use crate::process::run;
use crate::tools;

/// A self-signed CA with one server certificate valid for `127.0.0.1` and `localhost` (and
/// any names given to [`Certificates::generate_for`]).
#[derive(Debug, Clone)]
pub struct Certificates {
    /// The CA certificate (PEM): what clients trust, what a `ca.crt` key holds.
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// The server certificate (PEM), signed by the CA.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Certificates {
    /// Creates the CA and server certificate under `dir`.
    pub fn generate(dir: &Path) -> Result<Self> {
        Self::generate_for(dir, &[])
    }

    /// [`Self::generate`], the server certificate also valid for `dns_names` (say
    /// `fluxtest.azurecr.io`, a host a test routes to loopback through a proxy).
    pub fn generate_for(dir: &Path, dns_names: &[&str]) -> Result<Self> {
        let openssl = tools::openssl()?;
        let path = |name: &str| dir.join(name);
        let certs = Self {
            ca_cert: path("ca.crt"),
            ca_key: path("ca.key"),
            server_cert: path("tls.crt"),
            server_key: path("tls.key"),
        };
        self_signed(
            &openssl,
            "generating a test CA",
            "/CN=testbed-ca",
            &certs.ca_key,
            &certs.ca_cert,
        )?;
        let csr = path("tls.csr");
        run(
            "generating a server key",
            Command::new(&openssl)
                .args([
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=localhost",
                ])
                .arg("-keyout")
                .arg(&certs.server_key)
                .arg("-out")
                .arg(&csr),
        )?;
        let ext = path("tls.ext");
        let extra: String = dns_names.iter().map(|n| format!(",DNS:{n}")).collect();
        std::fs::write(
            &ext,
            format!(
                "subjectAltName=IP:127.0.0.1,DNS:localhost{extra}\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .map_err(|source| crate::Error::Io {
            context: "writing tls.ext".into(),
            source,
        })?;
        run(
            "signing the server certificate",
            Command::new(&openssl)
                .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(&certs.ca_cert)
                .arg("-CAkey")
                .arg(&certs.ca_key)
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&certs.server_cert),
        )?;
        Ok(certs)
    }
}

/// Generates an RSA key at `key` and a self-signed certificate for `subject` (valid two days)
/// at `cert`; `context` names the step in errors.
pub(crate) fn self_signed(
    openssl: &Path,
    context: &str,
    subject: &str,
    key: &Path,
    cert: &Path,
) -> Result<()> {
    run(
        context,
        Command::new(openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
            ])
            .arg("-keyout")
            .arg(key)
            .arg("-out")
            .arg(cert),
    )?;
    Ok(())
}
