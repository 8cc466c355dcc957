//! Single-precision matrix products. The Linear layers' products go through a packed 6 × 16
//! AVX2 + FMA micro-kernel (the shape of BLIS's Haswell kernel), parallel over output rows, or,
//! for the weight gradient `xᵀ · dy` whose inner dimension is every token of the batch, over that
//! dimension with partial sums added in a fixed order. matrixmultiply's sgemm does the products on
//! CPUs without AVX2 + FMA, and the attention's small per-head products.
//!
//! Why not matrixmultiply for all of them: on a Swin step's Linear shapes (inner dimension 48–384)
//! it ran at 66–84 % of PyTorch's sgemm, and at 29–39 % on the weight gradients with 48 output
//! rows (53–82 % with 96–384), which leave its row split little to share between cores; it also
//! packs both operands of every product. This kernel
//! packs only the small operand and is level with PyTorch (docs/speed.md: `eesmm bench gemm`).
//!
//! Work is split into blocks whose size depends on the shapes only, never on the thread count,
//! and a block's sums run in one order, so the result is the same bit for bit on any number of
//! threads (on a given CPU: the fallback adds in another order).

/// A `[rows, cols]` matrix inside a slice that starts at its first element, with any (row,
/// column) strides: a sub-block of a wider row-major matrix, or the transpose of one.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    /// (row stride, column stride) in elements.
    pub strides: (isize, isize),
}

/// Whether `rows × cols` elements at `row_stride` fit in `len` (checked before every product).
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * row_stride + cols <= len
}

impl<'a> Matrix<'a> {
    /// A row-major `[rows, cols]` matrix filling `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "a [{rows}, {cols}] matrix");
        Self::view(data, rows, cols, cols)
    }

    /// `[rows, cols]` at the start of `data`, rows `row_stride` apart.
    pub fn view(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
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

    /// The transpose (a view of the same data).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            strides: (self.strides.1, self.strides.0),
            ..self
        }
    }

    /// Offset of element `(row, col)` in `data`.
    fn offset(&self, row: usize, col: usize) -> usize {
        (row as isize * self.strides.0 + col as isize * self.strides.1) as usize
    }
}

/// `c = alpha · a · b + beta · c`, `c` a `[a.rows, b.cols]` view with rows `c_row_stride` apart
/// (matrixmultiply's sgemm, on every core for large enough products; it splits rows and
/// columns, never the sum, so the result does not depend on the thread count).
pub fn gemm(alpha: f32, a: Matrix, b: Matrix, beta: f32, c: &mut [f32], c_row_stride: usize) {
    assert!(fits(c.len(), a.rows, b.cols, c_row_stride), "output view");
    assert_eq!(a.cols, b.rows, "inner dimensions");
    // SAFETY: `Matrix::view` checked that each input holds its elements at the strides given (a
    // transpose only swaps them), and `fits` that `c` holds the output at its stride.
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
            c.as_mut_ptr(),
            c_row_stride as isize,
            1,
        )
    }
}

/// `a · b`, plus `bias` on every row when given: a new row-major `[a.rows, b.cols]` buffer.
/// Parallel over blocks of rows; for products whose inner dimension is short next to the rows
/// (a Linear layer's forward and input gradient).
pub fn product(a: Matrix, b: Matrix, bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), b.cols, "one bias per output column");
    }
    #[cfg(target_arch = "x86_64")]
    if avx2::available() && a.cols > 0 {
        return avx2::product(a, b, bias);
    }
    matrixmultiply_product(a, b, bias)
}

/// `a · b` for a long inner dimension and a small output (a Linear layer's weight gradient,
/// `xᵀ · dy`, summed over every token): parallel over blocks of the inner dimension, whose
/// partial products are added in block order.
pub fn product_summed(a: Matrix, b: Matrix) -> Vec<f32> {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    #[cfg(target_arch = "x86_64")]
    if avx2::available() && a.cols > 0 {
        return avx2::product_summed(a, b);
    }
    matrixmultiply_product(a, b, None)
}

