//! Running `git`, `ssh-keygen` with a deadline and captured output.

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a finished child printed.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Why running failed before an exit status.
#[derive(Debug)]
pub(crate) enum RunError {
    Spawn(std::io::Error),
    TimedOut,
    /// `cancel` was set (shutdown): the child and its descendants were killed.
    Cancelled,
}

/// Runs `command` with `stdin`, killing it after `timeout` or as soon as `cancel` is set.
/// The child leads its own process group, and the whole group is killed: `git push` does
/// its work in helpers (`git-remote-http`, `send-pack`, `pack-objects`) that must not
/// outlive it and finish the push unobserved. Output is read on threads so a chatty
/// child cannot block on a full pipe.
pub(crate) fn run(
    command: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
    cancel: Option<&AtomicBool>,
) -> Result<Output, RunError> {
    command
        .process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        std::thread::spawn(move || pipe.write_all(&data));
    }
    let reader = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(child.stdout.take().map(|p| Box::new(p) as _));
    let err = reader(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let mut stopped = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) => {
                kill_group(&mut child);
                stopped = Some(RunError::Cancelled);
                break None;
            }
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                stopped = Some(RunError::TimedOut);
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(RunError::Spawn(e)),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            success: status.success(),
            stdout,
            stderr,
        }),
        None => Err(stopped.unwrap_or(RunError::TimedOut)),
    }
}

/// SIGKILL to the child's process group (it leads one, see [`run`]), then reaps it.
fn kill_group(child: &mut Child) {
    let group = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    match group {
        Some(pid) => {
            if rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).is_err() {
                let _ = child.kill();
            }
        }
        None => {
            let _ = child.kill();
        }
    }
    let _ = child.wait();
}
