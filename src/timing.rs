//! Wall-clock timing for the benchmarks.

use std::time::Instant;

/// Median wall time of `iters` runs of `step`, after `warmup` untimed ones.
pub fn median_seconds(warmup: usize, iters: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        step();
    }
    let mut times: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let start = Instant::now();
            step();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
