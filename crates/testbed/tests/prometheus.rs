//! The testbed's Prometheus is real: it scrapes a target and answers queries about it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use testbed::prometheus::{Prometheus, ScrapeTarget};

/// Serves a fixed exposition on every request, from a thread.
fn metrics_target(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_a_target() {
    let address = metrics_target(
        "# TYPE testbed_probe_total counter\ntestbed_probe_total{kind=\"probe\"} 42\n",
    );
    let prometheus = Prometheus::start(&[ScrapeTarget::new("probe", &address)])
        .await
        .expect("start the testbed Prometheus");

    let up = prometheus
        .wait_for("up{job=\"probe\"} == 1", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(up[0].labels["instance"], address);

    let samples = prometheus
        .wait_for("testbed_probe_total", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].value, 42.0);
    assert_eq!(samples[0].labels["kind"], "probe");
    assert_eq!(samples[0].labels["job"], "probe");

    // A target that does not exist is scraped too, and reported down.
    assert!(
        prometheus
            .query("up{job=\"missing\"}")
            .await
            .unwrap()
            .is_empty()
    );
}
