//! The fused operations written with burn's tensor ops: the default of every backend without a
//! kernel of its own (CUDA, Flex), and the reference the CPU kernels are tested against.
//! Forward and backward follow the math in [`super::SwinOps`]; the backward is written out, not
//! left to autodiff, so that every backend runs the same custom autodiff step.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{TensorMetadata, TensorPrimitive};

pub fn tensor<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

pub fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// `[W, N, 3C]` → q, k, v, each `[W, heads, N, hd]`.
fn split_qkv<B: Backend>(qkv: Tensor<B, 3>, heads: usize) -> [Tensor<B, 4>; 3] {
    let [w, n, c3] = qkv.dims();
    let head_dim = c3 / 3 / heads;
    let qkv = qkv
        .reshape([w, n, 3, heads, head_dim])
        .permute([2, 0, 3, 1, 4]); // [3, W, heads, N, hd]
    let take = |i: usize| qkv.clone().narrow(0, i, 1).reshape([w, heads, n, head_dim]);
    [take(0), take(1), take(2)]
}

/// `torch.roll(x, shifts=(shift, shift), dims=(1, 2))` on `[B, H, W, C]`: element `j` of the result
/// is element `j - shift` of the input, wrapping around. Written as two slices and a concat per
/// axis, the form the ONNX export uses. (burn's `Tensor::roll` shifts the other way.)
pub fn cyclic_shift<B: Backend>(x: Tensor<B, 4>, shift: i64) -> Tensor<B, 4> {
    let roll = |x: Tensor<B, 4>, dim: usize| {
        let size = x.dims()[dim];
        let k = shift.rem_euclid(size as i64) as usize;
        if k == 0 {
            return x;
        }
        Tensor::cat(
            vec![
                x.clone().narrow(dim, size - k, k),
                x.narrow(dim, 0, size - k),
            ],
            dim,
        )
    };
    roll(roll(x, 1), 2)
}

/// `[B, H, W, C]` → `[B * nW, ws*ws, C]`, windows ordered batch-major then row-major.
pub fn window_partition<B: Backend>(x: Tensor<B, 4>, ws: usize) -> Tensor<B, 3> {
    let [b, h, w, c] = x.dims();
    x.reshape([b, h / ws, ws, w / ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5]) // [B, H/ws, W/ws, ws, ws, C]
        .reshape([b * (h / ws) * (w / ws), ws * ws, c])
}

/// Inverse of [`window_partition`]: `[B * nW, ws*ws, C]` → `[B, H, W, C]`.
pub fn window_reverse<B: Backend>(
    windows: Tensor<B, 3>,
    ws: usize,
    h: usize,
    w: usize,
) -> Tensor<B, 4> {
    let c = windows.dims()[2];
    let b = windows.dims()[0] / ((h / ws) * (w / ws));
    windows
        .reshape([b, h / ws, w / ws, ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5]) // [B, H/ws, ws, W/ws, ws, C]
        .reshape([b, h, w, c])
}

fn scale(head_dim: usize) -> f64 {
    (head_dim as f64).powf(-0.5)
}

/// `[B, H, W, C]` rolled by `-shift` on both axes (timm's shift before attention), as windows
/// `[B * nW, ws², C]`.
pub fn window_partition_shifted<B: Backend>(
    x: FloatTensor<B>,
    window: usize,
    shift: usize,
) -> FloatTensor<B> {
    primitive(window_partition(
        cyclic_shift(tensor::<B, 4>(x), -(shift as i64)),
        window,
    ))
}

/// Inverse of [`window_partition_shifted`]: windows `[B * nW, ws², C]` → `[B, H, W, C]`.
pub fn window_merge_shifted<B: Backend>(
    windows: FloatTensor<B>,
    window: usize,
    shift: usize,
    height: usize,
    width: usize,
) -> FloatTensor<B> {
    let merged = window_reverse(tensor::<B, 3>(windows), window, height, width);
    primitive(cyclic_shift(merged, shift as i64))
}

/// `x: [.., C]` as a `[rows, C]` matrix, and `x`'s shape (to give results back their leading
/// axes).
fn as_rows<B: Backend>(x: FloatTensor<B>) -> (Tensor<B, 2>, Vec<usize>) {
    let shape = x.shape().to_vec();
    let cols = shape.last().copied().unwrap_or(1);
    let rows = shape.iter().product::<usize>() / cols.max(1);
    (
        tensor(B::float_reshape(x, Shape::from([rows, cols]))),
        shape,
    )
}

