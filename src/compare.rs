//! How a result is judged against a reference: the largest absolute difference, where a NaN or
//! an infinity on either side is a failure, never a match (`f32::max` alone drops NaN, so a
//! broken model would otherwise compare as 0 apart).

/// The difference of two arrays of the same length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// Largest `|actual - expected|`; infinite when either side holds a non-finite value.
    pub max_abs: f32,
    /// `max_abs / max |expected|`.
    pub relative: f32,
}

impl Difference {
    pub fn within(&self, tolerance: f32) -> bool {
        self.max_abs <= tolerance
    }
}

/// Compares `actual` with `expected` (same length, checked by the caller).
pub fn difference(actual: &[f32], expected: &[f32]) -> Difference {
    debug_assert_eq!(actual.len(), expected.len());
    let max_abs = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| {
            if a.is_finite() && e.is_finite() {
                (a - e).abs()
            } else {
                f32::INFINITY
            }
        })
        .fold(0.0f32, f32::max);
    let scale = expected
        .iter()
        .filter(|e| e.is_finite())
        .map(|e| e.abs())
        .fold(0.0f32, f32::max);
    Difference {
        max_abs,
        relative: max_abs / scale.max(f32::MIN_POSITIVE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_arrays_give_their_largest_difference() {
        let d = difference(&[1.0, 2.0, 3.5], &[1.0, 2.5, 4.0]);
        assert_eq!(d.max_abs, 0.5);
        assert_eq!(d.relative, 0.125);
        assert!(d.within(0.5) && !d.within(0.4));
    }

    #[test]
    fn nan_or_infinity_on_either_side_never_passes() {
        for (a, e) in [
            (vec![f32::NAN, 1.0], vec![0.0, 1.0]),
            (vec![0.0, 1.0], vec![f32::NAN, 1.0]),
            (vec![f32::NAN; 2], vec![f32::NAN; 2]),
            (vec![f32::INFINITY, 1.0], vec![f32::INFINITY, 1.0]),
            (vec![0.0, f32::NEG_INFINITY], vec![0.0, 1.0]),
        ] {
            let d = difference(&a, &e);
            assert_eq!(d.max_abs, f32::INFINITY, "{a:?} vs {e:?}");
            assert!(!d.within(f32::MAX), "{a:?} vs {e:?}");
        }
    }
}
