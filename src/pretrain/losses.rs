//! Masked reconstruction losses, the permutation-invariant assignment of EESMM's two heads, and
//! the separation figure that says whether the two reconstructions came apart.
//!
//! Shapes: predictions and targets `[B, C, S, S]`; masks `[B, 1, S, S]` (1 = masked, the cells
//! the loss is taken on).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    #[default]
    L1,
    L2,
}

/// Which reconstruction head answers for which image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// Head 1 reconstructs image 1, head 2 image 2 (the paper).
    Fixed,
    /// Per pair, whichever of the two head-to-image assignments has the lower loss (the
    /// permutation-invariant training of speech source separation). The default, with
    /// complementary masks (docs/pretraining.md).
    #[default]
    Pit,
}

/// `err = |pred − target|` (L1) or its square (L2), `[B, C, S, S]`.
fn error<B: Backend>(pred: Tensor<B, 4>, target: Tensor<B, 4>, kind: LossKind) -> Tensor<B, 4> {
    let diff = pred - target;
    match kind {
        LossKind::L1 => diff.abs(),
        LossKind::L2 => diff.powi_scalar(2),
    }
}

/// Mean error over the masked pixels of the batch: `Σ M·err / (ΣM · C)`, `[1]`.
pub fn masked_loss<B: Backend>(
    pred: Tensor<B, 4>,
    target: Tensor<B, 4>,
    mask: Tensor<B, 4>,
    kind: LossKind,
) -> Tensor<B, 1> {
    let channels = pred.dims()[1] as f64;
    let masked = (error(pred, target, kind) * mask.clone()).sum();
    masked / (mask.sum().mul_scalar(channels).add_scalar(1e-5))
}

/// The same per pair: `[B]`.
pub fn masked_loss_per_pair<B: Backend>(
    pred: Tensor<B, 4>,
    target: Tensor<B, 4>,
    mask: Tensor<B, 4>,
    kind: LossKind,
) -> Tensor<B, 1> {
    let [b, channels, _, _] = pred.dims();
    let per_pixel = |t: Tensor<B, 4>| t.reshape([b as i32, -1]).sum_dim(1).reshape([b]);
    let masked = per_pixel(error(pred, target, kind) * mask.clone());
    masked / per_pixel(mask).mul_scalar(channels as f64).add_scalar(1e-5)
}

/// `[B]` → `[B, 1, 1, 1]`, to scale images per pair.
pub fn per_image<B: Backend>(values: Tensor<B, 1>) -> Tensor<B, 4> {
    let b = values.dims()[0];
    values.reshape([b, 1, 1, 1])
}

/// The heads `(r1, r2)` reordered so that the first answers for image 1: per pair, swapped
/// where `L(r2→T1) + L(r1→T2) < L(r1→T1) + L(r2→T2)`. The choice is not differentiated; the
/// gradient flows through the chosen assignment, as in PIT.
pub fn assign_pit<B: Backend>(
    (r1, r2): (Tensor<B, 4>, Tensor<B, 4>),
    (t1, m1): (&Tensor<B, 4>, &Tensor<B, 4>),
    (t2, m2): (&Tensor<B, 4>, &Tensor<B, 4>),
    kind: LossKind,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let loss = |r: &Tensor<B, 4>, t: &Tensor<B, 4>, m: &Tensor<B, 4>| {
        masked_loss_per_pair(r.clone().detach(), t.clone(), m.clone(), kind)
    };
    let kept = loss(&r1, t1, m1) + loss(&r2, t2, m2);
    let swapped = loss(&r2, t1, m1) + loss(&r1, t2, m2);
    let swap = per_image(swapped.lower(kept).float()); // [B, 1, 1, 1], 1 = swap
    let keep = swap.clone().neg() + 1.0;
    let first = r1.clone() * keep.clone() + r2.clone() * swap.clone();
    let second = r2 * keep + r1 * swap;
    (first, second)
}

