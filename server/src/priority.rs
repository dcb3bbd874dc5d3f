//! Decoding yields the CPU to interactive work: each thread that takes a decoding slot
//! ([`crate::gate::StepGate::acquire`]) lowers its own scheduling priority once, to the
//! niceness `attnscope serve --decode-nice` sets (10 by default; 0 leaves it alone).
//!
//! On a machine that runs the server and the browser showing its page (the usual way to use
//! attnscope), decoding a long input keeps every core busy, and the browser's frames waited
//! for it. With decoding below the browser, the page draws when it needs to and decoding
//! takes the rest; on a server alone nothing changes. Threads the decoding spawns (the
//! product's helpers) inherit the niceness. Linux only (elsewhere a no-op); a priority once
//! lowered is not raised again (an unprivileged process may not).

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, Ordering};

/// The niceness `attnscope serve` gives decoding unless told otherwise.
pub const DEFAULT_DECODE_NICE: i32 = 10;

static NICE: AtomicI32 = AtomicI32::new(0);

thread_local! {
    static APPLIED: Cell<i32> = const { Cell::new(0) };
}

/// The niceness decoding threads take from now on (0 to 19; 0: unchanged).
pub fn set_decode_nice(nice: i32) {
    NICE.store(nice.clamp(0, 19), Ordering::Relaxed);
}

/// The niceness decoding threads take.
pub fn decode_nice() -> i32 {
    NICE.load(Ordering::Relaxed)
}

/// Lowers the calling thread's priority to the decoding niceness, once per thread.
pub fn lower_this_thread() {
    let want = decode_nice();
    if want <= 0 || APPLIED.with(Cell::get) >= want {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` and `setpriority` take no pointers; a failure leaves the
        // priority as it was.
        let ok = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, want) == 0
        };
        if !ok {
            tracing::debug!(nice = want, "could not lower a decoding thread's priority");
        }
    }
    APPLIED.with(|a| a.set(want));
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_decoding_thread_lowers_its_own_priority_only() {
        set_decode_nice(25);
        assert_eq!(decode_nice(), 19);
        set_decode_nice(7);
        // SAFETY: `getpriority` and `gettid` take no pointers.
        let own = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = own();
        let (inside, spawned) = std::thread::spawn(move || {
            lower_this_thread();
            let inside = own();
            (inside, std::thread::spawn(own).join().unwrap())
        })
        .join()
        .unwrap();
        // The calling thread is untouched; the decoding thread and what it spawns are at 7
        // (or stay where they were, if they already were lower).
        assert_eq!(own(), before);
        assert_eq!(inside, before.max(7));
        assert_eq!(spawned, inside);
        set_decode_nice(0);
    }
}
