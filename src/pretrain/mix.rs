//! The geometric transforms of EESMM's superposition (paper eq. 3):
//! `I_mix = λ1·A(I1 ⊙ M1) + λ2·B(I2 ⊙ M2)` with A = rotation + horizontal flip and
//! B = scale + crop. Each is an affine warp of a normalised `[C, S, S]` image with bilinear
//! sampling; pixels that come from outside the image are 0 (the dataset mean).

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which transforms are on; all off gives the plain `λ1·I1⊙M1 + λ2·I2⊙M2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixAugment {
    /// A: rotate the first image by an angle drawn from ±`rotate_degrees`, ≥ 0 (0 = off).
    /// Default: 15.0.
    #[serde(default = "default_rotate")]
    pub rotate_degrees: f32,
    /// A: flip the first image horizontally with probability 1/2. Default: true.
    #[serde(default = "crate::yaml::default_true")]
    pub hflip: bool,
    /// B: zoom the second image by a factor drawn from `[1, max_scale]`, ≥ 1 (1 = off).
    /// Default: 1.25.
    #[serde(default = "default_scale")]
    pub max_scale: f32,
    /// B: keep a random (instead of the central) window of the zoomed image. Default: true.
    #[serde(default = "crate::yaml::default_true")]
    pub random_crop: bool,
}

fn default_rotate() -> f32 {
    15.0
}
fn default_scale() -> f32 {
    1.25
}

impl Default for MixAugment {
    fn default() -> Self {
        Self {
            rotate_degrees: default_rotate(),
            hflip: true,
            max_scale: default_scale(),
            random_crop: true,
        }
    }
}

impl MixAugment {
    /// A finite rotation ≥ 0 and a finite zoom ≥ 1.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.rotate_degrees.is_finite() && self.rotate_degrees >= 0.0,
            "objective.augment.rotate_degrees: {} is not a finite angle ≥ 0 (0 turns it off)",
            self.rotate_degrees
        );
        anyhow::ensure!(
            self.max_scale.is_finite() && self.max_scale >= 1.0,
            "objective.augment.max_scale: {} is not a finite zoom ≥ 1 (1 turns it off)",
            self.max_scale
        );
        Ok(())
    }

    pub fn off() -> Self {
        Self {
            rotate_degrees: 0.0,
            hflip: false,
            max_scale: 1.0,
            random_crop: false,
        }
    }
}

/// Maps an output pixel centre (x, y) to its source position: `src = M · (x, y) + t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub m: [[f32; 2]; 2],
    pub t: [f32; 2],
}

impl Affine {
    pub const IDENTITY: Affine = Affine {
        m: [[1.0, 0.0], [0.0, 1.0]],
        t: [0.0, 0.0],
    };

    /// A (first image): rotation by `degrees` about the centre, then an optional horizontal flip.
    pub fn rotate_flip(size: usize, degrees: f32, flip: bool) -> Self {
        let c = (size as f32 - 1.0) / 2.0;
        let (sin, cos) = degrees.to_radians().sin_cos();
        let f = if flip { -1.0 } else { 1.0 };
        // Output (x, y) → unflip → rotate back about the centre.
        let m = [[cos * f, sin], [-sin * f, cos]];
        let t = [c - m[0][0] * c - m[0][1] * c, c - m[1][0] * c - m[1][1] * c];
        Affine { m, t }
    }

    /// B (second image): zoom in by `scale` and keep the window whose top-left corner is at
    /// `offset` (in units of the zoomed image's spare margin, each in [0, 1]).
    pub fn scale_crop(size: usize, scale: f32, offset: [f32; 2]) -> Self {
        let margin = size as f32 * (1.0 - 1.0 / scale);
        Affine {
            m: [[1.0 / scale, 0.0], [0.0, 1.0 / scale]],
            t: [offset[0] * margin, offset[1] * margin],
        }
    }

    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }
}

impl MixAugment {
    /// Draws the two warps of one pair.
    pub fn sample(&self, rng: &mut impl Rng, size: usize) -> (Affine, Affine) {
        let degrees = if self.rotate_degrees > 0.0 {
            rng.random_range(-self.rotate_degrees..=self.rotate_degrees)
        } else {
            0.0
        };
        let flip = self.hflip && rng.random_bool(0.5);
        let first = if degrees == 0.0 && !flip {
            Affine::IDENTITY
        } else {
            Affine::rotate_flip(size, degrees, flip)
        };
        let scale = if self.max_scale > 1.0 {
            rng.random_range(1.0..=self.max_scale)
        } else {
            1.0
        };
        let offset = if self.random_crop {
            [rng.random(), rng.random()]
        } else {
            [0.5, 0.5]
        };
        let second = if scale == 1.0 {
            Affine::IDENTITY
        } else {
            Affine::scale_crop(size, scale, offset)
        };
        (first, second)
    }
}

/// Warps a `[C, S, S]` image: bilinear sampling at `warp(x, y)`, 0 outside.
pub fn warp(image: &[f32], channels: usize, size: usize, warp: &Affine) -> Vec<f32> {
    if warp.is_identity() {
        return image.to_vec();
    }
    let mut out = vec![0.0; image.len()];
    let s = size as isize;
    for y in 0..size {
        for x in 0..size {
            let (xf, yf) = (x as f32, y as f32);
            let sx = warp.m[0][0] * xf + warp.m[0][1] * yf + warp.t[0];
            let sy = warp.m[1][0] * xf + warp.m[1][1] * yf + warp.t[1];
            let (x0, y0) = (sx.floor() as isize, sy.floor() as isize);
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            for c in 0..channels {
                let plane = &image[c * size * size..(c + 1) * size * size];
                let at = |yy: isize, xx: isize| {
                    if (0..s).contains(&yy) && (0..s).contains(&xx) {
                        plane[yy as usize * size + xx as usize]
                    } else {
                        0.0
                    }
                };
                let top = at(y0, x0) * (1.0 - fx) + at(y0, x0 + 1) * fx;
                let bottom = at(y0 + 1, x0) * (1.0 - fx) + at(y0 + 1, x0 + 1) * fx;
                out[(c * size + y) * size + x] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(size: usize) -> Vec<f32> {
        (0..size * size).map(|i| i as f32).collect()
    }

    #[test]
    fn flip_without_rotation_mirrors_rows() {
        let out = warp(&ramp(4), 1, 4, &Affine::rotate_flip(4, 0.0, true));
        assert_eq!(&out[..4], &[3.0, 2.0, 1.0, 0.0]);
        assert_eq!(&out[12..], &[15.0, 14.0, 13.0, 12.0]);
    }

    #[test]
    fn quarter_turn_moves_the_top_row_to_a_column() {
        let out = warp(&ramp(3), 1, 3, &Affine::rotate_flip(3, 90.0, false));
        // The centre stays; a 90° turn maps the grid onto itself exactly.
        assert!((out[4] - 4.0).abs() < 1e-4);
        let mut sorted = out.clone();
        sorted.sort_by(f32::total_cmp);
        for (a, b) in sorted.iter().zip(ramp(3)) {
            assert!((a - b).abs() < 1e-4);
        }
    }

    #[test]
    fn zoom_by_two_at_the_origin_upsamples_the_top_left_quarter() {
        let out = warp(&ramp(4), 1, 4, &Affine::scale_crop(4, 2.0, [0.0, 0.0]));
        assert_eq!(out[0], 0.0);
        assert_eq!(out[2], 1.0); // x = 2 samples source x = 1
        assert_eq!(out[2 * 4 + 2], 5.0); // (2, 2) samples source (1, 1)
    }
}
