//! Where the external binaries are.
//!
//! Each is taken from its environment variable when set (the names `e2e/setup.sh
//! --print-env` prints), else from the places `e2e/setup.sh` installs it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The kube-apiserver version `e2e/setup.sh` builds.
pub const KUBE_VERSION: &str = "v1.20.2";

/// The cache directory outside the checkout shared with `e2e/setup.sh`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IMAGE_AUTOMATION_CACHE") {
        return dir.into();
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp".into());
    home.join(".cache/image-automation-rs")
}

fn find(component: &'static str, env: &str, candidates: &[PathBuf]) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::Missing {
                component,
                hint: format!("${env}={} is not executable", path.display()),
            })
        };
    }
    candidates
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .ok_or_else(|| Error::Missing {
            component,
            hint: format!(
                "looked in ${env} and {}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn on_path(name: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter().map(|dir| dir.join(name)).collect()
}

pub fn kube_apiserver() -> Result<PathBuf> {
    let built = cache_dir().join(format!("kube-apiserver-{KUBE_VERSION}/kube-apiserver"));
    find("kube-apiserver", "KUBE_APISERVER", &[built])
}

pub fn etcd() -> Result<PathBuf> {
    find("etcd", "ETCD", &on_path("etcd"))
}

pub fn docker_registry() -> Result<PathBuf> {
    find(
        "docker-registry",
        "DOCKER_REGISTRY",
        &on_path("docker-registry"),
    )
}

pub fn prometheus() -> Result<PathBuf> {
    find("prometheus", "PROMETHEUS", &on_path("prometheus"))
}

pub fn kubectl() -> Result<PathBuf> {
    find("kubectl", "KUBECTL", &on_path("kubectl"))
}

pub fn git() -> Result<PathBuf> {
    find("git", "GIT", &on_path("git"))
}

pub fn lighttpd() -> Result<PathBuf> {
    find("lighttpd", "LIGHTTPD", &on_path("lighttpd"))
}

pub fn sshd() -> Result<PathBuf> {
    find("sshd", "SSHD", &on_path("sshd"))
}

pub fn ssh_keygen() -> Result<PathBuf> {
    find("ssh-keygen", "SSH_KEYGEN", &on_path("ssh-keygen"))
}

pub fn htpasswd() -> Result<PathBuf> {
    find("htpasswd", "HTPASSWD", &on_path("htpasswd"))
}

pub fn openssl() -> Result<PathBuf> {
    find("openssl", "OPENSSL", &on_path("openssl"))
}

/// git's `http-backend` CGI program.
pub fn git_http_backend() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("GIT_HTTP_BACKEND").filter(|p| !p.is_empty()) {
        return find(
            "git-http-backend",
            "GIT_HTTP_BACKEND",
            &[PathBuf::from(path)],
        );
    }
    let exec_path = std::process::Command::new(git()?)
        .arg("--exec-path")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .unwrap_or_else(|| "/usr/lib/git-core".into());
    find(
        "git-http-backend",
        "GIT_HTTP_BACKEND",
        &[exec_path.join("git-http-backend")],
    )
}
