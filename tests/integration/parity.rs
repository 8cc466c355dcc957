//! The burn Swin against timm 1.0.31's outputs for the same weights and input
//! (`tests/fixtures/timm-swin-tiny`).

use burn::prelude::*;
use eesmm::model::load_model;
use eesmm::model::swin::{relative_position_index, shift_attention_mask};
use eesmm::model::weights::read_state_dict;

use super::common::*;

/// timm's buffers, which it does not save, rebuilt by us and compared exactly.
#[test]
fn relative_position_index_and_shift_masks_equal_timm() {
    let index = eesmm::npy::read(&fixture("relative_position_index_w4.npy")).unwrap();
    let ours: Vec<f32> = relative_position_index(4)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    assert_eq!(index.shape, vec![16, 16]);
    assert_eq!(index.data, ours);
    for (layer, resolution) in [(0, 16), (1, 8)] {
        let mask =
            eesmm::npy::read(&fixture(&format!("attn_mask_layers.{layer}.blocks.1.npy"))).unwrap();
        assert_eq!(
            mask.data,
            shift_attention_mask(resolution, 4, 2),
            "layer {layer}"
        );
    }
}

#[test]
fn every_stage_matches_timm() {
    let device = Default::default();
    let config = fixture_model();
    let (model, report) =
        load_model::<B>(config, &fixture("backbone.safetensors"), false, &device).unwrap();
    assert_eq!(report.applied, 90, "every timm tensor is applied");
    let images = read_tensor::<4>(&fixture("input.npy"));

    let embedded = model.embed(images.clone(), None);
    let err = max_abs_diff(
        embedded.clone(),
        read_tensor(&fixture("expected_patch_embed.npy")),
    );
    assert!(err < 1e-5, "patch_embed differs by {err}");
    let mut x = embedded;
    for (i, stage) in model.layers.iter().enumerate() {
        x = stage.forward(x);
        let expected = read_tensor::<4>(&fixture(&format!("expected_stage{i}.npy")));
        let scale = expected.clone().abs().max().into_scalar();
        let err = max_abs_diff(x.clone(), expected);
        assert!(
            err < 1e-4 * scale.max(1.0),
            "stage {i} differs by {err} (max |ref| {scale})"
        );
    }
    let features = model.forward_features(images.clone(), None);
    let err = max_abs_diff(features, read_tensor(&fixture("expected_features.npy")));
    assert!(err < 1e-4, "features differ by {err}");
    let err = max_abs_diff(
        model.forward(images),
        read_tensor(&fixture("expected_pooled.npy")),
    );
    assert!(err < 1e-4, "pooled features differ by {err}");
}

#[test]
fn logits_match_timm_from_safetensors() {
    let device = Default::default();
    let images = read_tensor::<4>(&fixture("input.npy"));
    let (model, report) = load_model::<B>(
        fixture_model(),
        &fixture("cls10.safetensors"),
        true,
        &device,
    )
    .unwrap();
    assert!(report.has_head());
    let pooled = model.forward(images);
    let err = max_abs_diff(pooled.clone(), read_tensor(&fixture("expected_pooled.npy")));
    assert!(err < 1e-4, "pooled differs by {err}");
    let err = max_abs_diff(
        model.forward_head(pooled),
        read_tensor(&fixture("expected_logits.npy")),
    );
    assert!(err < 1e-4, "logits differ by {err}");
}

/// `old_layout_0.6.13.pt` is `{"state_dict": <Microsoft layout>, "x": input, "y": timm 0.6.13's
/// logits}` (its weights are not those of the safetensors files).
#[test]
fn old_layout_pt_matches_the_logits_saved_with_it() {
    let device = Default::default();
    let path = fixture("old_layout_0.6.13.pt");
    let saved = read_state_dict(&path).unwrap();
    let tensor = |name: &str| Tensor::<B, 4>::from_data(saved[name].clone(), &device);
    let (x, y) = (
        tensor("x"),
        Tensor::<B, 2>::from_data(saved["y"].clone(), &device),
    );
    let (model, report) = load_model::<B>(fixture_model(), &path, true, &device).unwrap();
    assert_eq!(report.applied, 92, "backbone and head");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("converted the old layout")),
        "{:?}",
        report.notes
    );
    let err = max_abs_diff(model.logits(x), y);
    assert!(err < 1e-4, "logits differ by {err}");
}

/// The window-4 backbone loaded into a 56 px, window-7 model by timm's own
/// `checkpoint_filter_fn` (tables resized by timm's geometric interpolation) gives these
/// pooled features (tests/data, made by scripts/fixtures/make_relpos_fixture.py).
#[test]
fn window_change_matches_timm_checkpoint_filter() {
    let device = Default::default();
    let mut config = fixture_model();
    config.img_size = 56;
    config.window_size = 7;
    let (model, report) =
        load_model::<B>(config, &fixture("backbone.safetensors"), false, &device).unwrap();
    let resized = report
        .notes
        .iter()
        .filter(|n| n.contains("resized the bias table from window 4 to 7"))
        .count();
    assert_eq!(resized, 6, "{:?}", report.notes);
    let pooled = model.forward(read_tensor(&test_data("swin_w7_img56_input.npy")));
    let err = max_abs_diff(pooled, read_tensor(&test_data("swin_tiny_w7_pooled.npy")));
    assert!(err < 1e-4, "pooled differs by {err}");
}

/// Masked patches take the mask token's place before the first stage, as in SimMIM.
#[test]
fn mask_token_replaces_masked_patch_embeddings() {
    let device = Default::default();
    let config = preset("swin-micro-32.yaml");
    let model = config.init::<B>(&device).with_mask_token(&device);
    let images = read_tensor::<4>(&fixture("input.npy"));
    let mut mask = vec![0.0f32; 2 * 16 * 16];
    mask[5] = 1.0; // image 0, row 0, column 5
    let mask = Tensor::<B, 3>::from_data(TensorData::new(mask, [2, 16, 16]), &device);
    let plain = model.embed(images.clone(), None);
    let masked = model.embed(images, Some(mask));
    let token = model.mask_token.as_ref().unwrap().val().reshape([48]);
    let at = |x: Tensor<B, 4>, b: usize, r: usize, c: usize| {
        x.slice([b..b + 1, r..r + 1, c..c + 1, 0..48]).reshape([48])
    };
    assert_eq!(max_abs_diff(at(masked.clone(), 0, 0, 5), token), 0.0);
    assert_eq!(
        max_abs_diff(at(masked.clone(), 0, 0, 4), at(plain.clone(), 0, 0, 4)),
        0.0
    );
    assert_eq!(max_abs_diff(at(masked, 1, 0, 5), at(plain, 1, 0, 5)), 0.0);
}
