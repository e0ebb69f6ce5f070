//! Commit signing: OpenPGP with rPGP, SSH with `ssh-keygen -Y sign`. Either way the
//! armored signature over the serialised unsigned commit goes into the `gpgsig` header.

use std::collections::BTreeMap;
use std::fmt;
use std::process::Command;
use std::time::Duration;

use pgp::composed::{ArmorOptions, Deserializable as _, DetachedSignature, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::Password;

use super::auth::{Secret, write_ssh_key};
use super::cli;
use super::error::GitError;

/// A commit signing key, from the secret named by `spec.git.commit.signingKey`.
#[derive(Clone)]
pub enum SigningKey {
    /// `git.asc` (one armored secret key) and optional `passphrase`.
    OpenPgp {
        armored: Secret,
        passphrase: Option<Secret>,
    },
    /// `identity` (OpenSSH private key) and optional `password`.
    Ssh {
        identity: Secret,
        passphrase: Option<Secret>,
    },
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OpenPgp { .. } => "SigningKey::OpenPgp(***)",
            Self::Ssh { .. } => "SigningKey::Ssh(***)",
        })
    }
}

impl SigningKey {
    /// From the secret data and `signingKey.type` (`gpg`, empty, or `ssh`). Checks the
    /// key early (Flux fails at source-manager setup, before cloning).
    pub fn from_secret(
        kind: Option<&str>,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, GitError> {
        let text = |key: &str| {
            data.get(key)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .filter(|s| !s.is_empty())
        };
        match kind.unwrap_or("gpg") {
            "" | "gpg" => {
                let armored = text("git.asc").ok_or_else(|| {
                    GitError::InvalidSecret(
                        "signing key secret does not contain a 'git.asc' key".into(),
                    )
                })?;
                let key = Self::OpenPgp {
                    armored: Secret::new(armored),
                    passphrase: text("passphrase").map(Secret::new),
                };
                key.openpgp_key()?;
                Ok(key)
            }
            "ssh" => {
                let identity = text("identity").ok_or_else(|| {
                    GitError::InvalidSecret(
                        "signing key secret does not contain an 'identity' key".into(),
                    )
                })?;
                let mut identity = identity.replace("\r\n", "\n");
                if !identity.ends_with('\n') {
                    identity.push('\n');
                }
                Ok(Self::Ssh {
                    identity: Secret::new(identity),
                    passphrase: text("password").map(Secret::new),
                })
            }
            other => Err(GitError::InvalidConfig(format!(
                "unknown signing key type {other:?} (expected 'gpg' or 'ssh')"
            ))),
        }
    }

    fn openpgp_key(&self) -> Result<SignedSecretKey, GitError> {
        let Self::OpenPgp { armored, .. } = self else {
            return Err(GitError::Signing("not an OpenPGP key".into()));
        };
        let (keys, _) = SignedSecretKey::from_armor_many(armored.expose().as_bytes())
            .map_err(|e| GitError::InvalidSecret(format!("reading 'git.asc': {e}")))?;
        let mut keys = keys
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| GitError::InvalidSecret(format!("reading 'git.asc': {e}")))?;
        if keys.len() != 1 {
            return Err(GitError::InvalidSecret(format!(
                "'git.asc' must hold exactly one secret key, found {}",
                keys.len()
            )));
        }
        keys.pop()
            .ok_or_else(|| GitError::InvalidSecret("'git.asc' holds no secret key".into()))
    }

    /// The armored signature over `payload` (the serialised commit without `gpgsig`).
    pub(crate) fn sign(&self, payload: &[u8], timeout: Duration) -> Result<String, GitError> {
        match self {
            Self::OpenPgp { passphrase, .. } => {
                let key = self.openpgp_key()?;
                let password = passphrase
                    .as_ref()
                    .map(|p| Password::from(p.expose()))
                    .unwrap_or_else(Password::empty);
                // A signing-capable subkey wins over the primary key, as gpg does.
                let subkey = key
                    .secret_subkeys
                    .iter()
                    .find(|sk| sk.signatures.iter().any(|s| s.key_flags().sign()));
                let rng = rand::thread_rng();
                let sig = match subkey {
                    Some(sk) => DetachedSignature::sign_binary_data(
                        rng,
                        &sk.key,
                        &password,
                        HashAlgorithm::Sha256,
                        payload,
                    ),
                    None => DetachedSignature::sign_binary_data(
                        rng,
                        &key.primary_key,
                        &password,
                        HashAlgorithm::Sha256,
                        payload,
                    ),
                }
                .map_err(|e| {
                    GitError::Signing(format!(
                        "OpenPGP signing failed (wrong or missing 'passphrase'?): {e}"
                    ))
                })?;
                sig.to_armored_string(ArmorOptions::default())
                    .map_err(|e| GitError::Signing(format!("armoring the signature: {e}")))
            }
            Self::Ssh {
                identity,
                passphrase,
            } => {
                let dir = tempfile::Builder::new()
                    .prefix("iua-sign-")
                    .tempdir()
                    .map_err(|e| GitError::Git(format!("creating a signing directory: {e}")))?;
                let key = write_ssh_key(dir.path(), "signing_key", identity, passphrase.as_ref())?;
                let mut command = Command::new("ssh-keygen");
                command
                    .args(["-Y", "sign", "-n", "git", "-f"])
                    .arg(&key)
                    .env("LC_ALL", "C");
                let out = cli::run(&mut command, Some(payload), timeout, None)
                    .map_err(|e| GitError::Signing(format!("running ssh-keygen -Y sign: {e:?}")))?;
                if !out.success || !out.stdout.contains("BEGIN SSH SIGNATURE") {
                    return Err(GitError::Signing(format!(
                        "ssh-keygen -Y sign failed: {}",
                        out.stderr.trim()
                    )));
                }
                Ok(out.stdout)
            }
        }
    }
}
