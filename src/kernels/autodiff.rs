//! `Autodiff<B>` for any `B: SwinOps`: each fused operation is one tracked step whose backward
//! calls `B`'s `*_backward`. The state kept for the backward is what those need: the attention's
//! input and probabilities, LayerNorm's input and row statistics, GELU's input.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorMetadata;

use super::SwinOps;

/// The gradient of a window partition is the merge of the gradient's windows, and back.
#[derive(Debug)]
struct WindowPartitionBackward;

impl<B: SwinOps> Backward<B, 1> for WindowPartitionBackward {
    /// window, shift, height, width.
    type State = [usize; 4];

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node] = ops.parents;
        let d_windows = grads.consume::<B>(&ops.node);
        let [window, shift, height, width] = ops.state;
        if let Some(node) = x_node {
            let d_x = B::fused_window_merge(d_windows, window, shift, height, width);
            grads.register::<B>(node.id, d_x);
        }
    }
}

#[derive(Debug)]
struct WindowMergeBackward;

impl<B: SwinOps> Backward<B, 1> for WindowMergeBackward {
    /// window, shift.
    type State = [usize; 2];

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [windows_node] = ops.parents;
        let d_x = grads.consume::<B>(&ops.node);
        let [window, shift] = ops.state;
        if let Some(node) = windows_node {
            grads.register::<B>(node.id, B::fused_window_partition(d_x, window, shift));
        }
    }
}

#[derive(Debug)]
struct LinearBackward;

impl<B: SwinOps> Backward<B, 3> for LinearBackward {
    /// x, weight.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, weight_node, bias_node] = ops.parents;
        let d_y = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        let (d_x, d_weight, d_bias) = B::fused_linear_backward(x, weight, d_y);
        for (node, grad) in [(x_node, d_x), (weight_node, d_weight), (bias_node, d_bias)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

#[derive(Debug)]
struct WindowAttentionBackward;

impl<B: SwinOps> Backward<B, 2> for WindowAttentionBackward {
    /// qkv, probs, heads.
    type State = (FloatTensor<B>, FloatTensor<B>, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [qkv_node, bias_node] = ops.parents;
        let d_out = grads.consume::<B>(&ops.node);
        let (qkv, probs, heads) = ops.state;
        let (d_qkv, d_bias) = B::fused_window_attention_backward(qkv, probs, d_out, heads);
        if let Some(node) = qkv_node {
            grads.register::<B>(node.id, d_qkv);
        }
        if let Some(node) = bias_node {
            grads.register::<B>(node.id, d_bias);
        }
    }
}

#[derive(Debug)]
struct LayerNormBackward;

impl<B: SwinOps> Backward<B, 3> for LayerNormBackward {
    /// x, gamma, stats.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let d_y = grads.consume::<B>(&ops.node);
        let (x, gamma, stats) = ops.state;
        let (d_x, d_gamma, d_beta) = B::fused_layer_norm_backward(x, gamma, stats, d_y);
        for (node, grad) in [(x_node, d_x), (gamma_node, d_gamma), (beta_node, d_beta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

#[derive(Debug)]
struct GeluBackward;

impl<B: SwinOps> Backward<B, 1> for GeluBackward {
    /// x.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node] = ops.parents;
        let d_y = grads.consume::<B>(&ops.node);
        if let Some(node) = x_node {
            grads.register::<B>(node.id, B::fused_gelu_backward(ops.state, d_y));
        }
    }
}

impl<B: SwinOps, C: CheckpointStrategy> SwinOps for Autodiff<B, C> {
    fn fused_window_partition(
        x: FloatTensor<Self>,
        window: usize,
        shift: usize,
    ) -> FloatTensor<Self> {
        let shape = x.primitive.shape();
        let state = [window, shift, shape[1], shape[2]];
        match WindowPartitionBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish(state, B::fused_window_partition(x.primitive, window, shift))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_window_partition(x.primitive, window, shift))
            }
        }
    }

    fn fused_window_merge(
        windows: FloatTensor<Self>,
        window: usize,
        shift: usize,
        height: usize,
        width: usize,
    ) -> FloatTensor<Self> {
        let merge = |w| B::fused_window_merge(w, window, shift, height, width);
        match WindowMergeBackward
            .prepare::<C>([windows.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish([window, shift], merge(windows.primitive)),
            OpsKind::UnTracked(prep) => prep.finish(merge(windows.primitive)),
        }
    }

    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match LinearBackward
            .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_linear(
                    x.primitive.clone(),
                    weight.primitive.clone(),
                    bias.primitive,
                );
                prep.finish((x.primitive, weight.primitive), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_linear(
                x.primitive,
                weight.primitive,
                bias.primitive,
            )),
        }
    }

    fn fused_window_attention(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: Option<FloatTensor<Self>>,
        heads: usize,
    ) -> FloatTensor<Self> {
        let mask = mask.map(|m| m.primitive); // a constant: no gradient
        match WindowAttentionBackward
            .prepare::<C>([qkv.node.clone(), bias.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, probs) = B::fused_window_attention_saving_probs(
                    qkv.primitive.clone(),
                    bias.primitive,
                    mask,
                    heads,
                );
                prep.finish((qkv.primitive, probs, heads), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_window_attention(
                qkv.primitive,
                bias.primitive,
                mask,
                heads,
            )),
        }
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        match LayerNormBackward
            .prepare::<C>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, stats) = B::fused_layer_norm_saving_stats(
                    x.primitive.clone(),
                    gamma.primitive.clone(),
                    beta.primitive,
                    eps,
                );
                prep.finish((x.primitive, gamma.primitive, stats), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(
                x.primitive,
                gamma.primitive,
                beta.primitive,
                eps,
            )),
        }
    }

    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_gelu(x.primitive.clone());
                prep.finish(x.primitive, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_gelu(x.primitive)),
        }
    }
}
