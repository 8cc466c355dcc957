//! Branch-free `exp` and `erf` for f32, so that the loops of the CPU kernels that call them
//! vectorise (`f32::exp` and libm's `erff` are scalar calls, 11 % of a training step before).

use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E};

/// `e^x` with Cephes' degree-6 polynomial after reduction by `ln 2` (relative error ≤ 2e-7).
/// Inputs are clamped to [-87, 88], so results stay normal: `exp(-100)` gives 1.6e-38.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// The error function by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7), the formula
/// PyTorch's vectorised CPU `erf` uses.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_given_exp(x, exp(-x * x))
}

/// [`erf`]`(x)` when `e^(-x²)` is already known.
#[inline(always)]
fn erf_given_exp(x: f32, exp_minus_x_squared: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152,
        1.061_405_4,
    ];
    let t = 1.0 / (1.0 + P * x.abs());
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    (1.0 - poly * exp_minus_x_squared).copysign(x)
}

/// Exact GELU, `x · Φ(x)` with `Φ(x) = (1 + erf(x / √2)) / 2`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// `d gelu / dx = Φ(x) + x · φ(x)`, φ the standard normal density. Φ's `erf(x / √2)` and φ share
/// one `e^(-x²/2)`.
#[inline(always)]
pub fn gelu_derivative(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let z = x * FRAC_1_SQRT_2;
    let e = exp(-z * z); // e^(-x²/2)
    0.5 * (1.0 + erf_given_exp(z, e)) + x * INV_SQRT_2PI * e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> impl Iterator<Item = f32> {
        (-20_000..=20_000).map(|i| i as f32 * 0.001)
    }

    #[test]
    fn exp_is_within_3e_7_relative_of_std() {
        let worst = inputs()
            .map(|x| ((exp(x) - x.exp()) / x.exp()).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert!(exp(-100.0) > 0.0 && exp(-100.0) < 1e-37);
    }

    #[test]
    fn erf_is_within_2e_7_of_f64_erf() {
        // Abramowitz & Stegun, Table 7.1.
        let table: [(f32, f64); 6] = [
            (0.1, 0.112_462_916),
            (0.5, 0.520_499_878),
            (1.0, 0.842_700_793),
            (1.5, 0.966_105_146),
            (2.0, 0.995_322_265),
            (3.0, 0.999_977_910),
        ];
        for (x, expected) in table {
            let (up, down) = (erf(x) as f64, erf(-x) as f64);
            assert!((up - expected).abs() < 2e-7, "erf({x}) = {up}");
            assert!((down + expected).abs() < 2e-7, "erf(-{x}) = {down}");
        }
        assert!(erf(0.0).abs() < 2e-7);
        assert!((erf(10.0) - 1.0).abs() < 1e-7);
    }

    #[test]
    fn gelu_derivative_matches_a_central_difference() {
        for x in inputs().step_by(97).map(|x| x * 0.3) {
            let h = 1e-2f64;
            let g = |x: f64| gelu(x as f32) as f64;
            let numeric = (g(x as f64 + h) - g(x as f64 - h)) / (2.0 * h);
            let analytic = gelu_derivative(x) as f64;
            assert!(
                (numeric - analytic).abs() < 2e-3,
                "x {x}: {numeric} vs {analytic}"
            );
        }
    }
}
