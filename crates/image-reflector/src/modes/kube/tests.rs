//! Unit tests of this mode.

use super::*;
use kube_support::leader;

#[test]
fn lease_names() {
    assert_eq!(SERVICE.lease_name(""), SERVICE.name);
    assert_eq!(SERVICE.lease_name("  "), SERVICE.name);
    let sharded = SERVICE.lease_name("shard=a");
    assert!(sharded.starts_with("image-reflector-controller-leader-election-"));
    assert_eq!(sharded.len(), SERVICE.name.len() + 9);
    assert_ne!(sharded, SERVICE.lease_name("shard=b"));
}

#[test]
fn schedule_backs_off_with_the_retry_delay_flags() {
    let options = crate::reconcile::Options {
        min_retry_delay: Duration::from_secs(1),
        max_retry_delay: Duration::from_secs(3),
        ..Default::default()
    };
    let mut schedule = Schedule::new(&options);
    let key = (Kind::Repository, ("ns".to_string(), "app".to_string()));
    let delays: Vec<_> = (0..3).map(|_| schedule.handled.failed(&key)).collect();
    assert_eq!(delays, [1, 2, 3].map(Duration::from_secs));
}

#[test]
fn holder_identity_carries_the_url() {
    let id = leader::holder_identity("http://10.0.0.7:8080");
    assert_eq!(leader_url_of(&id).as_deref(), Some("http://10.0.0.7:8080"));
    assert!(id.contains('_'));
    assert_eq!(leader_url_of("host_abc"), None);
}
