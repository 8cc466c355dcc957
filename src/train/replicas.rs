//! Data parallelism: one replica of the model per device, each on its share of every
//! micro-batch, gradients averaged by burn-collective's all-reduce before every optimizer step
//! (burn's own DDP building block; the local server aggregates between threads of this process).
//!
//! Every replica takes the same optimizer step, so the replicas stay identical. Failures are
//! agreed on: at the start of every step each replica says whether it failed, and all stop
//! together, so no replica is left waiting in an all-reduce; the agreement carries the failed
//! replica's error, so the replicas of other nodes (see [`super::nodes`]) can say what it was.

use std::sync::Mutex;

use anyhow::{anyhow, ensure, Result};
use burn::collective::{
    all_reduce, finish_collective, register, reset_collective, AllReduceStrategy, CollectiveConfig,
    CollectiveError, PeerId, ReduceOperation,
};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::TensorPrimitive;

use super::nodes::{self, Deadline, Nodes};

pub use super::nodes::Rank;

/// A replica stopped because another replica of its node failed; that replica reports the
/// cause.
#[derive(Debug, thiserror::Error)]
#[error("stopped at step {step}: another replica failed")]
pub struct StoppedByPeer {
    pub step: usize,
}

/// A replica stopped because a replica of another node failed, with that replica's cause.
#[derive(Debug, thiserror::Error)]
#[error("stopped at step {step}: node {node} failed: {cause}")]
pub struct NodeFailed {
    pub step: usize,
    pub node: usize,
    pub cause: String,
}

/// A replica's failure as the others learn it at a step's agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub rank: Rank,
    /// The failed replica's error, cut to [`CAUSE_BYTES`].
    pub cause: String,
}

/// The bytes of a failure's cause carried by the agreement.
pub const CAUSE_BYTES: usize = 254;
/// Floats per replica in the agreement: the flag, the cause's length, its bytes.
const SLOT: usize = 2 + CAUSE_BYTES;

/// The collective operations of one replica; with one replica every operation is the identity.
/// On several nodes every operation waits at most the nodes' timeout (see [`nodes`]).
pub struct Collective<B: AutodiffBackend> {
    rank: Rank,
    device: B::Device,
    nodes: &'static Nodes,
}

/// The replicas of this process registered with burn-collective in a multi-node run, and how
/// many there are: they stay registered for the process (see [`Collective::join`]).
static JOINED: Mutex<Option<(usize, Vec<usize>)>> = Mutex::new(None);

impl<B: AutodiffBackend> Collective<B> {
    /// Joins the run's collective (blocks until every replica of every node has joined).
    ///
    /// On several nodes a replica registers once per process and never leaves: burn-collective's
    /// orchestrator numbers nodes by how many are registered, so a node leaving and registering
    /// again for the next stage of a pipeline while another is still leaving the last one would
    /// take that node's number. The registration ends with the process.
    pub fn join(rank: Rank, device: B::Device) -> Result<Self> {
        let nodes = nodes::current();
        let collective = Self {
            rank,
            device: device.clone(),
            nodes,
        };
        if rank.count == 1 {
            return Ok(collective);
        }
        let local = rank.count / nodes.count;
        let mut config = CollectiveConfig::default().with_num_devices(local);
        if nodes.is_multi() {
            let mut joined = JOINED.lock().expect("joined replicas");
            let (count, ranks) = joined.get_or_insert((rank.count, Vec::new()));
            ensure!(
                *count == rank.count,
                "multi-node: this process joined the run with {} replicas in all; a later stage \
                 asks for {}: every training stage of a multi-node run takes the same `device:`",
                count,
                rank.count
            );
            if ranks.contains(&rank.index) {
                return Ok(collective);
            }
            ranks.push(rank.index);
            drop(joined);
            config = config
                .with_num_nodes(nodes.count as u32)
                .with_global_address(
                    nodes
                        .coordinator
                        .ws_url()
                        .parse()
                        .map_err(|e| anyhow!("{e}"))?,
                )
                .with_node_address(nodes.address.ws_url().parse().map_err(|e| anyhow!("{e}"))?)
                .with_data_service_port(nodes.address.port)
                // The ring splits every tensor in one slice per node; a tree takes any shape.
                .with_global_all_reduce_strategy(AllReduceStrategy::Tree(2));
        }
        let _deadline = collective.deadline(format!(
            "joining the run at the coordinator {}",
            nodes.coordinator
        ));
        register::<B::InnerBackend>(PeerId::from(rank.index), device, config)
            .map_err(|e| anyhow!("data parallel: replica {} cannot join: {e:?}", rank.index))?;
        Ok(collective)
    }

