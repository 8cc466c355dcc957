//! The fused kernels on plain `f32` slices, parallel over windows or rows with rayon. Work is
//! split into chunks whose size does not depend on the thread count, and partial sums are added
//! in chunk order, so results are the same bit for bit on any number of threads.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::gemm::{self, Matrix};
use super::math;

/// Defines `fn $name(args) -> ret` that runs `$body` compiled for AVX2 + FMA when the CPU has
/// them (checked once, then a cached flag), and for the build's baseline otherwise. The kernels
/// add lane by lane in a fixed order, so both versions give the same bits.
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// Rows of a LayerNorm or elements of a GELU handled by one rayon task.
const ROWS_PER_TASK: usize = 64;
const ELEMENTS_PER_TASK: usize = 16 * 1024;
/// Entries of the bias gradient summed over windows by one rayon task.
const BIAS_ENTRIES_PER_TASK: usize = 1024;

/// `len` zeros, written in parallel. A fresh buffer's zero-fill and page faults would otherwise
/// all fall on the calling thread while the other cores wait (a tenth of a training step).
pub fn zeros(len: usize) -> Vec<f32> {
    let mut buffer = Vec::with_capacity(len);
    buffer
        .spare_capacity_mut()
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(0.0)));
    // SAFETY: every element of the capacity was just written.
    unsafe { buffer.set_len(len) };
    buffer
}

/// A new buffer of `len` floats that `fill` writes through the vector's spare capacity, with no
/// zero-fill first (a whole pass over every output, 4 % of a training step, that the kernels
/// overwrote anyway).
///
/// # Safety
/// `fill` must write every one of the `len` elements.
unsafe fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut buffer = Vec::with_capacity(len);
    fill(&mut buffer.spare_capacity_mut()[..len]);
    // SAFETY: the caller's `fill` wrote every element.
    unsafe { buffer.set_len(len) };
    buffer
}

/// `y = x · weight + bias`: `x: [rows, in]`, `weight: [in, out]` (burn's layout), `bias: [out]`.
pub fn linear_forward(x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let (d_out, d_in) = (bias.len(), weight.len() / bias.len());
    let rows = x.len() / d_in;
    let (x, weight) = (Matrix::new(x, rows, d_in), Matrix::new(weight, d_in, d_out));
    gemm::product(x, weight, Some(bias))
}

/// Backward of [`linear_forward`] with `weight: [in, d_out]`: `(dx, dweight, dbias)`.
pub fn linear_backward(
    x: &[f32],
    weight: &[f32],
    d_y: &[f32],
    d_out: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d_in = weight.len() / d_out;
    let rows = x.len() / d_in;
    let (x, w, g) = (
        Matrix::new(x, rows, d_in),
        Matrix::new(weight, d_in, d_out),
        Matrix::new(d_y, rows, d_out),
    );
    let d_x = gemm::product(g, w.t(), None);
    let d_w = gemm::product_summed(x.t(), g);
    (d_x, d_w, column_sums(d_y, d_out))
}

/// `Σ_rows m[r, :]` of a row-major `[rows, cols]` matrix, in fixed chunks added in order.
fn column_sums(m: &[f32], cols: usize) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = m
        .par_chunks(ROWS_PER_TASK * cols)
        .map(|chunk| {
            let mut sums = vec![0.0; cols];
            for row in chunk.chunks(cols) {
                axpy(1.0, row, &mut sums);
            }
            sums
        })
        .collect();
    let mut sums = vec![0.0; cols];
    for p in &partials {
        axpy(1.0, p, &mut sums);
    }
    sums
}

/// A `[B, H, W, C]` map and its `window × window` windows after a roll by `-shift`.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub window: usize,
    pub shift: usize,
}

impl Windows {
    /// For token `t` of window `(wy, wx)`, the offset of its row in one image of the map.
    fn source(&self, wy: usize, wx: usize, t: usize) -> usize {
        let y = (wy * self.window + t / self.window + self.shift) % self.height;
        let x = (wx * self.window + t % self.window + self.shift) % self.width;
        (y * self.width + x) * self.channels
    }

