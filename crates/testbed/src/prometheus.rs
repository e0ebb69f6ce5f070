//! A Prometheus server (Debian's `prometheus`) scraping given targets every second, with a
//! query helper.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tempfile::TempDir;

use crate::error::{Error, IoContext, Result, http_error};
use crate::process::{Process, free_port};
use crate::tools;

/// Something to scrape.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    /// The `job` label.
    pub job: String,
    /// `host:port`.
    pub address: String,
    /// Usually `/metrics`.
    pub metrics_path: String,
}

impl ScrapeTarget {
    pub fn new(job: &str, address: &str) -> Self {
        Self {
            job: job.into(),
            address: address.into(),
            metrics_path: "/metrics".into(),
        }
    }
}

/// One series of an instant query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// A running Prometheus; stopped and its data deleted on drop.
#[derive(Debug)]
pub struct Prometheus {
    process: Process,
    url: String,
    http: reqwest::Client,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second.
    pub async fn start(targets: &[ScrapeTarget]) -> Result<Self> {
        let binary = tools::prometheus()?;
        let dir = tempfile::Builder::new()
            .prefix("testbed-prometheus-")
            .tempdir()
            .context(|| "creating a temp dir".into())?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_text(targets))
            .context(|| "writing prometheus.yml".into())?;
        let port = free_port()?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let mut process =
            Process::spawn("prometheus", command, &dir.path().join("prometheus.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = format!("{url}/-/ready");
        process
            .wait_ready(Duration::from_secs(60), || async {
                http.get(&ready)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await?;
        Ok(Self {
            process,
            url,
            http,
            _dir: dir,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Runs an instant query.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>> {
        let url = format!("{}/api/v1/query", self.url);
        let response: QueryResponse = self
            .http
            .get(&url)
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| http_error(&url, e))?
            .json()
            .await
            .map_err(|e| http_error(&url, e))?;
        if response.status != "success" {
            return Err(http_error(&url, response.error.unwrap_or(response.status)));
        }
        response
            .data
            .map(|data| data.result)
            .unwrap_or_default()
            .into_iter()
            .map(|series| {
                let value = series
                    .value
                    .1
                    .parse::<f64>()
                    .map_err(|e| http_error(&url, e))?;
                Ok(Sample {
                    labels: series.metric,
                    value,
                })
            })
            .collect()
    }

    /// Repeats `query` until it returns at least one sample, or fails after `timeout`.
    pub async fn wait_for(&self, promql: &str, timeout: Duration) -> Result<Vec<Sample>> {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.query(promql).await?;
            if !samples.is_empty() {
                return Ok(samples);
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    component: "prometheus query",
                    seconds: timeout.as_secs(),
                    log_tail: format!(
                        "`{promql}` returned no series; log:\n{}",
                        self.process.log_tail()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn config_text(targets: &[ScrapeTarget]) -> String {
    let mut text = String::from(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
    );
    for target in targets {
        text.push_str(&format!(
            "  - job_name: '{}'\n    metrics_path: '{}'\n    static_configs:\n      - targets: ['{}']\n",
            target.job, target.metrics_path, target.address
        ));
    }
    text
}

#[derive(Deserialize)]
struct QueryResponse {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<QueryData>,
}

#[derive(Deserialize)]
struct QueryData {
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}
