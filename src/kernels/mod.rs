//! The Swin block's hot operations as one backend extension (burn's custom-op mechanism):
//! window attention (`softmax(q kᵀ · scale + bias + mask) v` over every window and head), LayerNorm
//! and the exact GELU, each one op with its own backward instead of 5–15 small ones.
//!
//! - [`SwinOps`] is the extension trait. Its default methods are [`composed`] (burn tensor ops),
//!   what CUDA and Flex run.
//! - burn's CPU backend, NdArray, overrides them with the rayon-parallel kernels of [`cpu`]
//!   (`ndarray.rs`).
//! - `Autodiff<B>` implements them for any `B: SwinOps` as one tracked op whose backward is
//!   `B`'s `*_backward` (`autodiff.rs`).
//!
//! The model calls the tensor-level functions below ([`window_attention`], [`layer_norm`],
//! [`gelu`]).

pub mod composed;
pub mod cpu;
pub mod gemm;
pub mod math;

mod autodiff;
mod ndarray;

use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorMetadata;

use composed::{primitive, tensor};

/// LayerNorm epsilon of every norm in the model (timm's default).
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// Window attention, LayerNorm and GELU as backend operations. Shapes: `qkv: [W, N, 3C]` with
/// timm's layout on the last axis (q, k, v; each heads × head_dim), `bias: [heads, N, N]`, `mask:
/// [nW, N, N]` (added to window `w` as `mask[w % nW]`), attention output `[W, N, C]`; Linear and
/// LayerNorm act on the last axis of any shape, GELU element-wise.
pub trait SwinOps: Backend {
    /// `x: [B, H, W, C]` rolled by `-shift` on both axes and cut into `window × window` windows,
    /// `[B·nW, window², C]` (timm's `torch.roll` + `window_partition`).
    fn fused_window_partition(
        x: FloatTensor<Self>,
        window: usize,
        shift: usize,
    ) -> FloatTensor<Self> {
        composed::window_partition_shifted::<Self>(x, window, shift)
    }

    /// The inverse of [`SwinOps::fused_window_partition`]: `[B·nW, window², C]` →
    /// `[B, height, width, C]`.
    fn fused_window_merge(
        windows: FloatTensor<Self>,
        window: usize,
        shift: usize,
        height: usize,
        width: usize,
    ) -> FloatTensor<Self> {
        composed::window_merge_shifted::<Self>(windows, window, shift, height, width)
    }

    /// `x · weight + bias`: `x: [.., in]` → `[.., out]`, `weight: [in, out]` (burn's `Linear`
    /// layout), `bias: [out]`. Leading axes are taken as rows, so no reshape is needed (burn's
    /// NdArray copies the data on every reshape).
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed::linear::<Self>(x, weight, bias)
    }

    /// `(dx, dweight, dbias)`, `dx` of `x`'s shape.
    fn fused_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        d_y: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed::linear_backward::<Self>(x, weight, d_y)
    }

    /// The attention output.
    fn fused_window_attention(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: Option<FloatTensor<Self>>,
        heads: usize,
    ) -> FloatTensor<Self> {
        Self::fused_window_attention_saving_probs(qkv, bias, mask, heads).0
    }

    /// The attention output and the probabilities `[W, heads, N, N]`, the backward's state.
    fn fused_window_attention_saving_probs(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: Option<FloatTensor<Self>>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed::window_attention::<Self>(qkv, bias, mask, heads)
    }

    /// `(d_qkv, d_bias)`, `d_bias` summed over windows.
    fn fused_window_attention_backward(
        qkv: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        d_out: FloatTensor<Self>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed::window_attention_backward::<Self>(qkv, probs, d_out, heads)
    }

    /// LayerNorm over the last axis of `x: [.., C]`.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        Self::fused_layer_norm_saving_stats(x, gamma, beta, eps).0
    }

    /// LayerNorm and the per-row `[mean, 1/σ]`, `[rows, 2]`, the backward's state.
    fn fused_layer_norm_saving_stats(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed::layer_norm::<Self>(x, gamma, beta, eps)
    }

    /// `(dx, dgamma, dbeta)`.
    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        d_y: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed::layer_norm_backward::<Self>(x, gamma, stats, d_y)
    }

    /// Exact (erf) GELU, element-wise on any shape.
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::gelu::<Self>(x)
    }

    /// `dx` of [`SwinOps::fused_gelu`].
    fn fused_gelu_backward(x: FloatTensor<Self>, d_y: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::gelu_backward::<Self>(x, d_y)
    }
}

