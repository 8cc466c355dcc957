//! Running a model over a whole dataset (no augmentation), batches decoded ahead.

use anyhow::Result;
use burn::prelude::*;

use crate::data::loader::{host_batch, images_tensor, ImageFormat, Prefetcher};
use crate::data::Dataset;
use crate::train::report::progress_bar;

/// Rows of `f(images)` for every image of `dataset`, in order: `[N, D]` flattened, and `D`.
pub fn map_dataset<B: Backend>(
    dataset: &std::sync::Arc<Dataset>,
    format: &ImageFormat,
    batch: usize,
    device: &B::Device,
    what: &str,
    f: impl Fn(Tensor<B, 4>) -> Tensor<B, 2>,
) -> Result<(Vec<f32>, usize)> {
    let n = dataset.len();
    let batches = n.div_ceil(batch);
    let (data, format_) = (dataset.clone(), format.clone());
    let prefetch = Prefetcher::new(0..batches, 2, move |i| {
        let indices: Vec<usize> = (i * batch..((i + 1) * batch).min(n)).collect();
        host_batch(&data, &indices, 0, &format_, None)
    });
    let bar = progress_bar(n, 0);
    bar.set_prefix(what.to_string());
    let (mut rows, mut width) = (Vec::new(), 0);
    for host in prefetch {
        let host = host?;
        let images = images_tensor::<B>(host.images, format, device);
        let out = f(images); // [b, D]
        width = out.dims()[1];
        rows.extend(
            out.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32"),
        );
        bar.inc(host.batch as u64);
    }
    bar.finish_and_clear();
    Ok((rows, width))
}
