use std::{
    collections::HashMap,
    marker::PhantomData,
    sync::{Arc, Mutex},
};

use burn_communication::{CommunicationChannel, Message, Protocol, ProtocolClient};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, RwLock};

use crate::{NodeId, node::base::NodeState};

/// Handles the status of sync requests from other nodes
///
/// eesmm's patch (see vendor/README.md): 0.21.0 kept the ids of the peers that had synced in a
/// list it never emptied (it cleared a copy), so every barrier after the first waited forever;
/// and a request arriving between its check and its wait was missed. Here each node counts the
/// barriers every peer has reached, and a barrier ends once every peer has reached this one.
pub(crate) struct SyncService<P: Protocol> {
    /// Current node's state, shared with the thread that does aggregations
    node_state: Arc<RwLock<Option<NodeState>>>,
    /// How many barriers each peer has reached (requests received from it).
    reached: Mutex<HashMap<NodeId, u64>>,
    /// How many barriers this node has passed.
    passed: Mutex<u64>,
    /// Notification on each incoming sync request
    sync_notif: Notify,

    _p: PhantomData<P>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SyncRequest(NodeId);

impl<P: Protocol> SyncService<P> {
    pub fn new(node_state: Arc<RwLock<Option<NodeState>>>) -> Self {
        Self {
            node_state,
            reached: Mutex::new(HashMap::new()),
            passed: Mutex::new(0),
            sync_notif: Notify::new(),
            _p: PhantomData,
        }
    }

    /// Sync with all peers.
    pub async fn sync(&self) {
        // we can't sync while we register
        let node_state = self.node_state.read().await;
        let node_state = node_state
            .as_ref()
            .expect("Trying to sync a node before having registered to the orchestrator");
        let round = {
            let mut passed = self.passed.lock().unwrap();
            *passed += 1;
            *passed
        };

        for (id, addr) in &node_state.nodes {
            if *id == node_state.node_id {
                continue;
            }

            let mut connection = P::Client::connect(addr.clone(), "sync")
                .await
                .expect("Couldn't connect to peer for sync");
            let msg = SyncRequest(node_state.node_id);
            let sync_bytes = rmp_serde::to_vec(&msg).unwrap();
            connection
                .send(Message::new(sync_bytes.into()))
                .await
                .expect("Peer closed connection unexpectedly");
        }
        loop {
            // Registered before the check, so a request arriving in between still wakes us.
            let notified = self.sync_notif.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let reached = self.reached.lock().unwrap();
                let all_reached = node_state
                    .nodes
                    .keys()
                    .filter(|id| **id != node_state.node_id)
                    .all(|id| reached.get(id).copied().unwrap_or(0) >= round);
                if all_reached {
                    return;
                }
            }
            // Wait for the next sync to come in
            notified.await
        }
    }

    pub async fn handle_sync_connection<C: CommunicationChannel>(&self, mut channel: C) {
        let msg = channel.recv().await.unwrap();
        let Some(msg) = msg else {
            return;
        };

        let msg = rmp_serde::from_slice::<SyncRequest>(&msg.data).unwrap();

        *self.reached.lock().unwrap().entry(msg.0).or_insert(0) += 1;

        self.sync_notif.notify_waiters();
    }
}
