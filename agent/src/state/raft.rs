//! openraft wiring: the type configuration, the member record and the peer network seam.

use std::fmt;
use std::io::Cursor;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::command::Command;
use super::outcome::{Applied, Rejection};

/// A raft node id: a random u64 chosen on a host's first start and persisted with its state.
pub type NodeId = u64;

/// What the raft membership records about a host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The host's node name (the Kubernetes Node object's name).
    pub name: String,
    /// Where peers reach its raft endpoint; empty until the cluster issue gives hosts one.
    pub address: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.address.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}@{}", self.name, self.address)
        }
    }
}

/// The response of the state machine to one raft entry: the outcome of its command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response(pub Result<Applied, Rejection>);

openraft::declare_raft_types!(
    /// berth's openraft type configuration: entries carry [`Command`]s, the state machine
    /// answers with a [`Response`], snapshots are one in-memory blob.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The raft handle type.
pub type Raft = openraft::Raft<TypeConfig>;

/// Connections to raft peers.
///
/// This is the seam the cluster issue fills in: a one-member group never contacts a peer, so
/// for now every connection reports the peer as unreachable (openraft then backs off and
/// retries). It does not pretend to deliver anything.
#[derive(Clone, Debug, Default)]
pub struct PeerNetwork;

/// A connection to one peer; see [`PeerNetwork`].
#[derive(Clone, Debug)]
pub struct PeerConnection {
    target: NodeId,
    member: Member,
}

/// The error every peer RPC returns until peer networking exists.
#[derive(Debug, thiserror::Error)]
#[error("raft peer {target} ({member}) is unreachable: peer networking is not implemented yet")]
pub struct PeerNetworkMissing {
    target: NodeId,
    member: Member,
}

impl PeerConnection {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, Member, E> {
        RPCError::Unreachable(Unreachable::new(&PeerNetworkMissing {
            target: self.target,
            member: self.member.clone(),
        }))
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerConnection {
        PeerConnection {
            target,
            member: node.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}

#[cfg(test)]
mod tests {
    use openraft::Vote;
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::VoteRequest;

    use super::*;

    #[tokio::test]
    async fn peers_are_reported_unreachable_until_peer_networking_exists() {
        let member = Member {
            name: "host-b".into(),
            address: "10.0.0.2:7070".into(),
        };
        let mut connection = PeerNetwork.new_client(42, &member).await;
        let request = VoteRequest::new(Vote::new(1, 7), None);
        let option = RPCOption::new(std::time::Duration::from_secs(1));
        let error = connection.vote(request, option).await.unwrap_err();
        let RPCError::Unreachable(unreachable) = &error else {
            panic!("{error:?}")
        };
        let message = unreachable.to_string();
        assert!(
            message.contains("raft peer 42 (host-b@10.0.0.2:7070)"),
            "{message}"
        );
        assert!(message.contains("not implemented"), "{message}");
    }
}