    fn per_image(&self) -> (usize, usize) {
        (self.height / self.window, self.width / self.window)
    }
}

/// `dst = src` into not yet initialised floats (`write_copy_of_slice` needs Rust 1.93).
#[inline(always)]
fn write_row(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        d.write(v);
    }
}

/// The windows `[B·nW, ws², C]` of `map: [B, H, W, C]` (one copy of each token row).
pub fn window_partition(map: &[f32], s: &Windows) -> Vec<f32> {
    let (rows, cols) = s.per_image();
    let (c, area) = (s.channels, s.window * s.window);
    let image = s.height * s.width * c;
    let fill = |windows: &mut [MaybeUninit<f32>]| {
        windows
            .par_chunks_mut(area * c)
            .enumerate()
            .for_each(|(w, out)| {
                let (b, wy, wx) = (w / (rows * cols), w / cols % rows, w % cols);
                let src = &map[b * image..][..image];
                for (t, row) in out.chunks_mut(c).enumerate() {
                    write_row(row, &src[s.source(wy, wx, t)..][..c]);
                }
            })
    };
    // SAFETY: every token row of every window is copied.
    unsafe { written(map.len(), fill) }
}

/// The map `[B, H, W, C]` of `windows: [B·nW, ws², C]`, the inverse of [`window_partition`].
pub fn window_merge(windows: &[f32], s: &Windows) -> Vec<f32> {
    let (rows, cols) = s.per_image();
    let (c, area) = (s.channels, s.window * s.window);
    let fill = |map: &mut [MaybeUninit<f32>]| {
        map.par_chunks_mut(s.height * s.width * c)
            .zip(windows.par_chunks(rows * cols * area * c))
            .for_each(|(image, windows)| {
                for (w, window) in windows.chunks(area * c).enumerate() {
                    for (t, row) in window.chunks(c).enumerate() {
                        write_row(&mut image[s.source(w / cols, w % cols, t)..][..c], row);
                    }
                }
            })
    };
    // SAFETY: the windows tile the map, so every token row is written once.
    unsafe { written(windows.len(), fill) }
}

/// The geometry of one window-attention call.
#[derive(Debug, Clone, Copy)]
pub struct Attention {
    /// Windows in the batch (`B · nW`).
    pub windows: usize,
    /// Tokens per window (`ws²`).
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Windows per image when a shift mask `[nW, N, N]` is given.
    pub mask_windows: Option<usize>,
}

impl Attention {
    fn channels(&self) -> usize {
        self.heads * self.head_dim
    }

    fn scale(&self) -> f32 {
        (self.head_dim as f32).powf(-0.5)
    }

    /// Floats of one window's attention probabilities, `[heads, N, N]`.
    pub fn probs_len(&self) -> usize {
        self.heads * self.tokens * self.tokens
    }
}

/// `y += a · x`.
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Lanes of the reductions: floats are not reassociated by the compiler, so sums are written
/// as 8 running partial sums, which it can keep in one vector register.
const LANES: usize = 8;

/// `Σ f(a_k, b_k)` in [`LANES`] partial sums, added in a fixed order.
#[inline(always)]
fn reduce2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for k in 0..LANES {
            acc[k] += f(x[k], y[k]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    reduce2(a, b, |x, y| x * y)
}

#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    reduce2(a, a, |x, _| x)
}

