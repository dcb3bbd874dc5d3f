//! How many threads a kernel may split its work over: candle's count (the
//! `RAYON_NUM_THREADS` variable, or the cores), unless the calling thread runs under
//! [`with_threads`], which caps it for that thread alone. Data-parallel training runs each
//! shard of a batch on its own thread that way, so the shards' kernels do not each spread
//! over every core while the other shards do the same.

use std::cell::Cell;

thread_local! {
    static CAP: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Threads a kernel called on this thread may use (at least 1).
pub fn threads() -> usize {
    let all = candle_core::utils::get_num_threads().max(1);
    CAP.with(|cap| cap.get().map_or(all, |c| c.clamp(1, all)))
}

/// Runs `f` with the kernels called on this thread limited to `n` threads, and restores
/// the previous limit afterwards (also when `f` panics).
pub fn with_threads<R>(n: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAP.with(|cap| cap.set(self.0));
        }
    }
    let _restore = Restore(CAP.with(|cap| cap.replace(Some(n.max(1)))));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_on_its_thread_only_and_is_restored() {
        let all = threads();
        assert_eq!(with_threads(1, threads), 1);
        assert_eq!(with_threads(usize::MAX, threads), all);
        with_threads(1, || {
            let other = std::thread::spawn(threads).join().unwrap();
            assert_eq!(other, all);
        });
        assert_eq!(threads(), all);
    }
}
