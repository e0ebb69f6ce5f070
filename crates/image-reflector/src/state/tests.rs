use super::*;
use crate::store::MemoryTagStore;

fn policy(name: &str, tag: &str) -> ImagePolicyInfo {
    ImagePolicyInfo {
        namespace: "ns".into(),
        name: name.into(),
        latest_ref: Some(api_types::ImageRef {
            name: "r/app".into(),
            tag: tag.into(),
            digest: None,
        }),
        ..Default::default()
    }
}

fn state(capacity: usize) -> ApiState {
    ApiState::with_history(Arc::new(MemoryTagStore::new()), capacity)
}

#[test]
fn unchanged_policy_emits_nothing() {
    let s = state(8);
    let v0 = s.resource_version();
    s.upsert_policy(policy("a", "1"));
    s.upsert_policy(policy("a", "1"));
    assert_eq!(s.resource_version(), v0 + 1);
    s.upsert_policy(policy("a", "2"));
    assert_eq!(s.resource_version(), v0 + 2);
    s.remove_policy("ns", "a");
    s.remove_policy("ns", "a");
    assert_eq!(s.resource_version(), v0 + 3);
}

#[test]
fn resume_returns_only_later_events_and_expires_old_versions() {
    let s = state(2);
    let v0 = s.resource_version();
    s.upsert_policy(policy("a", "1"));
    s.upsert_policy(policy("b", "1"));
    let sub = s.subscribe(Some(v0 + 1)).unwrap();
    assert_eq!(sub.backlog.len(), 1);
    assert_eq!(sub.backlog[0].policy.name, "b");
    s.upsert_policy(policy("c", "1"));
    // History keeps 2 events (v0+2, v0+3): resuming from v0 would miss v0+1.
    assert!(s.subscribe(Some(v0)).is_err());
    assert_eq!(s.subscribe(Some(v0 + 1)).unwrap().backlog.len(), 2);
    assert!(s.subscribe(Some(v0 + 99)).is_err());
    let fresh = s.subscribe(None).unwrap();
    assert_eq!(fresh.backlog.len(), 3);
    assert_eq!(fresh.version, v0 + 3);
}