#[inline(always)]
fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for x in chunks {
        for k in 0..LANES {
            acc[k] = if x[k] > acc[k] { x[k] } else { acc[k] };
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

/// Softmax of one row in place.
#[inline(always)]
fn softmax(row: &mut [f32]) {
    let max = max(row);
    row.iter_mut().for_each(|v| *v = math::exp(*v - max));
    let inv = 1.0 / sum(row);
    row.iter_mut().for_each(|v| *v *= inv);
}

multiversion! {
/// One window: `qkv: [N, 3C]` → `out: [N, C]`, `probs: [heads, N, N]`.
fn attention_window(
    qkv: &[f32],
    bias: &[f32],
    mask: Option<&[f32]>,
    s: &Attention,
    out: &mut [f32],
    probs: &mut [f32],
) {
    let (n, hd, c) = (s.tokens, s.head_dim, s.channels());
    let part = |p: usize, h: usize| Matrix::view(&qkv[p * c + h * hd..], n, hd, 3 * c);
    for h in 0..s.heads {
        let logits = &mut probs[h * n * n..][..n * n];
        logits.copy_from_slice(&bias[h * n * n..][..n * n]);
        if let Some(mask) = mask {
            axpy(1.0, mask, logits);
        }
        gemm::product_to(part(0, h), part(1, h).t(), s.scale(), logits, n, true); // + q kᵀ · scale
        logits.chunks_mut(n).for_each(softmax);
        let p = Matrix::new(logits, n, n);
        gemm::product_to(p, part(2, h), 1.0, &mut out[h * hd..], c, false); // P v
    }
}
}

fn window_mask<'a>(mask: Option<&'a [f32]>, s: &Attention, w: usize) -> Option<&'a [f32]> {
    let nn = s.tokens * s.tokens;
    mask.zip(s.mask_windows)
        .map(|(m, nw)| &m[(w % nw) * nn..][..nn])
}

/// `qkv: [W, N, 3C]` (per token: q, k, v, each heads × head_dim), `bias: [heads, N, N]`,
/// `mask: [nW, N, N]` → `out: [W, N, C]`, and `probs: [W, heads, N, N]` when asked for (the
/// state of [`attention_backward`]).
pub fn attention_forward(
    qkv: &[f32],
    bias: &[f32],
    mask: Option<&[f32]>,
    s: &Attention,
    probs: Option<&mut [f32]>,
) -> Vec<f32> {
    let (n, c) = (s.tokens, s.channels());
    let mut out = zeros(s.windows * n * c);
    let windows = qkv.par_chunks(n * 3 * c).zip(out.par_chunks_mut(n * c));
    match probs {
        Some(probs) => windows
            .zip(probs.par_chunks_mut(s.probs_len()))
            .enumerate()
            .for_each(|(w, ((qkv, out), probs))| {
                attention_window(qkv, bias, window_mask(mask, s, w), s, out, probs)
            }),
        None => windows.enumerate().for_each_init(
            || vec![0.0; s.probs_len()],
            |probs, (w, (qkv, out))| {
                attention_window(qkv, bias, window_mask(mask, s, w), s, out, probs)
            },
        ),
    }
    out
}

multiversion! {
/// One window's backward: `d_qkv: [N, 3C]` and `d_logits: [heads, N, N]` from `qkv`, `probs`
/// and `d_out: [N, C]`.
fn attention_window_backward(
    qkv: &[f32],
    probs: &[f32],
    d_out: &[f32],
    s: &Attention,
    d_qkv: &mut [f32],
    d_logits: &mut [f32],
) {
    let (n, hd, c) = (s.tokens, s.head_dim, s.channels());
    let part = |p: usize, h: usize| Matrix::view(&qkv[p * c + h * hd..], n, hd, 3 * c);
    let at = |p: usize, h: usize| p * c + h * hd;
    for h in 0..s.heads {
        let p = Matrix::new(&probs[h * n * n..][..n * n], n, n);
        let d_o = Matrix::view(&d_out[h * hd..], n, hd, c);
        gemm::product_to(p.t(), d_o, 1.0, &mut d_qkv[at(2, h)..], 3 * c, false); // dV = Pᵀ dO
        let d_s = &mut d_logits[h * n * n..][..n * n];
        gemm::product_to(d_o, part(2, h).t(), 1.0, d_s, n, false); // dP = dO vᵀ
        for (d_s, p) in d_s.chunks_mut(n).zip(p.data.chunks(n)) {
            // dS = P ∘ (dP − Σ_j P dP), row by row
            let centre = dot(p, d_s);
            for (ds, &p) in d_s.iter_mut().zip(p) {
                *ds = p * (*ds - centre);
            }
        }
        let d_s = Matrix::new(d_s, n, n);
        let d_q = &mut d_qkv[at(0, h)..];
        gemm::product_to(d_s, part(1, h), s.scale(), d_q, 3 * c, false); // dQ = dS k · scale
        let d_k = &mut d_qkv[at(1, h)..];
        gemm::product_to(d_s.t(), part(0, h), s.scale(), d_k, 3 * c, false); // dK = dSᵀ q · scale
    }
}
}