/// `c = scale · a · b`, or `c += scale · a · b` with `add`, on the calling thread: `c` a
/// `[a.rows, b.cols]` view with rows `c_row_stride` apart. For the attention's per-window,
/// per-head products, which run inside a parallel loop over windows.
pub fn product_to(a: Matrix, b: Matrix, scale: f32, c: &mut [f32], c_row_stride: usize, add: bool) {
    assert!(fits(c.len(), a.rows, b.cols, c_row_stride), "output view");
    assert_eq!(a.cols, b.rows, "inner dimensions");
    #[cfg(target_arch = "x86_64")]
    if avx2::available() && a.cols > 0 && b.cols > 0 {
        return avx2::product_to(a, b, scale, c, c_row_stride, add);
    }
    gemm(scale, a, b, if add { 1.0 } else { 0.0 }, c, c_row_stride);
}

/// [`product`] through matrixmultiply alone (the fallback, and the comparison of
/// `eesmm bench gemm`): the bias rows written first, then `c += a · b`.
pub fn matrixmultiply_product(a: Matrix, b: Matrix, bias: Option<&[f32]>) -> Vec<f32> {
    let (rows, cols) = (a.rows, b.cols);
    let mut c = match bias {
        Some(bias) => bias.repeat(rows),
        None => vec![0.0; rows * cols],
    };
    gemm(1.0, a, b, 1.0, &mut c, cols);
    c
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use rayon::prelude::*;

    use super::*;

    /// Rows of the micro-kernel's output tile, and its columns (two AVX registers).
    const MR: usize = 6;
    const NR: usize = 16;
    /// Inner-dimension block: a packed `[KC, NR]` panel of `b` (32 KiB) stays in the L1 cache.
    const KC: usize = 512;
    /// Output rows computed by one rayon task in [`product`].
    const ROWS_PER_TASK: usize = 96;
    /// [`product_summed`]: at most this many partial products, each of at least
    /// [`MIN_INNER_PER_TASK`] inner rows, and [`ROWS_PER_SUMMED_TASK`] rows of a partial per task.
    const MAX_PARTIALS: usize = 32;
    const MIN_INNER_PER_TASK: usize = KC;
    const ROWS_PER_SUMMED_TASK: usize = 8 * MR;
    /// Output elements added up by one rayon task when the partial products are summed.
    const SUM_PER_TASK: usize = 4096;

    /// `scale ·` `b`'s rows `k0..k0 + kc` as panels of [`NR`] columns, `[panel][k][NR]`, the last
    /// panel zero-padded: the micro-kernel reads one panel row per step.
    fn pack_b(b: &Matrix, k0: usize, kc: usize, scale: f32, packed: &mut Vec<f32>) {
        let panels = b.cols.div_ceil(NR);
        packed.clear();
        packed.resize(panels * kc * NR, 0.0);
        for (p, panel) in packed.chunks_mut(kc * NR).enumerate() {
            let cols = NR.min(b.cols - p * NR);
            if b.strides.0 == 1 {
                // A transposed operand (kᵀ, vᵀ in the attention): its columns are contiguous, so
                // read each column once and scatter it into the panel (which stays in L1).
                for j in 0..cols {
                    let start = b.offset(k0, p * NR + j);
                    for (k, &v) in b.data[start..start + kc].iter().enumerate() {
                        panel[k * NR + j] = v * scale;
                    }
                }
                continue;
            }
            for (k, dst) in panel.chunks_mut(NR).enumerate() {
                let start = b.offset(k0 + k, p * NR);
                if b.strides.1 == 1 && cols == NR {
                    // A fixed-size copy: a call to memcpy per 64 bytes cost more than the product.
                    let src: &[f32; NR] = b.data[start..start + NR].try_into().expect("16 floats");
                    let dst: &mut [f32; NR] = dst.try_into().expect("16 floats");
                    *dst = src.map(|v| v * scale);
                } else {
                    for (j, d) in dst[..cols].iter_mut().enumerate() {
                        *d = b.data[start + j * b.strides.1 as usize] * scale;
                    }
                }
            }
        }
    }

    /// `a`'s columns `k0..k0 + kc` as panels of [`MR`] rows, `[panel][k][MR]`, the last panel
    /// zero-padded (for `a = xᵀ`, whose rows are the columns of `x`: the micro-kernel then reads
    /// one contiguous group of [`MR`] per step instead of [`MR`] cache lines).
    fn pack_a(a: &Matrix, k0: usize, kc: usize, packed: &mut Vec<f32>) {
        let panels = a.rows.div_ceil(MR);
        packed.clear();
        packed.resize(panels * kc * MR, 0.0);
        for (p, panel) in packed.chunks_mut(kc * MR).enumerate() {
            let rows = MR.min(a.rows - p * MR);
            for (k, dst) in panel.chunks_mut(MR).enumerate() {
                let start = a.offset(p * MR, k0 + k);
                if a.strides.0 == 1 && rows == MR {
                    let src: &[f32; MR] = a.data[start..start + MR].try_into().expect("6 floats");
                    let dst: &mut [f32; MR] = dst.try_into().expect("6 floats");
                    *dst = *src;
                } else {
                    for (i, d) in dst[..rows].iter_mut().enumerate() {
                        *d = a.data[start + i * a.strides.0 as usize];
                    }
                }
            }
        }
    }

    pub fn available() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    /// What a micro-kernel's accumulators start from.
    #[derive(Clone, Copy)]
    enum Start<'a> {
        Zero,
        /// The bias of the tile's columns, on every row.
        Bias(&'a [f32]),
        /// The output tile's current values (a later block of the inner dimension).
        Output,
    }

    /// An `MR' × NR` output tile (`MR' = ROWS ≤ MR`, `cols ≤ NR` of its columns stored):
    /// `c = start + Σ_k a[:, k] ⊗ b[k, :]` over `kc` steps. `a` advances by `a_step` per step
    /// and holds a row every `a_row` floats; `b` holds [`NR`] floats at each step, `b_step`
    /// apart (a packed panel, or a matrix's rows in place).
    ///
    /// # Safety
    /// AVX2 and FMA present; `a` readable at `i·a_row + k·a_step` for `i < ROWS`, `k < kc`; `b`
    /// readable at `k·b_step + j` for `k < kc`, `j < NR`; `c` writable (and readable with [`Start::Output`]) at
    /// `i·c_row + j` for `i < ROWS`, `j < cols`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const ROWS: usize>(
        kc: usize,
        a: *const f32,
        a_row: isize,
        a_step: isize,
        (b, b_step): (*const f32, usize),
        c: *mut f32,
        c_row: usize,
        cols: usize,
        start: Start,
    ) {
        let mut row = [0.0f32; NR];
        let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
        // SAFETY (this block and below): the pointer ranges are the caller's contract; `row`
        // holds NR floats.
        unsafe {
            match start {
                Start::Zero => {}
                Start::Bias(bias) => {
                    row[..cols].copy_from_slice(&bias[..cols]);
                    let halves = [_mm256_loadu_ps(row.as_ptr()), _mm256_loadu_ps(&row[8])];
                    acc = [halves; ROWS];
                }
                Start::Output => {
                    for (i, acc) in acc.iter_mut().enumerate() {
                        std::ptr::copy_nonoverlapping(c.add(i * c_row), row.as_mut_ptr(), cols);
                        *acc = [_mm256_loadu_ps(row.as_ptr()), _mm256_loadu_ps(&row[8])];
                    }
                }
            }
            let (mut a, mut b) = (a, b);
            for _ in 0..kc {
                let (b0, b1) = (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let a_i = _mm256_broadcast_ss(&*a.offset(i as isize * a_row));
                    acc[0] = _mm256_fmadd_ps(a_i, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(a_i, b1, acc[1]);
                }
                a = a.offset(a_step);
                b = b.add(b_step);
            }
            for (i, acc) in acc.iter().enumerate() {
                let out = c.add(i * c_row);
                if cols == NR {
                    _mm256_storeu_ps(out, acc[0]);
                    _mm256_storeu_ps(out.add(8), acc[1]);
                } else {
                    _mm256_storeu_ps(row.as_mut_ptr(), acc[0]);
                    _mm256_storeu_ps(row.as_mut_ptr().add(8), acc[1]);
                    std::ptr::copy_nonoverlapping(row.as_ptr(), out, cols);
                }
            }
        }
    }

    /// [`tile`] for `rows ≤ MR` rows.
    ///
    /// # Safety
    /// As [`tile`], with `ROWS = rows`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn any_tile(
        rows: usize,
        kc: usize,
        a: *const f32,
        a_row: isize,
        a_step: isize,
        b: (*const f32, usize),
        c: *mut f32,
        c_row: usize,
        cols: usize,
        start: Start,
    ) {
        // SAFETY: the caller's contract; `available()` was checked before any product came here.
        unsafe {
            match rows {
                6 => tile::<6>(kc, a, a_row, a_step, b, c, c_row, cols, start),
                5 => tile::<5>(kc, a, a_row, a_step, b, c, c_row, cols, start),
                4 => tile::<4>(kc, a, a_row, a_step, b, c, c_row, cols, start),
                3 => tile::<3>(kc, a, a_row, a_step, b, c, c_row, cols, start),
                2 => tile::<2>(kc, a, a_row, a_step, b, c, c_row, cols, start),
                1 => tile::<1>(kc, a, a_row, a_step, b, c, c_row, cols, start),
                _ => unreachable!("a tile has 1 to {MR} rows"),
            }
        }
    }

    /// Where a block's `a` comes from: `a` itself (rows in place), or packed by [`pack_a`].
    #[derive(Clone, Copy)]
    enum Lhs<'a> {
        Rows(&'a Matrix<'a>),
        Packed(&'a [f32]),
    }

    /// Where a block's `b` comes from: panels packed by [`pack_b`], or `b` itself, read in
    /// place, when its rows are contiguous and its columns a multiple of [`NR`] (a weight
    /// gradient's `dy`: packing it copied the whole of it for every product).
    #[derive(Clone, Copy)]
    enum Rhs<'a> {
        Packed(&'a [f32]),
        Rows(&'a Matrix<'a>),
    }

    impl Rhs<'_> {
        /// Whether `b` can be read in place.
        fn in_place(b: &Matrix) -> bool {
            b.strides.1 == 1 && b.cols.is_multiple_of(NR)
        }
    }

    /// `c[rows r0..r1] (start) + a[r0..r1, k0..k0 + kc] · b[k0..k0 + kc, :]`, `b` with `n`
    /// columns; `c` points at row `r0` of an output with rows `c_row` apart.
    ///
    /// # Safety
    /// `c` writable (and readable unless `start` is a bias or zero) for rows `r0..r1` at
    /// `c_row`, `n` columns each; the rows and columns named lie inside `a` and `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        lhs: Lhs,
        (r0, r1): (usize, usize),
        (k0, kc): (usize, usize),
        rhs: Rhs,
        c_row: usize,
        c: *mut f32,
        start: Start,
        n: usize,
    ) {
        for p in 0..n.div_ceil(NR) {
            let cols = NR.min(n - p * NR);
            let (panel, b_step) = match rhs {
                Rhs::Packed(packed) => (&packed[p * kc * NR..][..kc * NR], NR),
                Rhs::Rows(b) => (&b.data[b.offset(k0, p * NR)..], b.strides.0 as usize),
            };
            let start = match start {
                Start::Bias(bias) => Start::Bias(&bias[p * NR..]),
                other => other,
            };
            for i in (r0..r1).step_by(MR) {
                let rows = MR.min(r1 - i);
                let (a, a_row, a_step) = match lhs {
                    Lhs::Rows(a) => (&a.data[a.offset(i, k0)..], a.strides.0, a.strides.1),
                    Lhs::Packed(packed) => (&packed[(i / MR) * kc * MR..], 1, MR as isize),
                };
                // SAFETY: the tile's rows lie in `a` (or its packed panel), its `kc` steps in
                // the panel of `b`, and its output in `c` (the caller's contract).
                unsafe {
                    let c = c.add((i - r0) * c_row + p * NR);
                    let b = (panel.as_ptr(), b_step);
                    any_tile(
                        rows,
                        kc,
                        a.as_ptr(),
                        a_row,
                        a_step,
                        b,
                        c,
                        c_row,
                        cols,
                        start,
                    );
                }
            }
        }
    }

    /// [`super::product`] on AVX2 + FMA.
    pub fn product(a: Matrix, b: Matrix, bias: Option<&[f32]>) -> Vec<f32> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let packed: Vec<(usize, usize, Vec<f32>)> = (0..k)
            .step_by(KC)
            .map(|k0| {
                let kc = KC.min(k - k0);
                let mut panels = Vec::new();
                pack_b(&b, k0, kc, 1.0, &mut panels);
                (k0, kc, panels)
            })
            .collect();
        let mut c = Vec::with_capacity(m * n);
        c.spare_capacity_mut()
            .par_chunks_mut(ROWS_PER_TASK * n.max(1))
            .enumerate()
            .for_each(|(task, chunk)| {
                let r0 = task * ROWS_PER_TASK;
                let rows = (r0, (r0 + ROWS_PER_TASK).min(m));
                let out = chunk.as_mut_ptr().cast::<f32>();
                for (block_index, (k0, kc, panels)) in packed.iter().enumerate() {
                    let start = match (block_index, bias) {
                        (0, Some(bias)) => Start::Bias(bias),
                        (0, None) => Start::Zero,
                        _ => Start::Output,
                    };
                    // SAFETY: `chunk` is rows `r0..r1` of the output; the first block writes
                    // every element before a later one reads it.
                    unsafe {
                        block(
                            Lhs::Rows(&a),
                            rows,
                            (*k0, *kc),
                            Rhs::Packed(panels),
                            n,
                            out,
                            start,
                            n,
                        )
                    };
                }
            });
        // SAFETY: every element was written by its row task's first block (k > 0).
        unsafe { c.set_len(m * n) };
        c
    }

    /// [`super::product_to`] on AVX2 + FMA.
    pub fn product_to(
        a: Matrix,
        b: Matrix,
        scale: f32,
        c: &mut [f32],
        c_row_stride: usize,
        add: bool,
    ) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let mut packed = Vec::new();
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            pack_b(&b, k0, kc, scale, &mut packed);
            let start = if add || k0 > 0 {
                Start::Output
            } else {
                Start::Zero
            };
            let (lhs, rhs) = (Lhs::Rows(&a), Rhs::Packed(&packed));
            // SAFETY: the caller checked that `c` holds `[m, n]` at `c_row_stride`.
            unsafe {
                block(
                    lhs,
                    (0, m),
                    (k0, kc),
                    rhs,
                    c_row_stride,
                    c.as_mut_ptr(),
                    start,
                    n,
                )
            };
        }
    }

    /// [`super::product_summed`] on AVX2 + FMA.
    pub fn product_summed(a: Matrix, b: Matrix) -> Vec<f32> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let per_task = k.div_ceil(MAX_PARTIALS).max(MIN_INNER_PER_TASK);
        let b_in_place = Rhs::in_place(&b);
        let mut partials: Vec<Vec<f32>> = (0..k.div_ceil(per_task))
            .into_par_iter()
            .map(|task| {
                let (start, end) = (task * per_task, ((task + 1) * per_task).min(k));
                let (mut packed_a, mut packed_b) = (Vec::new(), Vec::new());
                let mut c = vec![0.0; m * n];
                for k0 in (start..end).step_by(KC) {
                    let kc = KC.min(end - k0);
                    pack_a(&a, k0, kc, &mut packed_a);
                    if !b_in_place {
                        pack_b(&b, k0, kc, 1.0, &mut packed_b);
                    }
                    // Row blocks of the partial in parallel too: a short inner dimension leaves
                    // too few partials to keep every core busy.
                    c.par_chunks_mut(ROWS_PER_SUMMED_TASK * n.max(1))
                        .enumerate()
                        .for_each(|(block_index, out)| {
                            let r0 = block_index * ROWS_PER_SUMMED_TASK;
                            let rows = (r0, (r0 + ROWS_PER_SUMMED_TASK).min(m));
                            let lhs = Lhs::Packed(&packed_a);
                            let rhs = match b_in_place {
                                true => Rhs::Rows(&b),
                                false => Rhs::Packed(&packed_b),
                            };
                            let out = out.as_mut_ptr();
                            // SAFETY: `out` is rows `r0..r1` of the initialised partial.
                            unsafe { block(lhs, rows, (k0, kc), rhs, n, out, Start::Output, n) };
                        });
                }
                c
            })
            .collect();
        let rest = partials.split_off(1);
        let mut sum = partials.pop().expect("k > 0 gives a partial");
        sum.par_chunks_mut(SUM_PER_TASK)
            .enumerate()
            .for_each(|(task, chunk)| {
                for partial in &rest {
                    let partial = &partial[task * SUM_PER_TASK..][..chunk.len()];
                    for (s, p) in chunk.iter_mut().zip(partial) {
                        *s += p;
                    }
                }
            });
        sum
    }
}

