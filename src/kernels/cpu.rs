//! The fused kernels on plain `f32` slices, parallel over windows or rows with rayon. Work is
//! split into chunks whose size does not depend on the thread count, and partial sums are added
//! in chunk order, so results are the same bit for bit on any number of threads.

use std::mem::MaybeUninit;

use rayon::prelude::*;

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

/// A `[rows, cols]` matrix inside a slice that starts at its first element, rows `row_stride`
/// apart (a sub-block of a wider row-major matrix), or the transpose of one.
#[derive(Debug, Clone, Copy)]
struct Matrix<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    /// (row stride, column stride) in elements.
    strides: (isize, isize),
}

/// Whether `rows × cols` elements at `row_stride` fit in `len` (checked before every product).
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * row_stride + cols <= len
}

impl<'a> Matrix<'a> {
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "a [{rows}, {cols}] matrix");
        Self::view(data, rows, cols, cols)
    }

    fn view(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            fits(data.len(), rows, cols, row_stride),
            "a [{rows}, {cols}] view"
        );
        Self {
            data,
            rows,
            cols,
            strides: (row_stride as isize, 1),
        }
    }

    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            strides: (self.strides.1, self.strides.0),
            ..self
        }
    }
}

/// `c = alpha · a · b + beta · c`, `c` a `[a.rows, b.cols]` view with rows `c_row_stride` apart
/// (matrixmultiply's sgemm, on every core for large enough products; it splits rows and
/// columns, never the sum, so the result does not depend on the thread count).
fn gemm(alpha: f32, a: Matrix, b: Matrix, beta: f32, c: &mut [f32], c_row_stride: usize) {
    assert!(fits(c.len(), a.rows, b.cols, c_row_stride), "output view");
    // SAFETY: `fits` checked that `c` holds the output at its stride.
    unsafe { sgemm(alpha, a, b, beta, c.as_mut_ptr(), c_row_stride) }
}

/// matrixmultiply's sgemm on two checked views, writing to `c` at row stride `c_row_stride`.
///
/// # Safety
/// `c` must have room for `a.rows × b.cols` floats at that stride, initialised unless `beta` is
/// 0 ("If β is zero, then C does not need to be initialized").
unsafe fn sgemm(alpha: f32, a: Matrix, b: Matrix, beta: f32, c: *mut f32, c_row_stride: usize) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    // SAFETY: `Matrix::view` checked that each input holds its elements at the strides given (a
    // transpose only swaps them); the caller vouches for `c`.
    unsafe {
        matrixmultiply::sgemm(
            a.rows,
            a.cols,
            b.cols,
            alpha,
            a.data.as_ptr(),
            a.strides.0,
            a.strides.1,
            b.data.as_ptr(),
            b.strides.0,
            b.strides.1,
            beta,
            c,
            c_row_stride as isize,
            1,
        )
    }
}

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

/// `a · b` as a new row-major `[a.rows, b.cols]` buffer, not zero-filled first (sgemm with
/// `beta = 0` does not read it).
fn product(a: Matrix, b: Matrix) -> Vec<f32> {
    let len = a.rows * b.cols;
    let mut c = Vec::with_capacity(len);
    // SAFETY: the capacity holds `len` floats at row stride `b.cols`, and with `beta = 0` sgemm
    // writes every one of them, so all are initialised before `set_len`.
    unsafe {
        sgemm(1.0, a, b, 0.0, c.as_mut_ptr(), b.cols);
        c.set_len(len);
    }
    c
}