/// How much closer a reconstruction is to its own image than to the other one, on the cells
/// masked in its own image: `L(Î, T_other) / L(Î, T_own)` over `mask`, `[1]`. 1 means no
/// separation (the same blend for both); an exact reconstruction of its own image is large.
pub fn separation<B: Backend>(
    pred: Tensor<B, 4>,
    own: Tensor<B, 4>,
    other: Tensor<B, 4>,
    mask: Tensor<B, 4>,
    kind: LossKind,
) -> Tensor<B, 1> {
    let pred = pred.detach();
    let to_other = masked_loss(pred.clone(), other, mask.clone(), kind);
    let to_own = masked_loss(pred, own, mask, kind);
    (to_other + 1e-8) / (to_own + 1e-8)
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = crate::backend::Cpu;

    fn tensor(values: Vec<f32>, shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    #[test]
    fn masked_loss_averages_over_masked_pixels_and_channels() {
        let device = Default::default();
        let pred = Tensor::<B, 4>::zeros([1, 2, 2, 2], &device);
        let target = Tensor::<B, 4>::ones([1, 2, 2, 2], &device) * 3.0;
        let mask = tensor(vec![1.0, 0.0, 0.0, 0.0], [1, 1, 2, 2]);
        let l1 =
            masked_loss(pred.clone(), target.clone(), mask.clone(), LossKind::L1).into_scalar();
        let l2 = masked_loss(pred, target, mask, LossKind::L2).into_scalar();
        assert!(
            (l1 - 3.0).abs() < 1e-4 && (l2 - 9.0).abs() < 1e-3,
            "{l1} {l2}"
        );
    }

    #[test]
    fn the_per_pair_loss_keeps_each_pair_apart() {
        // Pair 0 is off by 1 on its one masked pixel, pair 1 by 2 on both of its masked pixels.
        let pred = tensor(vec![1.0, 0.0, 2.0, 2.0], [2, 1, 1, 2]);
        let target = tensor(vec![0.0; 4], [2, 1, 1, 2]);
        let mask = tensor(vec![1.0, 0.0, 1.0, 1.0], [2, 1, 1, 2]);
        let per_pair: Vec<f32> = masked_loss_per_pair(pred, target, mask, LossKind::L1)
            .into_data()
            .to_vec()
            .unwrap();
        assert!((per_pair[0] - 1.0).abs() < 1e-4 && (per_pair[1] - 2.0).abs() < 1e-4);
    }

    /// Pair 0's heads are in order, pair 1's swapped: PIT reorders pair 1 only, and the loss
    /// of the chosen assignment is the minimum of the two.
    #[test]
    fn pit_takes_the_better_assignment_per_pair() {
        let t1 = tensor(vec![1.0, 1.0, 1.0, 1.0], [2, 1, 1, 2]);
        let t2 = tensor(vec![-1.0, -1.0, -1.0, -1.0], [2, 1, 1, 2]);
        let r1 = tensor(vec![0.9, 1.0, -1.0, -0.8], [2, 1, 1, 2]);
        let r2 = tensor(vec![-1.0, -1.0, 1.0, 0.9], [2, 1, 1, 2]);
        let mask = tensor(vec![1.0; 4], [2, 1, 1, 2]);
        let (first, second) = assign_pit(
            (r1.clone(), r2.clone()),
            (&t1, &mask),
            (&t2, &mask),
            LossKind::L1,
        );
        let first: Vec<f32> = first.into_data().to_vec().unwrap();
        let second: Vec<f32> = second.into_data().to_vec().unwrap();
        assert_eq!(first, vec![0.9, 1.0, 1.0, 0.9]);
        assert_eq!(second, vec![-1.0, -1.0, -1.0, -0.8]);
        let loss = |a: Tensor<B, 4>, b: Tensor<B, 4>| {
            (masked_loss_per_pair(a, t1.clone(), mask.clone(), LossKind::L1)
                + masked_loss_per_pair(b, t2.clone(), mask.clone(), LossKind::L1))
            .into_data()
            .to_vec::<f32>()
            .unwrap()
        };
        let (kept, swapped) = (loss(r1.clone(), r2.clone()), loss(r2, r1));
        let chosen = loss(tensor(first, [2, 1, 1, 2]), tensor(second, [2, 1, 1, 2]));
        for i in 0..2 {
            assert!(
                (chosen[i] - kept[i].min(swapped[i])).abs() < 1e-6,
                "{chosen:?}"
            );
        }
    }

    /// A reconstruction `¾·T1 + ¼·T2` is 3x closer to T1 than to T2 in L1; the average of the
    /// two images is equally close to both (1.0, no separation).
    #[test]
    fn separation_of_a_constructed_blend() {
        let device = Default::default();
        let t1 = Tensor::<B, 4>::random([2, 1, 4, 4], burn::tensor::Distribution::Default, &device);
        let t2 = Tensor::<B, 4>::random([2, 1, 4, 4], burn::tensor::Distribution::Default, &device);
        let mask = Tensor::<B, 4>::ones([2, 1, 4, 4], &device);
        let of = |pred: Tensor<B, 4>, kind| {
            separation(pred, t1.clone(), t2.clone(), mask.clone(), kind).into_scalar()
        };
        let leaning = t1.clone() * 0.75 + t2.clone() * 0.25;
        let average = (t1.clone() + t2.clone()) * 0.5;
        assert!((of(leaning.clone(), LossKind::L1) - 3.0).abs() < 1e-3);
        assert!((of(leaning, LossKind::L2) - 9.0).abs() < 1e-2);
        assert!((of(average, LossKind::L1) - 1.0).abs() < 1e-4);
    }
}
