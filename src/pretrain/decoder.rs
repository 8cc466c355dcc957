//! Pretraining decoders. SimMIM's light head: a 1x1 projection of the final feature map to
//! `stride² · channels` values per token, rearranged into pixels (pixel shuffle). Optionally an
//! MAE-style transformer runs over the final tokens first (`decoder: {kind: transformer}`).

use burn::module::{Initializer, Param};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `objective.decoder:` in a pretraining stage.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DecoderConfig {
    /// SimMIM's linear head alone.
    #[default]
    Linear,
    /// Transformer blocks over the final feature map's tokens, then the linear head
    /// (the paper: width 512).
    Transformer {
        /// Width of the blocks' tokens (the paper: 512). Required.
        width: usize,
        /// Transformer blocks. Required.
        depth: usize,
        /// Attention heads; divides `width`. Required.
        heads: usize,
    },
}

/// Pre-norm transformer blocks over the encoder's final tokens, with learned positions:
/// `[B, h, w, C_f]` → `[B, h, w, width]`.
#[derive(Module, Debug)]
pub struct TransformerBody<B: Backend> {
    pub embed: Linear<B>,
    /// `[1, h·w, width]`
    pub position: Param<Tensor<B, 3>>,
    pub blocks: TransformerEncoder<B>,
    pub norm: LayerNorm<B>,
}

impl<B: Backend> TransformerBody<B> {
    pub fn new(
        features: usize,
        tokens: usize,
        width: usize,
        depth: usize,
        heads: usize,
        device: &B::Device,
    ) -> Self {
        Self {
            embed: LinearConfig::new(features, width).init(device),
            position: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([1, tokens, width], device),
            blocks: TransformerEncoderConfig::new(width, 4 * width, heads, depth)
                .with_dropout(0.0)
                .with_norm_first(true)
                .init(device),
            norm: LayerNormConfig::new(width).init(device),
        }
    }

    pub fn forward(&self, features: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = features.dims();
        let width = self.position.dims()[2];
        let x = self
            .embed
            .forward(features.reshape([b * h * w, c]))
            .reshape([b, h * w, width]);
        let x = self
            .blocks
            .forward(TransformerEncoderInput::new(x + self.position.val()));
        self.norm.forward(x).reshape([b, h, w, width])
    }
}

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
    fn transformer_body_keeps_the_token_grid() {
        type B = crate::backend::Cpu;
        let device = Default::default();
        let body = TransformerBody::<B>::new(24, 9, 16, 2, 4, &device);
        let out = body.forward(Tensor::ones([2, 3, 3, 24], &device));
        assert_eq!(out.dims(), [2, 3, 3, 16]);
        let config: DecoderConfig =
            crate::yaml::from_str("kind: transformer\nwidth: 512\ndepth: 2\nheads: 16\n").unwrap();
        assert_eq!(
            config,
            DecoderConfig::Transformer {
                width: 512,
                depth: 2,
                heads: 16
            }
        );
        assert!(crate::yaml::from_str::<DecoderConfig>("kind: transformer\nwidth: 8\n").is_err());
    }

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
