//! Child processes that die with their handle, free ports and bounded waits.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

/// A free TCP port on 127.0.0.1.
///
/// The port is free when this returns; a racing process could take it before the
/// component binds it, which the component's readiness check then reports.
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context(|| "binding an ephemeral port".into())?;
    Ok(listener
        .local_addr()
        .context(|| "reading an ephemeral port".into())?
        .port())
}

/// A running component. Killed (and reaped) on drop; output goes to a log file.
#[derive(Debug)]
pub struct Process {
    component: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(component: &'static str, mut command: Command, log: &Path) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .context(|| format!("{component}: opening log {}", log.display()))?;
        let err = out
            .try_clone()
            .context(|| format!("{component}: log handle"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context(|| format!("{component}: starting {:?}", command.get_program()))?;
        Ok(Self {
            component,
            child,
            log: log.to_path_buf(),
        })
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 30)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its peak resident set (`VmHWM`) in KiB; `None` once it has exited.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(self.pid())
    }

    /// An error if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                component: self.component,
                status: status.to_string(),
                log_tail: self.log_tail(),
            }),
            Err(err) => Err(Error::Io {
                context: format!("{}: waiting", self.component),
                source: err,
            }),
        }
    }

    /// Polls `ready` until it returns true, failing early if the process exits.
    pub async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut ready: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if ready().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    component: self.component,
                    seconds: timeout.as_secs(),
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM (via `kill -TERM <pid>`) and waits up to `timeout` for the exit.
    ///
    /// The exit status, or `None` when the signal could not be sent or the process is
    /// still running at the deadline (it is then killed on drop as usual).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            return self.child.try_wait().ok().flatten();
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => return None,
            }
        }
    }

    /// Stops the process now (also done on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a file (at most 64 KiB read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A `/proc/<pid>/status` field in KiB (`VmHWM`, `VmRSS`); `None` when the process is gone
/// or the field is missing.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    status_kib(&format!("/proc/{pid}/status"), field)
}

/// The peak resident set (`VmHWM`) of the calling process, in KiB.
pub fn own_peak_rss_kib() -> Option<u64> {
    status_kib("/proc/self/status", "VmHWM")
}

fn status_kib(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The peak resident set (`VmHWM`) of a running process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM")
}

/// Runs a short command to completion; an error (with its stderr) unless it succeeds.
pub fn run(context: &str, command: &mut Command) -> Result<Output> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .context(|| format!("{context}: starting {:?}", command.get_program()))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Command {
            context: context.to_string(),
            message: format!(
                "{} exited with {}: {}",
                command.get_program().to_string_lossy(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}
