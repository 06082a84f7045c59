//! Each run's own random draws (per-draw seeds under one lock) and dropout; SplitMix64
//! for draws that are not a run's (splits, bootstraps). A run's draws (its initial
//! weights, shuffles, dropout masks, augmentation) come from seeds of its own, so that
//! its numbers never depend on what else trains at the same time (`--jobs`).
//!
//! libtorch keeps one generator per device for the whole process, and tch exposes no
//! other generator, only `manual_seed`. So every draw takes the process-wide lock,
//! reseeds the generator with the draw's own seed and draws at once: a draw is a
//! function of (run seed, epoch, its place in the epoch) alone. The lock is held for the
//! draw only, not for the computation around it.

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard, PoisonError};

static GENERATOR: Mutex<()> = Mutex::new(());

/// The process-wide lock on libtorch's generator, for code that seeds and draws on its
/// own (the integration tests' synthetic data) or draws without caring what (a model
/// built only to load weights into): holding it, no draw of theirs falls between
/// another thread's reseeding and its draw. Not reentrant: never call `draw` under it.
pub fn lock() -> MutexGuard<'static, ()> {
    GENERATOR.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The stream the current thread's draws take their seeds from, while one is set.
    static STREAM: Cell<Option<Stream>> = const { Cell::new(None) };
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    seed: u64,
    draws: u64,
}

/// Runs `draw` on libtorch's generator seeded with `seed`, with no other draw between.
pub fn draw_seeded<T>(seed: u64, draw: impl FnOnce() -> T) -> T {
    let _generator = lock();
    tch::manual_seed(seed as i64);
    draw()
}

/// Runs `work` with the draws made inside it (by `draw`, on this thread) seeded from
/// `seed` in turn: the first with `seed` itself, so that a shuffle drawn first is the one
/// `manual_seed(seed)` gives.
pub fn with_stream<T>(seed: u64, work: impl FnOnce() -> T) -> T {
    struct Restore(Option<Stream>);
    impl Drop for Restore {
        fn drop(&mut self) {
            STREAM.with(|stream| stream.set(self.0));
        }
    }
    let _restore = Restore(STREAM.with(|stream| stream.replace(Some(Stream { seed, draws: 0 }))));
    work()
}

/// Runs `draw` as the next draw of this thread's stream; without a stream (a benchmark,
/// a test of one layer), on libtorch's generator as it stands, still under the lock so
/// that it cannot fall between another thread's reseeding and its draw.
pub fn draw<T>(draw: impl FnOnce() -> T) -> T {
    match STREAM.with(|stream| stream.get()) {
        Some(current) => {
            STREAM.with(|stream| {
                stream.set(Some(Stream {
                    draws: current.draws + 1,
                    ..current
                }))
            });
            draw_seeded(draw_seed(current.seed, current.draws), draw)
        }
        None => {
            let _generator = lock();
            draw()
        }
    }
}

/// The seed of draw `n` of a stream: the stream's own seed first, then well-mixed
/// neighbours of it (splitmix64), so that nearby streams do not share draws.
fn draw_seed(seed: u64, n: u64) -> u64 {
    if n == 0 {
        return seed;
    }
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 1
}

/// Keras' and libtorch's inverted dropout: zeroes a fraction `rate` of the activations
/// while training and scales the rest by 1 / (1 - rate), with the mask drawn from the
/// run's stream.
pub fn dropout(xs: &tch::Tensor, rate: f64, train: bool) -> tch::Tensor {
    if !train || rate == 0.0 {
        return xs.shallow_clone();
    }
    let keep = 1.0 - rate;
    let mut mask = draw(|| xs.empty_like().bernoulli_float_(keep));
    let _ = mask.g_div_scalar_(keep);
    xs * mask
}

/// Sebastiano Vigna's SplitMix64: a tiny seeded generator of well-mixed 64-bit numbers
/// for draws that are not a run's (a folder data set's split, a bootstrap's
/// resamples). It stays apart from libtorch's generator, so those draws never move a
/// run's, and depends on the seed alone, not on a library's version.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`, by Lemire's multiply-shift (its bias, under 2^-50 for
    /// test splits, is far below what a bootstrap can see).
    pub fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn dropout_zeroes_about_its_rate_and_keeps_the_mean() {
        let ones = Tensor::ones([200, 100], (Kind::Float, Device::Cpu));
        let dropped = with_stream(3, || dropout(&ones, 0.25, true));
        let zeros = dropped.eq(0.0).to_kind(Kind::Float).mean(Kind::Float);
        assert!((zeros.double_value(&[]) - 0.25).abs() < 0.02);
        assert!((dropped.mean(Kind::Float).double_value(&[]) - 1.0).abs() < 0.03);
        assert!(dropout(&ones, 0.25, false).equal(&ones));
    }
}
