//! malloc keeping libtorch's freed CPU memory for the next batch. By default glibc's
//! malloc hands any block above its mmap threshold (32 MiB at most) back to the kernel
//! when it is freed and maps fresh pages for the next, each zeroed on its first touch.
//! A training step allocates and frees every activation and gradient; at the fast
//! recipe's 64x64 stage one activation is 128 x 16 x 64 x 64 floats (33.5 MB), and an
//! evaluation batch of 1024 at 28x28 is 51 MB, so every batch paid a page fault per
//! 4 KiB: 418 of the 64x64 stage's 1258 CPU seconds, and 7 of a 28x28 evaluation's 10
//! wall seconds, were spent in the kernel. Keeping freed memory in the heap for the next
//! batch ends that, at the price of a peak that stays resident, which a training
//! process reaches again at its next batch anyway. PyTorch's own advice for CPUs is the
//! same cure by another means (jemalloc or tcmalloc through LD_PRELOAD).

/// Makes malloc keep freed memory for reuse instead of returning it to the kernel.
/// Once per process, before libtorch allocates; a `MALLOC_MMAP_MAX_` or
/// `MALLOC_TRIM_THRESHOLD_` the user set in the environment wins over it.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, parameter, value) in [
        // No block of its own mapping, however large: all come from the heap...
        ("MALLOC_MMAP_MAX_", libc::M_MMAP_MAX, 0),
        // ...and the heap's freed top stays mapped for the next batch.
        (
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            libc::c_int::MAX,
        ),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only sets malloc's tuning parameters; any value is valid.
            unsafe { libc::mallopt(parameter, value) };
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn a_block_above_the_mmap_threshold_comes_from_the_heap() {
        keep_freed_memory();
        let mapped_before = unsafe { libc::mallinfo2() }.hblkhd;
        // Above the largest threshold glibc adapts to (32 MiB), and below the 64 MiB
        // heap of a thread's arena, where a test runs: a larger block there is mapped
        // on its own whatever the setting (one job's training loop allocates on the
        // main thread, whose heap has no such bound).
        let block = vec![1u8; 40 << 20];
        let mapped_during = unsafe { libc::mallinfo2() }.hblkhd;
        assert_eq!(std::hint::black_box(&block)[block.len() - 1], 1);
        // Below the block's size, whatever other tests map or unmap meanwhile.
        assert!(
            mapped_during < mapped_before + (40 << 20),
            "the 40 MiB block was mmapped"
        );
    }
}
