//! Data parallelism: one replica of the model per device, each on its share of every
//! micro-batch, gradients averaged by burn-collective's all-reduce before every optimizer step
//! (burn's own DDP building block; the local server aggregates between threads of this process).
//!
//! Every replica takes the same optimizer step, so the replicas stay identical. Failures are
//! agreed on: at the start of every step each replica says whether it failed, and all stop
//! together, so no replica is left waiting in an all-reduce.

use anyhow::{anyhow, Result};
use burn::collective::{
    all_reduce, finish_collective, register, reset_collective, CollectiveConfig, PeerId,
    ReduceOperation,
};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::TensorPrimitive;

/// Where a replica stands among the replicas of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rank {
    pub index: usize,
    pub count: usize,
}

impl Rank {
    /// The only replica of a single-device run.
    pub const SINGLE: Rank = Rank { index: 0, count: 1 };

    /// Rank 0 writes metrics, checkpoints and plots.
    pub fn is_main(&self) -> bool {
        self.index == 0
    }

    /// This replica's rows of a micro-batch of `batch` samples (`batch` divides evenly).
    pub fn rows(&self, batch: usize) -> std::ops::Range<usize> {
        let share = batch / self.count;
        self.index * share..(self.index + 1) * share
    }

    /// The seed of this replica's own randomness (drop path): rank 0 keeps `seed`, so a
    /// single-device run draws what it always drew.
    pub fn seed(&self, seed: u64) -> u64 {
        seed ^ (self.index as u64).wrapping_mul(0xA24B_AED4_963E_E407)
    }
}

/// A replica stopped because another one failed; that replica reports the cause.
#[derive(Debug, thiserror::Error)]
#[error("stopped at step {step}: another replica failed")]
pub struct StoppedByPeer {
    pub step: usize,
}

/// The collective operations of one replica; with one replica every operation is the identity.
pub struct Collective<B: AutodiffBackend> {
    rank: Rank,
    device: B::Device,
}

impl<B: AutodiffBackend> Collective<B> {
    /// Joins the run's collective (blocks until every replica has joined).
    pub fn join(rank: Rank, device: B::Device) -> Result<Self> {
        if rank.count > 1 {
            let config = CollectiveConfig::default().with_num_devices(rank.count);
            register::<B::InnerBackend>(PeerId::from(rank.index), device.clone(), config)
                .map_err(|e| anyhow!("data parallel: replica {} cannot join: {e:?}", rank.index))?;
        }
        Ok(Self { rank, device })
    }

    /// Clears what an earlier, failed run may have left registered. Called once, before the
    /// replicas of a new run join.
    pub fn reset() {
        reset_collective::<B::InnerBackend>();
    }

    /// The gradients averaged over the replicas.
    pub fn mean_gradients(&self, grads: GradientsParams) -> Result<GradientsParams> {
        if self.rank.count == 1 {
            return Ok(grads);
        }
        grads
            .all_reduce::<B::InnerBackend>(PeerId::from(self.rank.index), ReduceOperation::Mean)
            .map_err(|e| anyhow!("data parallel: gradient all-reduce failed: {e:?}"))
    }

    /// `values` averaged over the replicas.
    pub fn mean(&self, values: &[f64]) -> Result<Vec<f64>> {
        if self.rank.count == 1 {
            return Ok(values.to_vec());
        }
        let local: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let tensor = Tensor::<B::InnerBackend, 1>::from_floats(local.as_slice(), &self.device);
        let reduced = all_reduce::<B::InnerBackend>(
            PeerId::from(self.rank.index),
            tensor.into_primitive().tensor(),
            ReduceOperation::Mean,
        )
        .map_err(|e| anyhow!("data parallel: all-reduce failed: {e:?}"))?;
        let reduced = Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(reduced));
        Ok(reduced
            .into_data()
            .convert::<f64>()
            .to_vec()
            .expect("f64 values"))
    }

    /// Whether any replica failed at this point (every replica must ask at the same points).
    pub fn any_failed(&self, failed: bool) -> Result<bool> {
        Ok(self.mean(&[f64::from(u8::from(failed))])?[0] > 0.0)
    }

    /// Leaves the collective at the end of a run.
    pub fn leave(self) -> Result<()> {
        if self.rank.count > 1 {
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
}
