//! SimMIM's light decoder: a 1x1 projection of the final feature map to `stride² · channels`
//! values per token, rearranged into pixels (pixel shuffle).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// `[B, h, w, C_f]` → `[B, out_channels, h·stride, w·stride]`.
#[derive(Module, Debug)]
pub struct LinearDecoder<B: Backend> {
    /// The 1x1 convolution of SimMIM, as a Linear on NHWC tokens.
    pub proj: Linear<B>,
    stride: usize,
    out_channels: usize,
}

impl<B: Backend> LinearDecoder<B> {
    pub fn new(features: usize, stride: usize, out_channels: usize, device: &B::Device) -> Self {
        Self {
            proj: LinearConfig::new(features, stride * stride * out_channels).init(device),
            stride,
            out_channels,
        }
    }

    pub fn forward(&self, features: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = features.dims();
        let (s, out) = (self.stride, self.out_channels);
        let tokens = self.proj.forward(features.reshape([b * h * w, c])); // [B·h·w, out·s·s]
                                                                          // PyTorch's PixelShuffle order: value (o, i, j) of a token goes to pixel (o, h·s+i, w·s+j).
        tokens
            .reshape([b, h, w, out, s, s])
            .permute([0, 3, 1, 4, 2, 5]) // [B, out, h, s, w, s]
            .reshape([b, out, h * s, w * s])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_shuffle_places_each_value_in_its_pixel() {
        type B = crate::backend::Cpu;
        let device = Default::default();
        let mut decoder = LinearDecoder::<B>::new(1, 2, 2, &device);
        // Identity-like projection: output value k = (k + 1) · input.
        let weight: Vec<f32> = (0..8).map(|k| (k + 1) as f32).collect();
        decoder.proj.weight = burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [1, 8]),
            &device,
        ));
        decoder.proj.bias = None;
        let out = decoder.forward(Tensor::ones([1, 1, 1, 1], &device));
        // channel 0 gets values 1..4 as a 2x2 block, channel 1 gets 5..8.
        assert_eq!(
            out.into_data().to_vec::<f32>().unwrap(),
            vec![1., 2., 3., 4., 5., 6., 7., 8.]
        );
    }
}
