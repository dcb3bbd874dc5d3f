//! Allocator settings for training.
//!
//! A training step allocates and frees hundreds of activation and gradient buffers of up to
//! tens of megabytes. glibc hands buffers above its mmap threshold straight back to the
//! kernel, so the next step takes the page faults and page zeroing again (about 8% of a
//! profiled GRU step). Raising the threshold and the trim threshold keeps that memory in
//! the heap for reuse: 10-15% more target tokens per second in `bench/perf.py`'s training
//! rows, for a resident set that stays at the step's peak.

/// Keeps freed memory of up to 32 MiB a buffer in the process for reuse (glibc only; a
/// no-op elsewhere).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's tuning parameters; it takes plain integers
        // and is safe to call at any time, from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}