    /// Clears what an earlier, failed run may have left registered. Called once, before the
    /// replicas of a new run join (not on several nodes, whose replicas stay registered).
    pub fn reset() {
        if !nodes::current().is_multi() {
            reset_collective::<B::InnerBackend>();
        }
    }

    /// The deadline of one collective operation on several nodes (none on one node, where a
    /// failed replica is agreed on and no replica can vanish alone).
    fn deadline(&self, what: String) -> Option<Deadline> {
        let nodes = self.nodes;
        nodes.is_multi().then(|| {
            nodes::deadline(
                nodes.timeout,
                format!(
                    "node {}: {what}: no answer from {} within {} s (--node-timeout): it stopped, \
                     hangs or cannot be reached; stopping this node too",
                    nodes.rank,
                    nodes.others(),
                    nodes.timeout.as_secs()
                ),
            )
        })
    }

    /// An error of the collective, naming the nodes it was exchanging with.
    fn lost(&self, what: &str, error: CollectiveError) -> anyhow::Error {
        match self.nodes.is_multi() {
            true => anyhow!(
                "node {}: {what} failed, {} stopped or cannot be reached: {error:?}",
                self.nodes.rank,
                self.nodes.others()
            ),
            false => anyhow!("data parallel: {what} failed: {error:?}"),
        }
    }

    /// The gradients of `model`'s parameters averaged over the replicas, one all-reduce per
    /// parameter in the model's own order (burn's `GradientsParams::all_reduce` orders them by
    /// parameter id, which is random per process, so two nodes would pair different tensors).
    pub fn mean_gradients<M: AutodiffModule<B>>(
        &self,
        step: usize,
        model: &M,
        grads: GradientsParams,
    ) -> Result<GradientsParams> {
        if self.rank.count == 1 {
            return Ok(grads);
        }
        let _deadline = self.deadline(format!("the gradient all-reduce of step {step}"));
        let mut mean = MeanGradients::<B> {
            peer: PeerId::from(self.rank.index),
            grads,
            error: None,
            _backend: std::marker::PhantomData,
        };
        model.visit(&mut mean);
        match mean.error {
            Some(error) => {
                Err(self.lost(&format!("the gradient all-reduce of step {step}"), error))
            }
            None => Ok(mean.grads),
        }
    }

    /// `values` averaged over the replicas.
    pub fn mean(&self, step: usize, values: &[f64]) -> Result<Vec<f64>> {
        if self.rank.count == 1 {
            return Ok(values.to_vec());
        }
        let local: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let what = format!("the loss all-reduce of step {step}");
        self.all_reduce(&local, ReduceOperation::Mean, &what)
    }

    /// `values` reduced over the replicas by `op`, under the deadline.
    fn all_reduce(&self, values: &[f32], op: ReduceOperation, what: &str) -> Result<Vec<f64>> {
        let _deadline = self.deadline(what.to_string());
        let tensor = Tensor::<B::InnerBackend, 1>::from_floats(values, &self.device);
        let reduced = all_reduce::<B::InnerBackend>(
            PeerId::from(self.rank.index),
            tensor.into_primitive().tensor(),
            op,
        )
        .map_err(|e| self.lost(what, e))?;
        let reduced = Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(reduced));
        Ok(reduced
            .into_data()
            .convert::<f64>()
            .to_vec()
            .expect("f64 values"))
    }

    /// Every replica's `values` (the same number on each), in rank order (exact for integers
    /// below 2^24 and for any f32 equal on every replica).
    pub fn gather(&self, what: &str, values: &[f32]) -> Result<Vec<Vec<f64>>> {
        if self.rank.count == 1 {
            return Ok(vec![values.iter().map(|&v| f64::from(v)).collect()]);
        }
        let k = values.len();
        let mut slots = vec![0.0f32; self.rank.count * k];
        slots[self.rank.index * k..][..k].copy_from_slice(values);
        let summed = self.all_reduce(&slots, ReduceOperation::Sum, what)?;
        Ok(summed.chunks(k).map(<[f64]>::to_vec).collect())
    }

    /// The agreement at the start of step `step` (every replica asks at the same points): this
    /// replica's failure, if any, in; the first failed replica and its cause out, if any.
    pub fn agree(&self, step: usize, failure: Option<&str>) -> Result<Option<Failure>> {
        if self.rank.count == 1 {
            return Ok(failure.map(|cause| Failure {
                rank: self.rank,
                cause: cause.to_string(),
            }));
        }
        let mut slots = vec![0.0f32; self.rank.count * SLOT];
        if let Some(cause) = failure {
            encode_failure(&mut slots[self.rank.index * SLOT..][..SLOT], cause);
        }
        let what = format!("the agreement at step {step}");
        let summed = self.all_reduce(&slots, ReduceOperation::Sum, &what)?;
        Ok(decode_failures(&summed, self.rank.count))
    }

    /// Leaves the collective at the end of a run (on several nodes, at the end of the process).
    pub fn leave(self) -> Result<()> {
        if self.rank.count > 1 && !self.nodes.is_multi() {
            finish_collective::<B::InnerBackend>(PeerId::from(self.rank.index)).map_err(|e| {
                anyhow!(
                    "data parallel: replica {} cannot leave: {e:?}",
                    self.rank.index
                )
            })?;
        }
        Ok(())
    }
}