/// Backward of [`attention_forward`]: `d_qkv: [W, N, 3C]` and `d_bias: [heads, N, N]` (the
/// logits' gradient summed over windows) from `qkv`, `probs: [W, heads, N, N]` and
/// `d_out: [W, N, C]`.
pub fn attention_backward(
    qkv: &[f32],
    probs: &[f32],
    d_out: &[f32],
    s: &Attention,
) -> (Vec<f32>, Vec<f32>) {
    let (n, c, len) = (s.tokens, s.channels(), s.probs_len());
    let mut d_qkv = zeros(s.windows * n * 3 * c);
    let mut d_logits = zeros(s.windows * len);
    qkv.par_chunks(n * 3 * c)
        .zip(probs.par_chunks(len))
        .zip(d_out.par_chunks(n * c))
        .zip(d_qkv.par_chunks_mut(n * 3 * c))
        .zip(d_logits.par_chunks_mut(len))
        .for_each(|((((qkv, probs), d_out), d_qkv), d_logits)| {
            attention_window_backward(qkv, probs, d_out, s, d_qkv, d_logits)
        });
    let mut d_bias = vec![0.0; len];
    d_bias
        .par_chunks_mut(BIAS_ENTRIES_PER_TASK)
        .enumerate()
        .for_each(|(k, chunk)| {
            let start = k * BIAS_ENTRIES_PER_TASK;
            for window in d_logits.chunks(len) {
                axpy(1.0, &window[start..start + chunk.len()], chunk);
            }
        });
    (d_qkv, d_bias)
}

multiversion! {
/// LayerNorm of the rows of one task: `x, y: [rows, C]`, `stats: [rows, 2]` if kept.
fn layer_norm_rows(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [MaybeUninit<f32>],
    stats: Option<&mut [f32]>,
) {
    let mut stats = stats;
    let c = gamma.len();
    for (r, (x, y)) in x.chunks(c).zip(y.chunks_mut(c)).enumerate() {
        let mean = sum(x) / c as f32;
        let var = reduce2(x, x, |v, _| (v - mean) * (v - mean)) / c as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        for (((y, x), g), b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
            y.write((x - mean) * rstd * g + b);
        }
        if let Some(stats) = stats.as_deref_mut() {
            stats[2 * r] = mean;
            stats[2 * r + 1] = rstd;
        }
    }
}
}

/// LayerNorm over the last axis of `x: [rows, C]` → `y`, and `stats: [rows, 2]` (mean and
/// 1/σ of each row) when asked for.
pub fn layer_norm_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    stats: Option<&mut [f32]>,
) -> Vec<f32> {
    let c = gamma.len();
    let fill = |y: &mut [MaybeUninit<f32>]| {
        let tasks = x
            .par_chunks(ROWS_PER_TASK * c)
            .zip(y.par_chunks_mut(ROWS_PER_TASK * c));
        match stats {
            Some(stats) => tasks
                .zip(stats.par_chunks_mut(ROWS_PER_TASK * 2))
                .for_each(|((x, y), stats)| layer_norm_rows(x, gamma, beta, eps, y, Some(stats))),
            None => tasks.for_each(|(x, y)| layer_norm_rows(x, gamma, beta, eps, y, None)),
        }
    };
    // SAFETY: each row of `y` is written from its row of `x`.
    unsafe { written(x.len(), fill) }
}

