//! burn's NdArray backend runs the fused operations as the [`cpu`](super::cpu) kernels, on its
//! f32 storage directly (a copy only where an input is not contiguous). Other element types fall
//! back to the composed ops.

use std::borrow::Cow;

use burn::backend::ndarray::{NdArray, NdArrayTensor};
use burn::tensor::ops::FloatTensor;
use ndarray::{ArcArray, ArrayD, IxDyn};

use super::cpu::{self, Attention, Windows};
use super::{composed, dims, SwinOps};

/// The row-major f32 elements of `x`, or `None` for another element type.
fn values(x: &NdArrayTensor) -> Option<Cow<'_, [f32]>> {
    match x {
        NdArrayTensor::F32(storage) => {
            let view = storage.view();
            Some(match view.to_slice() {
                Some(slice) => Cow::Borrowed(slice),
                None => {
                    // A permuted view (the patch embedding's NCHW → NHWC): `assign` copies it
                    // with strided inner loops, where `iter()` steps one element at a time.
                    let mut copy = ArrayD::zeros(view.raw_dim());
                    copy.assign(&view);
                    Cow::Owned(copy.into_raw_vec_and_offset().0)
                }
            })
        }
        _ => None,
    }
}

fn optional_values(x: &Option<NdArrayTensor>) -> Option<Option<Cow<'_, [f32]>>> {
    match x {
        Some(x) => values(x).map(Some),
        None => Some(None),
    }
}

fn from_values(values: Vec<f32>, shape: &[usize]) -> NdArrayTensor {
    ArcArray::from_shape_vec(IxDyn(shape), values)
        .expect("a kernel's output has its shape's length")
        .into()
}

fn attention_geometry(
    qkv: &NdArrayTensor,
    heads: usize,
    mask: &Option<NdArrayTensor>,
) -> Attention {
    let shape = dims::<NdArray>(qkv);
    Attention {
        windows: shape[0],
        tokens: shape[1],
        heads,
        head_dim: shape[2] / 3 / heads,
        mask_windows: mask.as_ref().map(|m| dims::<NdArray>(m)[0]),
    }
}

/// `[W, N, C]` of an attention input `[W, N, 3C]`.
fn attention_output_shape(qkv: &NdArrayTensor) -> Vec<usize> {
    let shape = dims::<NdArray>(qkv);
    vec![shape[0], shape[1], shape[2] / 3]
}

/// The attention output, and the probabilities `[W, heads, N, N]` if `with_probs`; `None` for
/// an element type the kernels do not take.
fn attention_forward(
    qkv: &NdArrayTensor,
    bias: &NdArrayTensor,
    mask: &Option<NdArrayTensor>,
    heads: usize,
    with_probs: bool,
) -> Option<(NdArrayTensor, Option<NdArrayTensor>)> {
    let s = attention_geometry(qkv, heads, mask);
    let mask = optional_values(mask)?;
    let mut probs = with_probs.then(|| cpu::zeros(s.windows * s.probs_len()));
    let out = cpu::attention_forward(
        &values(qkv)?,
        &values(bias)?,
        mask.as_deref(),
        &s,
        probs.as_deref_mut(),
    );
    let probs_shape = [s.windows, s.heads, s.tokens, s.tokens];
    Some((
        from_values(out, &attention_output_shape(qkv)),
        probs.map(|p| from_values(p, &probs_shape)),
    ))
}

fn layer_norm_forward(
    x: &NdArrayTensor,
    gamma: &NdArrayTensor,
    beta: &NdArrayTensor,
    eps: f64,
    with_stats: bool,
) -> Option<(NdArrayTensor, Option<NdArrayTensor>)> {
    let (x_values, gamma, beta) = (values(x)?, values(gamma)?, values(beta)?);
    let rows = x_values.len() / gamma.len();
    let mut stats = with_stats.then(|| vec![0.0; rows * 2]);
    let y = cpu::layer_norm_forward(&x_values, &gamma, &beta, eps as f32, stats.as_deref_mut());
    Some((
        from_values(y, &dims::<NdArray>(x)),
        stats.map(|s| from_values(s, &[rows, 2])),
    ))
}

impl SwinOps for NdArray {
    fn fused_window_partition(
        x: FloatTensor<Self>,
        window: usize,
        shift: usize,
    ) -> FloatTensor<Self> {
        let shape = dims::<Self>(&x);
        let s = Windows {
            batch: shape[0],
            height: shape[1],
            width: shape[2],
            channels: shape[3],
            window,
            shift,
        };
        let windows = values(&x).map(|map| cpu::window_partition(&map, &s));
        match windows {
            Some(windows) => {
                let count = s.batch * (s.height / window) * (s.width / window);
                from_values(windows, &[count, window * window, s.channels])
            }
            None => composed::window_partition_shifted::<Self>(x, window, shift),
        }
    }