/// A `[rows, C']` result with the leading axes of `shape` (its last axis becomes `C'`).
fn with_leading_axes<B: Backend>(y: Tensor<B, 2>, mut shape: Vec<usize>) -> FloatTensor<B> {
    if let Some(last) = shape.last_mut() {
        *last = y.dims()[1];
    }
    B::float_reshape(primitive(y), Shape::from(shape))
}

/// `x [.., in] · weight [in, out] + bias [out]` → `[.., out]`.
pub fn linear<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let (x, shape) = as_rows(x);
    let y = x.matmul(tensor(weight)) + tensor::<B, 1>(bias).unsqueeze_dim(0);
    with_leading_axes(y, shape)
}

/// `(dx, dweight, dbias)` of [`linear`].
pub fn linear_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    d_y: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let ((x, shape), (d_y, _)) = (as_rows(x), as_rows(d_y));
    let weight: Tensor<B, 2> = tensor(weight);
    let d_out = d_y.dims()[1];
    let d_x = d_y.clone().matmul(weight.transpose());
    let d_weight = x.transpose().matmul(d_y.clone());
    let d_bias = d_y.sum_dim(0).reshape([d_out]);
    (
        with_leading_axes(d_x, shape),
        primitive(d_weight),
        primitive(d_bias),
    )
}

/// `(out [W, N, C], probs [W, heads, N, N])`.
pub fn window_attention<B: Backend>(
    qkv: FloatTensor<B>,
    bias: FloatTensor<B>,
    mask: Option<FloatTensor<B>>,
    heads: usize,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let qkv: Tensor<B, 3> = tensor(qkv);
    let [w, n, c3] = qkv.dims();
    let [q, k, v] = split_qkv(qkv, heads);
    let mut logits = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar(scale(c3 / 3 / heads))
        + tensor::<B, 3>(bias).unsqueeze_dim(0); // [W, heads, N, N]
    if let Some(mask) = mask {
        let mask: Tensor<B, 3> = tensor(mask);
        let nw = mask.dims()[0];
        logits = (logits.reshape([w / nw, nw, heads, n, n])
            + mask.unsqueeze_dim::<4>(1).unsqueeze_dim(0))
        .reshape([w, heads, n, n]);
    }
    let probs = softmax(logits, 3);
    let out = probs
        .clone()
        .matmul(v)
        .swap_dims(1, 2)
        .reshape([w, n, c3 / 3]);
    (primitive(out), primitive(probs))
}

/// `(d_qkv [W, N, 3C], d_bias [heads, N, N])`.
pub fn window_attention_backward<B: Backend>(
    qkv: FloatTensor<B>,
    probs: FloatTensor<B>,
    d_out: FloatTensor<B>,
    heads: usize,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let qkv: Tensor<B, 3> = tensor(qkv);
    let [w, n, c3] = qkv.dims();
    let head_dim = c3 / 3 / heads;
    let [q, k, v] = split_qkv(qkv, heads);
    let probs: Tensor<B, 4> = tensor(probs);
    let d_out = tensor::<B, 3>(d_out)
        .reshape([w, n, heads, head_dim])
        .swap_dims(1, 2); // [W, heads, N, hd]
    let d_v = probs.clone().swap_dims(2, 3).matmul(d_out.clone());
    let d_probs = d_out.matmul(v.swap_dims(2, 3));
    let centre = (probs.clone() * d_probs.clone()).sum_dim(3);
    let d_logits = probs * (d_probs - centre); // [W, heads, N, N]
    let s = scale(head_dim);
    let d_q = d_logits.clone().matmul(k).mul_scalar(s);
    let d_k = d_logits.clone().swap_dims(2, 3).matmul(q).mul_scalar(s);
    let d_qkv = Tensor::stack::<5>(vec![d_q, d_k, d_v], 0) // [3, W, heads, N, hd]
        .permute([1, 3, 0, 2, 4])
        .reshape([w, n, c3]);
    let d_bias = d_logits.sum_dim(0).reshape([heads, n, n]);
    (primitive(d_qkv), primitive(d_bias))
}