/// A training backend whose inner (inference) backend has the same operations.
pub trait TrainBackend: AutodiffBackend<InnerBackend: SwinOps> + SwinOps {}

impl<B> TrainBackend for B
where
    B: AutodiffBackend + SwinOps,
    B::InnerBackend: SwinOps,
{
}

#[cfg(feature = "cuda")]
impl SwinOps for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl SwinOps for burn::backend::Wgpu {}

#[cfg(feature = "flex")]
impl SwinOps for burn::backend::Flex {}

/// `layer` applied as one matrix product over all leading axes: `[.., in]` → `[.., out]`. (burn's
/// `Linear` on a rank > 2 input runs one small product per leading index.)
pub fn linear<B: SwinOps, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    affine(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
}

/// `x · weight + bias` over the last axis: `x: [.., in]`, `weight: [in, out]`, `bias: [out]`.
pub fn affine<B: SwinOps, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    // A missing bias is a constant zero: no gradient.
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[1]], &x.device()));
    tensor(B::fused_linear(
        primitive(x),
        primitive(weight),
        primitive(bias),
    ))
}

/// `[B, H, W, C]` → windows `[B·nW, window², C]` of the map rolled by `-shift`.
pub fn window_partition<B: SwinOps>(x: Tensor<B, 4>, window: usize, shift: usize) -> Tensor<B, 3> {
    tensor(B::fused_window_partition(primitive(x), window, shift))
}

/// Windows `[B·nW, window², C]` → `[B, height, width, C]`, rolled back by `+shift`.
pub fn window_merge<B: SwinOps>(
    windows: Tensor<B, 3>,
    window: usize,
    shift: usize,
    height: usize,
    width: usize,
) -> Tensor<B, 4> {
    tensor(B::fused_window_merge(
        primitive(windows),
        window,
        shift,
        height,
        width,
    ))
}

/// Window attention: `qkv: [W, N, 3C]`, `bias: [heads, N, N]`, `mask: [nW, N, N]` → `[W, N, C]`.
pub fn window_attention<B: SwinOps>(
    qkv: Tensor<B, 3>,
    bias: Tensor<B, 3>,
    mask: Option<&Tensor<B, 3>>,
    heads: usize,
) -> Tensor<B, 3> {
    tensor(B::fused_window_attention(
        primitive(qkv),
        primitive(bias),
        mask.map(|m| primitive(m.clone())),
        heads,
    ))
}

/// `norm` applied over the last axis (epsilon [`LAYER_NORM_EPS`]).
pub fn layer_norm<B: SwinOps, const D: usize>(
    norm: &LayerNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let Some(beta) = &norm.beta else {
        return norm.forward(x);
    };
    tensor(B::fused_layer_norm(
        primitive(x),
        primitive(norm.gamma.val()),
        primitive(beta.val()),
        LAYER_NORM_EPS,
    ))
}

/// Exact (erf) GELU.
pub fn gelu<B: SwinOps, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    tensor(B::fused_gelu(primitive(x)))
}

/// Shape of a primitive, for the kernels.
fn dims<B: Backend>(x: &FloatTensor<B>) -> Vec<usize> {
    x.shape().to_vec()
}

#[cfg(test)]
mod tests {
    //! The NdArray kernels against the composed ops (forward and backward), and the composed
    //! backward against autodiff of the composed forward (what CUDA and Flex run).
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::Distribution;

    use super::*;

    type Cpu = NdArray;
    type Train = Autodiff<NdArray>;

