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
    // No block of its own mapping, however large: all come from the heap, and the
    // heap's freed top stays mapped for the next batch.
    set_malloc(0, libc::c_int::MAX);
}

/// Puts back glibc's own limits (a block of 128 KiB or more mapped on its own, a freed
/// top of as much returned), for a process whose data is larger than its memory budget
/// (`--data-memory`): there a small footprint is the point, and a heap that keeps every
/// freed buffer of the set's copy to disk grew the peak by 170 MB on 400,000 images.
pub fn return_freed_memory() {
    set_malloc(65_536, 128 * 1024);
}

/// Sets malloc's most mapped blocks and its trim threshold, each unless the user set
/// it in the environment.
fn set_malloc(mmap_max: i32, trim_threshold: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, parameter, value) in [
        ("MALLOC_MMAP_MAX_", libc::M_MMAP_MAX, mmap_max),
        (
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            trim_threshold,
        ),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only sets malloc's tuning parameters; any value is valid.
            unsafe { libc::mallopt(parameter, value) };
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (mmap_max, trim_threshold);
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn a_large_block_comes_from_the_heap_unless_memory_is_returned() {
        keep_freed_memory();
        // mallinfo, not mallinfo2 (glibc 2.33 on): its int fields hold these sizes, and
        // the test binary still links on an older glibc.
        let mapped = || unsafe { libc::mallinfo() }.hblkhd as i64;
        let mapped_before = mapped();
        // Above the largest threshold glibc adapts to (32 MiB), and below the 64 MiB
        // heap of a thread's arena, where a test runs: a larger block there is mapped
        // on its own whatever the setting (one job's training loop allocates on the
        // main thread, whose heap has no such bound).
        let block = vec![1u8; 40 << 20];
        let mapped_during = mapped();
        assert_eq!(std::hint::black_box(&block)[block.len() - 1], 1);
        // Below the block's size, whatever other tests map or unmap meanwhile.
        assert!(
            mapped_during < mapped_before + (40 << 20),
            "the 40 MiB block was mmapped"
        );
        drop(block);

        // Larger than the freed 40 MiB, which malloc would reuse whatever the setting.
        return_freed_memory();
        let mapped_before = mapped();
        let block = vec![1u8; 48 << 20];
        let mapped_during = mapped();
        assert_eq!(std::hint::black_box(&block)[block.len() - 1], 1);
        assert!(
            mapped_during >= mapped_before + (48 << 20),
            "the 48 MiB block came from the heap under glibc's own limits"
        );
        keep_freed_memory();
    }
}
