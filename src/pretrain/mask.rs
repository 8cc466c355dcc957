//! Random patch masks (SimMIM): an image is cut into `mask_patch x mask_patch` cells and exactly
//! `round(ratio * cells)` of them are masked. 1 = masked, 0 = visible.

use rand::seq::index::sample;
use rand::Rng;

/// `[grid * grid]` cells, `round(ratio * grid²)` of them set to 1.
pub fn random_mask(rng: &mut impl Rng, grid: usize, ratio: f64) -> Vec<f32> {
    let cells = grid * grid;
    let masked = (ratio * cells as f64).round() as usize;
    let mut mask = vec![0.0; cells];
    for i in sample(rng, cells, masked.min(cells)) {
        mask[i] = 1.0;
    }
    mask
}

/// The complementary mask `1 − mask` (MixMIM's pairing): masked exactly where `mask` is visible.
pub fn complement(mask: &[f32]) -> Vec<f32> {
    mask.iter().map(|&m| 1.0 - m).collect()
}

/// Repeats each cell of a `[grid * grid]` mask `factor x factor` times: `[(grid*factor)²]`.
pub fn upsample(mask: &[f32], grid: usize, factor: usize) -> Vec<f32> {
    let side = grid * factor;
    (0..side * side)
        .map(|i| mask[(i / side / factor) * grid + (i % side) / factor])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn masks_exactly_the_requested_share_of_cells() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mask = random_mask(&mut rng, 7, 0.6);
        assert_eq!(mask.iter().sum::<f32>(), 29.0); // round(0.6 * 49)
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0));
    }

    /// Every cell is masked in exactly one of the two: disjoint visible sets covering the grid.
    #[test]
    fn complementary_masks_are_disjoint_and_cover_the_grid() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let first = random_mask(&mut rng, 7, 0.5);
        let second = complement(&first);
        assert_eq!(second.iter().sum::<f32>(), 49.0 - first.iter().sum::<f32>());
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a + b, 1.0, "a cell is masked in both or in neither");
        }
    }

    #[test]
    fn upsampling_repeats_cells() {
        let up = upsample(&[1.0, 0.0, 0.0, 1.0], 2, 2);
        #[rustfmt::skip]
        assert_eq!(up, vec![1., 1., 0., 0.,
                            1., 1., 0., 0.,
                            0., 0., 1., 1.,
                            0., 0., 1., 1.]);
    }
}