/// Writes a failure into its replica's slot of the agreement: 1, the length, the bytes (a sum
/// with the other replicas' zeros keeps every byte exact).
fn encode_failure(slot: &mut [f32], cause: &str) {
    let mut end = cause.len().min(CAUSE_BYTES);
    while !cause.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = &cause.as_bytes()[..end];
    slot[0] = 1.0;
    slot[1] = bytes.len() as f32;
    for (value, &byte) in slot[2..].iter_mut().zip(bytes) {
        *value = f32::from(byte);
    }
}

/// The first failed replica of a summed agreement, with its cause.
fn decode_failures(summed: &[f64], count: usize) -> Option<Failure> {
    summed.chunks(SLOT).enumerate().find_map(|(index, slot)| {
        (slot[0] > 0.5).then(|| {
            let len = (slot[1].round() as usize).min(CAUSE_BYTES);
            let bytes: Vec<u8> = slot[2..2 + len].iter().map(|&b| b.round() as u8).collect();
            Failure {
                rank: Rank { index, count },
                cause: String::from_utf8_lossy(&bytes).into_owned(),
            }
        })
    })
}

/// Averages every parameter's gradient over the replicas, in the order the model visits them.
struct MeanGradients<B: AutodiffBackend> {
    peer: PeerId,
    grads: GradientsParams,
    error: Option<CollectiveError>,
    _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for MeanGradients<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.error.is_some() {
            return;
        }
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) else {
            return;
        };
        match all_reduce::<B::InnerBackend>(
            self.peer,
            grad.into_primitive().tensor(),
            ReduceOperation::Mean,
        ) {
            Ok(mean) => self.grads.register::<B::InnerBackend, D>(
                param.id,
                Tensor::from_primitive(TensorPrimitive::Float(mean)),
            ),
            Err(error) => self.error = Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_take_disjoint_rows_and_rank_0_keeps_the_seed() {
        let ranks = (0..4).map(|index| Rank { index, count: 4 });
        let rows: Vec<_> = ranks.clone().map(|r| r.rows(8)).collect();
        assert_eq!(rows, vec![0..2, 2..4, 4..6, 6..8]);
        assert_eq!(Rank::SINGLE.rows(8), 0..8);
        assert_eq!(Rank::SINGLE.seed(7), 7);
        let seeds: std::collections::HashSet<u64> = ranks.map(|r| r.seed(7)).collect();
        assert_eq!(seeds.len(), 4);
    }

    #[test]
    fn the_agreement_carries_the_first_failure_and_its_cause() {
        let mut summed = vec![0.0f32; 3 * SLOT];
        encode_failure(&mut summed[SLOT..2 * SLOT], "data: 07.png: cannot decode");
        let long = "é".repeat(200);
        encode_failure(&mut summed[2 * SLOT..], &long);
        let summed: Vec<f64> = summed.iter().map(|&v| f64::from(v)).collect();
        let failure = decode_failures(&summed, 3).unwrap();
        assert_eq!(failure.rank, Rank { index: 1, count: 3 });
        assert_eq!(failure.cause, "data: 07.png: cannot decode");
        let last = decode_failures(&summed[2 * SLOT..], 1).unwrap();
        assert_eq!(last.cause, "é".repeat(CAUSE_BYTES / 2));
        assert_eq!(decode_failures(&vec![0.0; 2 * SLOT], 2), None);
    }
}