/// `y = x · weight + bias`: `x: [rows, in]`, `weight: [in, out]` (burn's layout), `bias: [out]`.
pub fn linear_forward(x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let (d_out, d_in) = (bias.len(), weight.len() / bias.len());
    let rows = x.len() / d_in;
    let mut y = Vec::with_capacity(rows * d_out);
    y.spare_capacity_mut()
        .par_chunks_mut(ROWS_PER_TASK * d_out)
        .for_each(|rows| {
            for row in rows.chunks_mut(d_out) {
                for (y, &b) in row.iter_mut().zip(bias) {
                    y.write(b);
                }
            }
        });
    // SAFETY: every row of the capacity was just set to the bias.
    unsafe { y.set_len(rows * d_out) };
    let (x, weight) = (Matrix::new(x, rows, d_in), Matrix::new(weight, d_in, d_out));
    gemm(1.0, x, weight, 1.0, &mut y, d_out);
    y
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
    let d_x = product(g, w.t());
    let d_w = product(x.t(), g);
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

/// The windows `[B·nW, ws², C]` of `map: [B, H, W, C]` (one copy of each token row).
pub fn window_partition(map: &[f32], s: &Windows) -> Vec<f32> {
    let (rows, cols) = s.per_image();
    let (c, area) = (s.channels, s.window * s.window);
    let image = s.height * s.width * c;
    let mut windows = zeros(map.len());
    windows
        .par_chunks_mut(area * c)
        .enumerate()
        .for_each(|(w, out)| {
            let (b, wy, wx) = (w / (rows * cols), w / cols % rows, w % cols);
            let src = &map[b * image..][..image];
            for (t, row) in out.chunks_mut(c).enumerate() {
                row.copy_from_slice(&src[s.source(wy, wx, t)..][..c]);
            }
        });
    windows
}

/// The map `[B, H, W, C]` of `windows: [B·nW, ws², C]`, the inverse of [`window_partition`].
pub fn window_merge(windows: &[f32], s: &Windows) -> Vec<f32> {
    let (rows, cols) = s.per_image();
    let (c, area) = (s.channels, s.window * s.window);
    let mut map = zeros(windows.len());
    map.par_chunks_mut(s.height * s.width * c)
        .zip(windows.par_chunks(rows * cols * area * c))
        .for_each(|(image, windows)| {
            for (w, window) in windows.chunks(area * c).enumerate() {
                for (t, row) in window.chunks(c).enumerate() {
                    image[s.source(w / cols, w % cols, t)..][..c].copy_from_slice(row);
                }
            }
        });
    map
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
        gemm(s.scale(), part(0, h), part(1, h).t(), 1.0, logits, n); // + q kᵀ · scale
        logits.chunks_mut(n).for_each(softmax);
        let p = Matrix::new(logits, n, n);
        gemm(1.0, p, part(2, h), 0.0, &mut out[h * hd..], c); // P v
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
        gemm(1.0, p.t(), d_o, 0.0, &mut d_qkv[at(2, h)..], 3 * c); // dV = Pᵀ dO
        let d_s = &mut d_logits[h * n * n..][..n * n];
        gemm(1.0, d_o, part(2, h).t(), 0.0, d_s, n); // dP = dO vᵀ
        for (d_s, p) in d_s.chunks_mut(n).zip(p.data.chunks(n)) {
            // dS = P ∘ (dP − Σ_j P dP), row by row
            let centre = dot(p, d_s);
            for (ds, &p) in d_s.iter_mut().zip(p) {
                *ds = p * (*ds - centre);
            }
        }
        let d_s = Matrix::new(d_s, n, n);
        gemm(s.scale(), d_s, part(1, h), 0.0, &mut d_qkv[at(0, h)..], 3 * c); // dQ = dS k
        gemm(s.scale(), d_s.t(), part(0, h), 0.0, &mut d_qkv[at(1, h)..], 3 * c); // dK = dSᵀ q
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
    y: &mut [f32],
    stats: Option<&mut [f32]>,
) {
    let mut stats = stats;
    let c = gamma.len();
    for (r, (x, y)) in x.chunks(c).zip(y.chunks_mut(c)).enumerate() {
        let mean = sum(x) / c as f32;
        let var = reduce2(x, x, |v, _| (v - mean) * (v - mean)) / c as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        for (((y, x), g), b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
            *y = (x - mean) * rstd * g + b;
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
    let mut y = zeros(x.len());
    let tasks = x
        .par_chunks(ROWS_PER_TASK * c)
        .zip(y.par_chunks_mut(ROWS_PER_TASK * c));
    match stats {
        Some(stats) => tasks
            .zip(stats.par_chunks_mut(ROWS_PER_TASK * 2))
            .for_each(|((x, y), stats)| layer_norm_rows(x, gamma, beta, eps, y, Some(stats))),
        None => tasks.for_each(|(x, y)| layer_norm_rows(x, gamma, beta, eps, y, None)),
    }
    y
}

multiversion! {
/// LayerNorm backward of one task's rows: writes `d_x`, adds to `d_gamma` and `d_beta`.
fn layer_norm_backward_rows(
    x: &[f32],
    gamma: &[f32],
    stats: &[f32],
    d_y: &[f32],
    d_x: &mut [f32],
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
            *d_x = rstd * (g - mean_g - x_hat * mean_gx);
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
    let mut d_x = zeros(x.len());
    let partials: Vec<(Vec<f32>, Vec<f32>)> = x
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
    let (mut d_gamma, mut d_beta) = (vec![0.0; c], vec![0.0; c]);
    for (g, b) in &partials {
        axpy(1.0, g, &mut d_gamma);
        axpy(1.0, b, &mut d_beta);
    }
    (d_x, d_gamma, d_beta)
}

multiversion! {
fn gelu_chunk(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = math::gelu(x);
    }
}
}

multiversion! {
fn gelu_backward_chunk(x: &[f32], d_y: &[f32], d_x: &mut [f32]) {
    for ((d_x, &x), &g) in d_x.iter_mut().zip(x).zip(d_y) {
        *d_x = g * math::gelu_derivative(x);
    }
}
}

/// Exact (erf) GELU of every element.
pub fn gelu_forward(x: &[f32]) -> Vec<f32> {
    let mut y = zeros(x.len());
    x.par_chunks(ELEMENTS_PER_TASK)
        .zip(y.par_chunks_mut(ELEMENTS_PER_TASK))
        .for_each(|(x, y)| gelu_chunk(x, y));
    y
}

/// `dx = dy · gelu'(x)`.
pub fn gelu_backward(x: &[f32], d_y: &[f32]) -> Vec<f32> {
    let mut d_x = zeros(x.len());
    x.par_chunks(ELEMENTS_PER_TASK)
        .zip(d_y.par_chunks(ELEMENTS_PER_TASK))
        .zip(d_x.par_chunks_mut(ELEMENTS_PER_TASK))
        .for_each(|((x, d_y), d_x)| gelu_backward_chunk(x, d_y, d_x));
    d_x
}