    fn fused_window_merge(
        windows: FloatTensor<Self>,
        window: usize,
        shift: usize,
        height: usize,
        width: usize,
    ) -> FloatTensor<Self> {
        let shape = dims::<Self>(&windows);
        let s = Windows {
            batch: shape[0] / ((height / window) * (width / window)),
            height,
            width,
            channels: shape[2],
            window,
            shift,
        };
        let map = values(&windows).map(|w| cpu::window_merge(&w, &s));
        match map {
            Some(map) => from_values(map, &[s.batch, height, width, s.channels]),
            None => composed::window_merge_shifted::<Self>(windows, window, shift, height, width),
        }
    }

    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let fused = || {
            let y = cpu::linear_forward(&values(&x)?, &values(&weight)?, &values(&bias)?);
            let mut shape = dims::<Self>(&x); // [.., in] → [.., out]
            *shape.last_mut()? = dims::<Self>(&bias)[0];
            Some(from_values(y, &shape))
        };
        match fused() {
            Some(y) => y,
            None => composed::linear::<Self>(x, weight, bias),
        }
    }

    fn fused_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        d_y: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let fused = || {
            let [d_in, d_out] = [dims::<Self>(&weight)[0], dims::<Self>(&weight)[1]];
            let (d_x, d_w, d_b) =
                cpu::linear_backward(&values(&x)?, &values(&weight)?, &values(&d_y)?, d_out);
            Some((
                from_values(d_x, &dims::<Self>(&x)),
                from_values(d_w, &[d_in, d_out]),
                from_values(d_b, &[d_out]),
            ))
        };
        match fused() {
            Some(result) => result,
            None => composed::linear_backward::<Self>(x, weight, d_y),
        }
    }

    fn fused_window_attention(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: Option<FloatTensor<Self>>,
        heads: usize,
    ) -> FloatTensor<Self> {
        match attention_forward(&qkv, &bias, &mask, heads, false) {
            Some((out, _)) => out,
            None => composed::window_attention::<Self>(qkv, bias, mask, heads).0,
        }
    }

    fn fused_window_attention_saving_probs(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: Option<FloatTensor<Self>>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match attention_forward(&qkv, &bias, &mask, heads, true) {
            Some((out, Some(probs))) => (out, probs),
            _ => composed::window_attention::<Self>(qkv, bias, mask, heads),
        }
    }

    fn fused_window_attention_backward(
        qkv: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        d_out: FloatTensor<Self>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let fused = || {
            let s = attention_geometry(&qkv, heads, &None);
            let (d_qkv, d_bias) =
                cpu::attention_backward(&values(&qkv)?, &values(&probs)?, &values(&d_out)?, &s);
            Some((
                from_values(d_qkv, &dims::<Self>(&qkv)),
                from_values(d_bias, &[s.heads, s.tokens, s.tokens]),
            ))
        };
        match fused() {
            Some(result) => result,
            None => composed::window_attention_backward::<Self>(qkv, probs, d_out, heads),
        }
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        match layer_norm_forward(&x, &gamma, &beta, eps, false) {
            Some((y, _)) => y,
            None => composed::layer_norm::<Self>(x, gamma, beta, eps).0,
        }
    }

    fn fused_layer_norm_saving_stats(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match layer_norm_forward(&x, &gamma, &beta, eps, true) {
            Some((y, Some(stats))) => (y, stats),
            _ => composed::layer_norm::<Self>(x, gamma, beta, eps),
        }
    }

    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        d_y: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let fused = || {
            let (d_x, d_gamma, d_beta) = cpu::layer_norm_backward(
                &values(&x)?,
                &values(&gamma)?,
                &values(&stats)?,
                &values(&d_y)?,
            );
            let c = [d_gamma.len()];
            Some((
                from_values(d_x, &dims::<Self>(&x)),
                from_values(d_gamma, &c),
                from_values(d_beta, &c),
            ))
        };
        match fused() {
            Some(result) => result,
            None => composed::layer_norm_backward::<Self>(x, gamma, stats, d_y),
        }
    }

    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match values(&x) {
            Some(v) => from_values(cpu::gelu_forward(&v), &dims::<Self>(&x)),
            None => composed::gelu::<Self>(x),
        }
    }

    fn fused_gelu_backward(x: FloatTensor<Self>, d_y: FloatTensor<Self>) -> FloatTensor<Self> {
        match (values(&x), values(&d_y)) {
            (Some(v), Some(g)) => from_values(cpu::gelu_backward(&v, &g), &dims::<Self>(&x)),
            _ => composed::gelu_backward::<Self>(x, d_y),
        }
    }
}