/// LayerNorm over the last axis of `x: [.., C]`: `(y, stats [rows, 2])`, stats = mean, 1/σ.
pub fn layer_norm<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    eps: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (x, shape) = as_rows(x);
    let mean = x.clone().mean_dim(1); // [rows, 1]
    let centred = x - mean.clone();
    let var = centred.clone().powi_scalar(2).mean_dim(1);
    let rstd = var.add_scalar(eps).sqrt().recip();
    let y = centred * rstd.clone() * tensor::<B, 1>(gamma).unsqueeze_dim(0)
        + tensor::<B, 1>(beta).unsqueeze_dim(0);
    (
        with_leading_axes(y, shape),
        primitive(Tensor::cat(vec![mean, rstd], 1)),
    )
}

/// `(dx, dgamma, dbeta)` of [`layer_norm`].
pub fn layer_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    stats: FloatTensor<B>,
    d_y: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let ((x, shape), (d_y, _)) = (as_rows(x), as_rows(d_y));
    let stats: Tensor<B, 2> = tensor(stats);
    let (mean, rstd) = (stats.clone().narrow(1, 0, 1), stats.narrow(1, 1, 1));
    let x_hat = (x - mean) * rstd.clone();
    let g = d_y.clone() * tensor::<B, 1>(gamma).unsqueeze_dim(0);
    let d_x = rstd
        * (g.clone() - g.clone().mean_dim(1) - x_hat.clone() * (g * x_hat.clone()).mean_dim(1));
    let c = x_hat.dims()[1];
    let d_gamma = (d_y.clone() * x_hat).sum_dim(0).reshape([c]);
    let d_beta = d_y.sum_dim(0).reshape([c]);
    (
        with_leading_axes(d_x, shape),
        primitive(d_gamma),
        primitive(d_beta),
    )
}

/// `x` of any shape as `[len]`, and its shape.
fn flat<B: Backend>(x: FloatTensor<B>) -> (Tensor<B, 1>, Vec<usize>) {
    let shape = x.shape().to_vec();
    let len = shape.iter().product::<usize>();
    (tensor(B::float_reshape(x, Shape::from([len]))), shape)
}

/// Exact GELU (burn's, with `erf`), element-wise on any shape.
pub fn gelu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let (x, shape) = flat::<B>(x);
    B::float_reshape(
        primitive(burn::tensor::activation::gelu(x)),
        Shape::from(shape),
    )
}

/// `dy · (Φ(x) + x φ(x))`, the derivative of the exact GELU. (burn 0.21's own `gelu_backward`
/// is the derivative of the tanh approximation, up to 1e-3 off.)
pub fn gelu_backward<B: Backend>(x: FloatTensor<B>, d_y: FloatTensor<B>) -> FloatTensor<B> {
    let ((x, shape), (d_y, _)) = (flat::<B>(x), flat::<B>(d_y));
    let cdf = x
        .clone()
        .div_scalar(std::f64::consts::SQRT_2)
        .erf()
        .add_scalar(1.0)
        * 0.5;
    let pdf = (x.clone().powi_scalar(2) * -0.5).exp()
        * (0.5 * std::f64::consts::FRAC_2_SQRT_PI / std::f64::consts::SQRT_2);
    B::float_reshape(primitive((cdf + x * pdf) * d_y), Shape::from(shape))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    type B = burn::backend::NdArray;

    #[test]
    fn cyclic_shift_follows_torch_roll() {
        let x = Tensor::<B, 4>::from_data(
            TensorData::new((0..16).map(|v| v as f32).collect(), [1, 4, 4, 1]),
            &Default::default(),
        );
        // torch.roll(arange(16).view(1,4,4,1), shifts=(1,1), dims=(1,2))[0,:,:,0]
        let rolled: Vec<f32> = cyclic_shift(x.clone(), 1).into_data().to_vec().unwrap();
        assert_eq!(
            rolled,
            [15., 12., 13., 14., 3., 0., 1., 2., 7., 4., 5., 6., 11., 8., 9., 10.]
        );
        let back: Vec<f32> = cyclic_shift(cyclic_shift(x.clone(), 1), -1)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(back, x.into_data().to_vec::<f32>().unwrap());
    }

    #[test]
    fn window_partition_and_reverse_are_inverse() {
        let x = Tensor::<B, 4>::random([2, 8, 8, 3], Distribution::Default, &Default::default());
        let windows = window_partition(x.clone(), 4);
        assert_eq!(windows.dims(), [8, 16, 3]);
        let back = window_reverse(windows, 4, 8, 8);
        assert_eq!(back.into_data(), x.into_data());
    }
}