#[cfg(test)]
mod tests {
    //! The AVX2 products against a plain triple loop in f64, on shapes with every kind of edge
    //! tile (rows and columns not multiples of 6 and 16, inner dimensions across blocks).
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn reference(a: &Matrix, b: &Matrix, bias: Option<&[f32]>) -> Vec<f64> {
        let mut c = vec![0.0f64; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = bias.map_or(0.0, |b| b[j] as f64);
                for k in 0..a.cols {
                    s += a.data[a.offset(i, k)] as f64 * b.data[b.offset(k, j)] as f64;
                }
                c[i * b.cols + j] = s;
            }
        }
        c
    }

    fn assert_close(got: &[f32], want: &[f64], inner: usize) {
        assert_eq!(got.len(), want.len());
        let tol = 1e-6 * (inner as f64).sqrt() * 4.0 + 1e-6;
        for (g, w) in got.iter().zip(want) {
            assert!(g.is_finite(), "a non-finite product");
            assert!(
                ((*g as f64) - w).abs() <= tol * w.abs().max(1.0),
                "{g} vs {w}"
            );
        }
    }

    #[test]
    fn products_match_a_plain_loop_on_edge_shapes() {
        for (m, k, n) in [
            (1, 1, 1),
            (7, 5, 17),
            (13, 48, 33),
            (100, 600, 50),
            (200, 1100, 16),
        ] {
            let (x, w, bias) = (values(m * k, 1), values(k * n, 2), values(n, 3));
            let (x_m, w_m) = (Matrix::new(&x, m, k), Matrix::new(&w, k, n));
            assert_close(
                &product(x_m, w_m, Some(&bias)),
                &reference(&x_m, &w_m, Some(&bias)),
                k,
            );
            assert_close(&product(x_m, w_m, None), &reference(&x_m, &w_m, None), k);
            // The input gradient `dy · wᵀ` and the weight gradient `xᵀ · dy` of a Linear layer.
            let d_y = values(m * n, 4);
            let d_y_m = Matrix::new(&d_y, m, n);
            assert_close(
                &product(d_y_m, w_m.t(), None),
                &reference(&d_y_m, &w_m.t(), None),
                n,
            );
            let summed = product_summed(x_m.t(), d_y_m);
            assert_close(&summed, &reference(&x_m.t(), &d_y_m, None), m);
        }
    }

    /// The attention's per-head products: views into a `[N, 3C]` qkv block (row stride 3C),
    /// transposed operands, a scale, and accumulation into an output with its own row stride.
    #[test]
    fn in_place_products_on_strided_and_transposed_views() {
        let (n, hd, heads) = (49, 16, 3);
        let c = hd * heads;
        let qkv = values(n * 3 * c, 7);
        let q = Matrix::view(&qkv[hd..], n, hd, 3 * c); // head 1's q
        let k = Matrix::view(&qkv[c + hd..], n, hd, 3 * c); // head 1's k
        let start = values(n * n, 8);
        let mut logits = start.clone();
        product_to(q, k.t(), 0.25, &mut logits, n, true);
        let want: Vec<f64> = reference(&q, &k.t(), None)
            .iter()
            .zip(&start)
            .map(|(p, s)| *s as f64 + 0.25 * p)
            .collect();
        assert_close(&logits, &want, hd);
        // P v into a wider output (row stride C, head 1's columns), and Pᵀ · dO.
        let p = Matrix::new(&start, n, n);
        let mut out = vec![f32::NAN; n * c];
        product_to(p, k, 1.0, &mut out[hd..], c, false);
        let got: Vec<f32> = out
            .chunks(c)
            .flat_map(|row| row[hd..2 * hd].to_vec())
            .collect();
        assert_close(&got, &reference(&p, &k, None), n);
        let mut d_v = vec![0.0; n * hd];
        product_to(p.t(), q, 1.0, &mut d_v, hd, false);
        assert_close(&d_v, &reference(&p.t(), &q, None), n);
    }

    #[test]
    fn summed_product_splits_its_inner_dimension_and_matches_the_fallback() {
        // 40,000 inner rows: several partial products, each of several KC blocks.
        let (m, k, n) = (40_000, 20, 24);
        let (x, d_y) = (values(m * k, 5), values(m * n, 6));
        let (x_m, d_y_m) = (Matrix::new(&x, m, k), Matrix::new(&d_y, m, n));
        let ours = product_summed(x_m.t(), d_y_m);
        assert_close(&ours, &reference(&x_m.t(), &d_y_m, None), m);
        let theirs = matrixmultiply_product(x_m.t(), d_y_m, None);
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-2, "{worst}");
    }
}
