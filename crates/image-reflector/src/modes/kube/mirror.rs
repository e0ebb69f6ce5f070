//! The API mirror (every replica) and the leadership it publishes.

use super::*;

/// Mirrors the objects `api` lists into the API state until `stop`; `synced` is set
/// after the first complete list.
pub(super) async fn mirror<K>(
    api: Api<K>,
    config: watcher::Config,
    upsert: impl Fn(&K) + Send,
    remove: impl Fn(&str, &str) + Send,
    synced: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
{
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut known: BTreeSet<Key> = BTreeSet::new();
    let mut listing: BTreeSet<Key> = BTreeSet::new();
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            event = stream.next() => event,
        };
        match event {
            None => return,
            Some(Err(error)) => {
                tracing::warn!(kind = K::kind(&()).as_ref(), %error, "watch failed; retrying");
            }
            Some(Ok(WatchEvent::Init)) => listing.clear(),
            Some(Ok(WatchEvent::InitApply(obj))) => {
                listing.insert(key_of(&obj));
                upsert(&obj);
            }
            Some(Ok(WatchEvent::InitDone)) => {
                for gone in known.difference(&listing) {
                    remove(&gone.0, &gone.1);
                }
                known = std::mem::take(&mut listing);
                synced.send_replace(true);
            }
            Some(Ok(WatchEvent::Apply(obj))) => {
                known.insert(key_of(&obj));
                upsert(&obj);
            }
            Some(Ok(WatchEvent::Delete(obj))) => {
                let key = key_of(&obj);
                known.remove(&key);
                remove(&key.0, &key.1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Leadership

/// Keeps `state`'s leader information current and returns whether this replica leads.
pub(super) async fn leadership(
    client: Client,
    settings: &KubeSettings,
    state: ApiState,
    stop: watch::Receiver<bool>,
) -> Result<(watch::Receiver<bool>, tokio::task::JoinHandle<()>), KubeModeError> {
    let election = settings
        .controllers
        .leadership(client, SERVICE, &settings.advertise_url, stop)
        .await?;
    if !settings.controllers.leader_election.enabled {
        state.set_leader(LeaderInfo::leader());
        return Ok((election.leading, election.task));
    }
    let (leading, mut holder, election_task) = (election.leading, election.holder, election.task);
    let mut watching = leading.clone();
    // Followers forward `/tags` to the leader's advertised URL, read from the holder identity.
    let task = tokio::spawn(async move {
        loop {
            let info = if *watching.borrow_and_update() {
                LeaderInfo::leader()
            } else {
                LeaderInfo::follower(
                    holder
                        .borrow_and_update()
                        .as_deref()
                        .and_then(leader_url_of),
                )
            };
            if state.leader() != info {
                tracing::info!(
                    is_leader = info.is_leader,
                    leader_url = info.leader_url,
                    "leadership"
                );
                state.set_leader(info);
            }
            tokio::select! {
                changed = watching.changed() => if changed.is_err() { break },
                changed = holder.changed() => if changed.is_err() { break },
            }
        }
        if let Err(error) = election_task.await {
            tracing::warn!(%error, "leader election task failed");
        }
    });
    Ok((leading, task))
}