multiversion! {
/// LayerNorm backward of one task's rows: writes `d_x`, adds to `d_gamma` and `d_beta`.
fn layer_norm_backward_rows(
    x: &[f32],
    gamma: &[f32],
    stats: &[f32],
    d_y: &[f32],
    d_x: &mut [MaybeUninit<f32>],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
) {
    let c = gamma.len();
    let mut x_hat = vec![0.0; c];
    let mut g = vec![0.0; c];
    for (((x, st), d_y), d_x) in x
        .chunks(c)
        .zip(stats.chunks(2))
        .zip(d_y.chunks(c))
        .zip(d_x.chunks_mut(c))
    {
        let (mean, rstd) = (st[0], st[1]);
        for (k, (&x, &dy)) in x.iter().zip(d_y).enumerate() {
            x_hat[k] = (x - mean) * rstd;
            g[k] = dy * gamma[k];
            d_gamma[k] += dy * x_hat[k];
            d_beta[k] += dy;
        }
        let mean_g = sum(&g) / c as f32;
        let mean_gx = dot(&g, &x_hat) / c as f32;
        for ((d_x, &g), &x_hat) in d_x.iter_mut().zip(&g).zip(&x_hat) {
            d_x.write(rstd * (g - mean_g - x_hat * mean_gx));
        }
    }
}
}

/// Backward of [`layer_norm_forward`]: `(dx, dgamma, dbeta)`.
pub fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    stats: &[f32],
    d_y: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = gamma.len();
    let mut partials: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
    let fill = |d_x: &mut [MaybeUninit<f32>]| {
        partials = x
            .par_chunks(ROWS_PER_TASK * c)
            .zip(stats.par_chunks(ROWS_PER_TASK * 2))
            .zip(d_y.par_chunks(ROWS_PER_TASK * c))
            .zip(d_x.par_chunks_mut(ROWS_PER_TASK * c))
            .map(|(((x, stats), d_y), d_x)| {
                let (mut d_gamma, mut d_beta) = (vec![0.0; c], vec![0.0; c]);
                layer_norm_backward_rows(x, gamma, stats, d_y, d_x, &mut d_gamma, &mut d_beta);
                (d_gamma, d_beta)
            })
            .collect();
    };
    // SAFETY: each row of `d_x` is written from its row of `x`.
    let d_x = unsafe { written(x.len(), fill) };
    let (mut d_gamma, mut d_beta) = (vec![0.0; c], vec![0.0; c]);
    for (g, b) in &partials {
        axpy(1.0, g, &mut d_gamma);
        axpy(1.0, b, &mut d_beta);
    }
    (d_x, d_gamma, d_beta)
}

multiversion! {
fn gelu_chunk(x: &[f32], y: &mut [MaybeUninit<f32>]) {
    for (y, &x) in y.iter_mut().zip(x) {
        y.write(math::gelu(x));
    }
}
}

multiversion! {
fn gelu_backward_chunk(x: &[f32], d_y: &[f32], d_x: &mut [MaybeUninit<f32>]) {
    for ((d_x, &x), &g) in d_x.iter_mut().zip(x).zip(d_y) {
        d_x.write(g * math::gelu_derivative(x));
    }
}
}

/// Exact (erf) GELU of every element.
pub fn gelu_forward(x: &[f32]) -> Vec<f32> {
    let fill = |y: &mut [MaybeUninit<f32>]| {
        x.par_chunks(ELEMENTS_PER_TASK)
            .zip(y.par_chunks_mut(ELEMENTS_PER_TASK))
            .for_each(|(x, y)| gelu_chunk(x, y))
    };
    // SAFETY: every element is written from its element of `x`.
    unsafe { written(x.len(), fill) }
}

/// `dx = dy · gelu'(x)`.
pub fn gelu_backward(x: &[f32], d_y: &[f32]) -> Vec<f32> {
    let fill = |d_x: &mut [MaybeUninit<f32>]| {
        x.par_chunks(ELEMENTS_PER_TASK)
            .zip(d_y.par_chunks(ELEMENTS_PER_TASK))
            .zip(d_x.par_chunks_mut(ELEMENTS_PER_TASK))
            .for_each(|((x, d_y), d_x)| gelu_backward_chunk(x, d_y, d_x))
    };
    // SAFETY: every element is written from its elements of `x` and `d_y`.
    unsafe { written(x.len(), fill) }
}
