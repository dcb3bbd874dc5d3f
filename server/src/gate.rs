//! [`StepGate`]: the CPU slots that decoding steps take turns on.
//!
//! Every running decoding has its own blocking thread, but computes only while it holds one
//! of the gate's slots (one per core). It gives the slot back after every step, and while it
//! hands the step to its client, so a slow reader never holds a core. Waiting threads get the
//! slot in two classes: a decoding that has not produced its first step yet goes before the
//! ones that have (so a new request shows its first token quickly, even under load), and
//! within a class in arrival order (so running decodings advance round-robin). A released
//! slot is handed straight to the next waiter, which alone is woken.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Which queue a waiting decoding joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Before its first step (encoding the source included): served first.
    First,
    /// Any later step.
    Next,
}

/// CPU slots shared by every decoding (and image rendering).
#[derive(Debug)]
pub struct StepGate {
    slots: usize,
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    free: usize,
    first: VecDeque<Arc<Waiter>>,
    next: VecDeque<Arc<Waiter>>,
}

#[derive(Debug, Default)]
struct Waiter {
    granted: Mutex<bool>,
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent whatever a panicking holder was doing: every update is
    // a single push, pop or counter change.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StepGate {
    /// A gate with `slots` slots (at least one).
    pub fn new(slots: usize) -> Arc<Self> {
        let slots = slots.max(1);
        Arc::new(StepGate {
            slots,
            state: Mutex::new(GateState {
                free: slots,
                first: VecDeque::new(),
                next: VecDeque::new(),
            }),
        })
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Threads waiting for a slot right now.
    pub fn waiting(&self) -> usize {
        let st = lock(&self.state);
        st.first.len() + st.next.len()
    }

    /// Blocks until this thread holds a slot.
    pub fn acquire(self: &Arc<Self>, turn: Turn) -> Slot {
        crate::priority::lower_this_thread();
        self.wait(turn);
        Slot {
            gate: self.clone(),
            held: true,
        }
    }

    fn wait(&self, turn: Turn) {
        let waiter = {
            let mut st = lock(&self.state);
            if st.free > 0 && st.first.is_empty() && st.next.is_empty() {
                st.free -= 1;
                return;
            }
            let w = Arc::new(Waiter::default());
            match turn {
                Turn::First => st.first.push_back(w.clone()),
                Turn::Next => st.next.push_back(w.clone()),
            }
            w
        };
        let mut granted = lock(&waiter.granted);
        while !*granted {
            granted = waiter
                .wake
                .wait(granted)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn release(&self) {
        let mut st = lock(&self.state);
        let heir = st.first.pop_front().or_else(|| st.next.pop_front());
        match heir {
            Some(w) => {
                drop(st);
                *lock(&w.granted) = true;
                w.wake.notify_one();
            }
            None => st.free += 1,
        }
    }
}

/// A held slot of a [`StepGate`]; dropping it gives the slot back.
#[derive(Debug)]
pub struct Slot {
    gate: Arc<StepGate>,
    held: bool,
}

impl Slot {
    /// Gives the slot back while `f` runs (e.g. a send that may block on a slow client),
    /// then waits for a turn among the running decodings.
    pub fn release_while<T>(&mut self, f: impl FnOnce() -> T) -> T {
        if self.held {
            self.gate.release();
            self.held = false;
        }
        let out = f();
        self.gate.wait(Turn::Next);
        self.held = true;
        out
    }

    /// Lets waiting decodings go first, if there are any.
    pub fn yield_now(&mut self) {
        if self.gate.waiting() > 0 {
            self.release_while(|| ());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.held {
            self.gate.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Starts a thread that waits for a slot with `turn` and reports `name` once it has it,
    /// then holds the slot until told to let go.
    fn contender(
        gate: &Arc<StepGate>,
        turn: Turn,
        name: &'static str,
        got: mpsc::Sender<&'static str>,
    ) -> mpsc::Sender<()> {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let gate = gate.clone();
        std::thread::spawn(move || {
            let _slot = gate.acquire(turn);
            got.send(name).unwrap();
            let _ = done_rx.recv();
        });
        done_tx
    }

    fn wait_for_waiters(gate: &StepGate, n: usize) {
        for _ in 0..1000 {
            if gate.waiting() == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("{} waiters, expected {n}", gate.waiting());
    }

    #[test]
    fn first_steps_go_before_later_steps_and_each_class_in_arrival_order() {
        let gate = StepGate::new(1);
        let held = gate.acquire(Turn::First);
        let (tx, rx) = mpsc::channel();
        let mut release = Vec::new();
        for (turn, name) in [
            (Turn::Next, "next-1"),
            (Turn::First, "first-1"),
            (Turn::Next, "next-2"),
            (Turn::First, "first-2"),
        ] {
            release.push(contender(&gate, turn, name, tx.clone()));
            wait_for_waiters(&gate, release.len());
        }
        drop(held);
        let mut order = Vec::new();
        for _ in 0..4 {
            let name = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            order.push(name);
            let i = ["next-1", "first-1", "next-2", "first-2"]
                .iter()
                .position(|n| *n == name)
                .unwrap();
            release[i].send(()).unwrap();
        }
        assert_eq!(order, ["first-1", "first-2", "next-1", "next-2"]);
        assert_eq!(gate.waiting(), 0);
    }

    #[test]
    fn slots_are_counted_and_given_back() {
        let gate = StepGate::new(2);
        let a = gate.acquire(Turn::First);
        let mut b = gate.acquire(Turn::Next);
        // Nobody waits: yielding keeps the slot.
        b.yield_now();
        let (tx, rx) = mpsc::channel();
        let release = contender(&gate, Turn::First, "third", tx);
        wait_for_waiters(&gate, 1);
        assert!(rx.try_recv().is_err(), "a third slot was handed out");
        // Releasing around a send lets the waiter in, then takes a turn again.
        let (back_tx, back_rx) = mpsc::channel();
        let gate2 = gate.clone();
        std::thread::spawn(move || {
            let v = b.release_while(|| 7);
            back_tx.send(v).unwrap();
            drop(b);
            drop(gate2);
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "third");
        drop(a); // frees the slot `b` waits for
        assert_eq!(back_rx.recv_timeout(Duration::from_secs(5)).unwrap(), 7);
        release.send(()).unwrap();
        for _ in 0..1000 {
            if lock(&gate.state).free == 2 {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("slots were not all given back");
    }
}