    fn random<B: Backend, const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    fn max_diff<const D: usize>(a: Tensor<Cpu, D>, b: Tensor<Cpu, D>) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let diff: Vec<f32> = (a - b).abs().into_data().to_vec().unwrap();
        diff.into_iter().fold(
            0.0,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        )
    }

    /// qkv, bias, mask.
    type AttentionCase = (Tensor<Cpu, 3>, Tensor<Cpu, 3>, Option<Tensor<Cpu, 3>>);

    /// 8 windows of 4x4 or 7x7 tokens, 3 heads of 8 channels, with and without a 4-window mask
    /// (entries 0 or -100, as the shift mask).
    fn attention_cases() -> Vec<AttentionCase> {
        let (heads, hd) = (3, 8);
        [16, 49]
            .into_iter()
            .flat_map(|n| {
                let qkv = random::<Cpu, 3>([8, n, 3 * heads * hd]);
                let bias = random::<Cpu, 3>([heads, n, n]);
                let mask = random::<Cpu, 3>([4, n, n]).lower_elem(-0.5).float() * -100.0;
                [(qkv.clone(), bias.clone(), None), (qkv, bias, Some(mask))]
            })
            .collect()
    }

    /// Linear, LayerNorm and GELU on `[2, 3, 5, C]` give the rows of the same ops on `[30, C]`,
    /// with the leading axes kept, in the kernels and in the composed ops (and their backward).
    #[test]
    fn linear_layer_norm_and_gelu_keep_leading_axes() {
        let x4 = random::<Cpu, 4>([2, 3, 5, 8]);
        let x2 = x4.clone().reshape([30, 8]);
        let (w, b) = (random::<Cpu, 2>([8, 6]), random::<Cpu, 1>([6]));
        let (gamma, beta) = (random::<Cpu, 1>([8]), random::<Cpu, 1>([8]));
        let d_y4 = random::<Cpu, 4>([2, 3, 5, 6]);
        let p = |t: &Tensor<Cpu, 4>| primitive(t.clone());
        let q = |t: &Tensor<Cpu, 2>| primitive(t.clone());
        let r = |t: &Tensor<Cpu, 1>| primitive(t.clone());
        // Each pair: (rank-4 result reshaped to rows, rank-2 result).
        type Op = fn(FloatTensor<Cpu>, FloatTensor<Cpu>, FloatTensor<Cpu>) -> FloatTensor<Cpu>;
        let linears: [Op; 2] = [Cpu::fused_linear, composed::linear::<Cpu>];
        for linear in linears {
            let y4: Tensor<Cpu, 4> = tensor(linear(p(&x4), q(&w), r(&b)));
            assert_eq!(y4.dims(), [2, 3, 5, 6]);
            let y2: Tensor<Cpu, 2> = tensor(linear(q(&x2), q(&w), r(&b)));
            assert_eq!(max_diff(y4.reshape([30, 6]), y2), 0.0);
        }
        let (fused, reference) = (
            Cpu::fused_linear_backward(p(&x4), q(&w), p(&d_y4)),
            composed::linear_backward::<Cpu>(p(&x4), q(&w), p(&d_y4)),
        );
        let (d_x, ref_d_x): (Tensor<Cpu, 4>, Tensor<Cpu, 4>) =
            (tensor(fused.0), tensor(reference.0));
        assert_eq!(d_x.dims(), [2, 3, 5, 8]);
        assert!(max_diff(d_x, ref_d_x) < 1e-5);

        let norms: [Op; 2] = [
            |x, g, b| Cpu::fused_layer_norm(x, g, b, 1e-5),
            |x, g, b| composed::layer_norm::<Cpu>(x, g, b, 1e-5).0,
        ];
        for norm in norms {
            let y4: Tensor<Cpu, 4> = tensor(norm(p(&x4), r(&gamma), r(&beta)));
            assert_eq!(y4.dims(), [2, 3, 5, 8]);
            let y2: Tensor<Cpu, 2> = tensor(norm(q(&x2), r(&gamma), r(&beta)));
            assert!(max_diff(y4.reshape([30, 8]), y2) < 1e-6);
        }
        let (_, stats) = Cpu::fused_layer_norm_saving_stats(p(&x4), r(&gamma), r(&beta), 1e-5);
        let d_y = random::<Cpu, 4>([2, 3, 5, 8]);
        let (fused, reference) = (
            Cpu::fused_layer_norm_backward(p(&x4), r(&gamma), stats.clone(), p(&d_y)),
            composed::layer_norm_backward::<Cpu>(p(&x4), r(&gamma), stats, p(&d_y)),
        );
        let (d_x, ref_d_x): (Tensor<Cpu, 4>, Tensor<Cpu, 4>) =
            (tensor(fused.0), tensor(reference.0));
        assert!(max_diff(d_x, ref_d_x) < 1e-4);

        let (g4, g_ref): (Tensor<Cpu, 4>, Tensor<Cpu, 4>) = (
            tensor(Cpu::fused_gelu(p(&x4))),
            tensor(composed::gelu::<Cpu>(p(&x4))),
        );
        assert_eq!(g4.dims(), [2, 3, 5, 8]);
        assert!(max_diff(g4, g_ref) < 1e-6);
        let (d4, d_ref): (Tensor<Cpu, 4>, Tensor<Cpu, 4>) = (
            tensor(Cpu::fused_gelu_backward(p(&x4), p(&d_y))),
            tensor(composed::gelu_backward::<Cpu>(p(&x4), p(&d_y))),
        );
        assert!(max_diff(d4, d_ref) < 1e-5);
    }

    #[test]
    fn cpu_linear_matches_the_composed_ops() {
        for (rows, d_in, d_out) in [(1, 3, 5), (300, 48, 144), (130, 192, 10)] {
            let (x, w, b) = (
                random::<Cpu, 2>([rows, d_in]),
                random::<Cpu, 2>([d_in, d_out]),
                random::<Cpu, 1>([d_out]),
            );
            let y = Cpu::fused_linear(
                primitive(x.clone()),
                primitive(w.clone()),
                primitive(b.clone()),
            );
            let reference =
                composed::linear::<Cpu>(primitive(x.clone()), primitive(w.clone()), primitive(b));
            assert!(max_diff::<2>(tensor(y), tensor(reference)) < 1e-4);
            let d_y = random::<Cpu, 2>([rows, d_out]);
            let fused = Cpu::fused_linear_backward(
                primitive(x.clone()),
                primitive(w.clone()),
                primitive(d_y.clone()),
            );
            let reference =
                composed::linear_backward::<Cpu>(primitive(x), primitive(w), primitive(d_y));
            assert!(max_diff::<2>(tensor(fused.0), tensor(reference.0)) < 1e-4);
            assert!(max_diff::<2>(tensor(fused.1), tensor(reference.1)) < 1e-3);
            assert!(max_diff::<1>(tensor(fused.2), tensor(reference.2)) < 1e-4);
        }
    }

    #[test]
    fn cpu_window_partition_and_merge_match_the_composed_ops() {
        for (window, shift) in [(4, 0), (4, 2), (7, 3)] {
            let side = 2 * window;
            let x = random::<Cpu, 4>([3, side, side, 5]);
            let windows = Cpu::fused_window_partition(primitive(x.clone()), window, shift);
            let reference =
                composed::window_partition_shifted::<Cpu>(primitive(x.clone()), window, shift);
            let windows: Tensor<Cpu, 3> = tensor(windows);
            assert_eq!(windows.dims(), [12, window * window, 5]);
            assert_eq!(max_diff(windows.clone(), tensor(reference.clone())), 0.0);
            let merged = Cpu::fused_window_merge(primitive(windows), window, shift, side, side);
            let reference =
                composed::window_merge_shifted::<Cpu>(reference, window, shift, side, side);
            assert_eq!(
                max_diff::<4>(tensor(merged.clone()), tensor(reference)),
                0.0
            );
            assert_eq!(max_diff::<4>(tensor(merged), x), 0.0);
        }
    }

    #[test]
    fn cpu_window_attention_matches_the_composed_ops() {
        for (qkv, bias, mask) in attention_cases() {
            let p = |t: &Tensor<Cpu, 3>| primitive(t.clone());
            let (out, probs) = Cpu::fused_window_attention_saving_probs(
                p(&qkv),
                p(&bias),
                mask.as_ref().map(p),
                3,
            );
            let (ref_out, ref_probs) =
                composed::window_attention::<Cpu>(p(&qkv), p(&bias), mask.as_ref().map(p), 3);
            assert!(max_diff::<3>(tensor(out), tensor(ref_out)) < 1e-5);
            assert!(max_diff::<4>(tensor(probs.clone()), tensor(ref_probs)) < 1e-6);
            let d_out = random::<Cpu, 3>([8, qkv.dims()[1], 24]);
            let (d_qkv, d_bias) =
                Cpu::fused_window_attention_backward(p(&qkv), probs.clone(), p(&d_out), 3);
            let (ref_qkv, ref_bias) =
                composed::window_attention_backward::<Cpu>(p(&qkv), probs, p(&d_out), 3);
            assert!(max_diff::<3>(tensor(d_qkv), tensor(ref_qkv)) < 1e-5);
            assert!(max_diff::<3>(tensor(d_bias), tensor(ref_bias)) < 1e-5);
        }
    }

    #[test]
    fn composed_attention_backward_matches_autodiff_of_its_forward() {
        for (qkv, bias, mask) in attention_cases() {
            let qkv = Tensor::<Train, 3>::from_inner(qkv).require_grad();
            let bias = Tensor::<Train, 3>::from_inner(bias).require_grad();
            let mask = mask.map(Tensor::<Train, 3>::from_inner);
            let (out, probs) = composed::window_attention::<Train>(
                primitive(qkv.clone()),
                primitive(bias.clone()),
                mask.map(primitive),
                3,
            );
            let out: Tensor<Train, 3> = tensor(out);
            let d_out = random::<Cpu, 3>(out.dims());
            let grads = (out * Tensor::from_inner(d_out.clone())).sum().backward();
            let probs: Tensor<Train, 4> = tensor(probs);
            let (d_qkv, d_bias) = composed::window_attention_backward::<Cpu>(
                primitive(qkv.clone().inner()),
                primitive(probs.inner()),
                primitive(d_out),
                3,
            );
            assert!(max_diff::<3>(tensor(d_qkv), qkv.grad(&grads).unwrap()) < 1e-5);
            assert!(max_diff::<3>(tensor(d_bias), bias.grad(&grads).unwrap()) < 1e-5);
        }
    }

    #[test]
    fn layer_norm_and_gelu_kernels_match_composed_ops_and_autodiff() {
        let x = random::<Cpu, 2>([300, 48]) * 3.0 + 1.0;
        let (gamma, beta) = (random::<Cpu, 1>([48]), random::<Cpu, 1>([48]));
        let p2 = |t: &Tensor<Cpu, 2>| primitive(t.clone());
        let p1 = |t: &Tensor<Cpu, 1>| primitive(t.clone());
        let (y, stats) = Cpu::fused_layer_norm_saving_stats(p2(&x), p1(&gamma), p1(&beta), 1e-5);
        let (ref_y, ref_stats) = composed::layer_norm::<Cpu>(p2(&x), p1(&gamma), p1(&beta), 1e-5);
        assert!(max_diff::<2>(tensor(y), tensor(ref_y)) < 1e-5);
        assert!(max_diff::<2>(tensor(stats.clone()), tensor(ref_stats)) < 1e-5);

        let d_y = random::<Cpu, 2>([300, 48]);
        let fused = Cpu::fused_layer_norm_backward(p2(&x), p1(&gamma), stats.clone(), p2(&d_y));
        let reference = composed::layer_norm_backward::<Cpu>(p2(&x), p1(&gamma), stats, p2(&d_y));
        // Autodiff of the composed forward, the ground truth for both.
        let xt = Tensor::<Train, 2>::from_inner(x.clone()).require_grad();
        let gt = Tensor::<Train, 1>::from_inner(gamma.clone()).require_grad();
        let bt = Tensor::<Train, 1>::from_inner(beta.clone()).require_grad();
        let (yt, _) = composed::layer_norm::<Train>(
            primitive(xt.clone()),
            primitive(gt.clone()),
            primitive(bt.clone()),
            1e-5,
        );
        let grads = (tensor::<Train, 2>(yt) * Tensor::from_inner(d_y.clone()))
            .sum()
            .backward();
        let truth = [
            xt.grad(&grads).unwrap(),
            gt.grad(&grads).unwrap().unsqueeze(),
            bt.grad(&grads).unwrap().unsqueeze(),
        ];
        for (name, (f, (r, t))) in ["dx", "dgamma", "dbeta"].iter().zip(
            [fused.0, fused.1, fused.2].into_iter().zip(
                [reference.0, reference.1, reference.2]
                    .into_iter()
                    .zip(truth),
            ),
        ) {
            let (f, r): (Tensor<Cpu, 2>, Tensor<Cpu, 2>) = if name == &"dx" {
                (tensor(f), tensor(r))
            } else {
                (
                    tensor::<Cpu, 1>(f).unsqueeze(),
                    tensor::<Cpu, 1>(r).unsqueeze(),
                )
            };
            assert!(max_diff(f, t.clone()) < 1e-4, "{name}: fused vs autodiff");
            assert!(max_diff(r, t) < 1e-4, "{name}: composed vs autodiff");
        }

        let x = random::<Cpu, 1>([5000]) * 3.0;
        let d_y = random::<Cpu, 1>([5000]);
        let y = Cpu::fused_gelu(p1(&x));
        assert!(max_diff::<1>(tensor(y), tensor(composed::gelu::<Cpu>(p1(&x)))) < 1e-6);
        let d_x = Cpu::fused_gelu_backward(p1(&x), p1(&d_y));
        let ref_d_x = composed::gelu_backward::<Cpu>(p1(&x), p1(&d_y));
        assert!(max_diff::<1>(tensor(d_x), tensor(ref_d_x)) < 1e-5);
    }
}
