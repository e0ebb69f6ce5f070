//! Leader election against the testbed's real kube-apiserver: replicas that start in the
//! same instant never lead together, exactly one leads soon after, and a stopped leader hands
//! over at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use kube_support::leader::{LeaderSettings, Leadership, elect, holder_identity};
use testbed::kube_apiserver::KubeApiServer;
use tokio::sync::watch;
use tokio::time::Instant;

const NAMESPACE: &str = "flux-system";

async fn start_replicas(
    client: &kube::Client,
    lease: &str,
    count: usize,
) -> Vec<(String, Leadership, watch::Sender<bool>)> {
    let mut starting = Vec::new();
    for _ in 0..count {
        let identity = holder_identity("");
        let (stop_tx, stop) = watch::channel(false);
        let settings = LeaderSettings {
            lease_name: lease.to_string(),
            lease_namespace: NAMESPACE.to_string(),
            identity: identity.clone(),
            lease_duration: Duration::from_secs(3),
            field_manager: "election-test".to_string(),
        };
        starting.push((identity, elect(client.clone(), settings, stop), stop_tx));
    }
    // Start them all in the same instant.
    let mut replicas = Vec::new();
    let futures: Vec<_> = starting
        .into_iter()
        .map(|(id, fut, tx)| async move { (id, fut.await.unwrap(), tx) })
        .collect();
    for r in futures::future::join_all(futures).await {
        replicas.push(r);
    }
    replicas
}

fn leaders(replicas: &[(String, Leadership, watch::Sender<bool>)]) -> Vec<String> {
    replicas
        .iter()
        .filter(|(_, l, _)| *l.leading.borrow())
        .map(|(id, _, _)| id.clone())
        .collect()
}

/// Samples every 10 ms for `period`; fails on two leaders at once. Returns the last leaders.
async fn watch_for_overlap(
    replicas: &[(String, Leadership, watch::Sender<bool>)],
    period: Duration,
) -> Vec<String> {
    let end = Instant::now() + period;
    let mut last = Vec::new();
    while Instant::now() < end {
        last = leaders(replicas);
        assert!(last.len() <= 1, "two replicas lead at once: {last:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_replicas_elect_exactly_one_leader_and_hand_over_on_stop() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.admin_client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": NAMESPACE }
    }))
    .unwrap();
    let _ = namespaces.create(&PostParams::default(), &ns).await;

    for round in 0..4 {
        let lease = format!("election-{round}");
        let mut replicas = start_replicas(&client, &lease, 3).await;
        let first = watch_for_overlap(&replicas, Duration::from_secs(3)).await;
        assert_eq!(first.len(), 1, "round {round}: no leader after 3s");
        // Every replica agrees on the holder.
        for (_, l, _) in &replicas {
            assert_eq!(l.holder.borrow().as_deref(), Some(first[0].as_str()));
        }

        // Stop the leader: it releases the Lease and another takes over well before the
        // Lease would have expired.
        let index = replicas
            .iter()
            .position(|(id, _, _)| *id == first[0])
            .unwrap();
        let (_, leadership, stop) = replicas.remove(index);
        stop.send(true).unwrap();
        let stopped_at = Instant::now();
        leadership.task.await.unwrap();
        let mut next = Vec::new();
        while next.is_empty() && stopped_at.elapsed() < Duration::from_secs(3) {
            next = watch_for_overlap(&replicas, Duration::from_millis(100)).await;
        }
        assert_eq!(next.len(), 1, "round {round}: nobody took over");
        assert_ne!(next[0], first[0]);
        assert!(
            stopped_at.elapsed() < Duration::from_secs(3),
            "takeover waited for expiry"
        );
        watch_for_overlap(&replicas, Duration::from_secs(1)).await;
        for (_, l, stop) in replicas {
            stop.send(true).unwrap();
            l.task.await.unwrap();
        }
    }
}
