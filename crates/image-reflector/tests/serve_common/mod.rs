//! `image-reflector serve --manifests DIR` as a real process, for the tests that observe it
//! through its HTTP API; each test adds its own readers to [`Serve`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Debug;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use testbed::controllers::{serve_manifests_command, start_serving};
use testbed::process::{Process, free_port};
use testbed::wait::wait_for;

/// How long the process may take to answer `/healthz`.
const START_WAIT: Duration = Duration::from_secs(60);

/// A running `image-reflector serve`; killed on drop.
pub struct Serve {
    pub process: Process,
    pub base: String,
    pub http: reqwest::Client,
}

impl Serve {
    /// Starts on `manifests` and `storage` with debug JSON logs in `log_dir/serve-PORT.log`
    /// and the extra `args`; waits until `/healthz` answers.
    pub async fn start_with(
        manifests: &Path,
        storage: &Path,
        log_dir: &Path,
        args: &[&str],
    ) -> Self {
        let port = free_port().unwrap();
        let log = log_dir.join(format!("serve-{port}.log"));
        let program = Path::new(env!("CARGO_BIN_EXE_image-reflector"));
        let mut command = serve_manifests_command(program, manifests, storage, port);
        command
            .args(["--log-level", "debug", "--log-encoding", "json"])
            .args(args);
        let (process, base) = start_serving(
            "image-reflector serve",
            command,
            port,
            &log,
            "/healthz",
            START_WAIT,
        )
        .await;
        Self {
            process,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// The whole log so far (empty when unreadable).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// Polls `read` until its document passes `check`; after `timeout` panics with `what`,
    /// the last document read and the log.
    pub async fn wait_document<T, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        read: impl Fn() -> Fut,
        check: impl Fn(&T) -> bool,
    ) -> T
    where
        T: Clone + Debug,
        Fut: Future<Output = Option<T>>,
    {
        let last = Mutex::new(None);
        wait_for(
            what,
            timeout,
            || {
                format!(
                    "last: {:#?}\nlog:\n{}",
                    last.lock().unwrap(),
                    self.log_text()
                )
            },
            || async {
                let current = read().await;
                let reached = current.as_ref().filter(|d| check(d)).cloned();
                *last.lock().unwrap() = current;
                reached
            },
        )
        .await
    }

    /// The answer to `GET base+path`; `None` when none came.
    pub async fn send(&self, path: &str) -> Option<reqwest::Response> {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()
    }
}
