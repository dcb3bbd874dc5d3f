//! Playback of a decoding: which step the page shows (every step, live, by default), whether
//! it is playing and how fast. One [`Playback`] is shared by both runs through context, so a
//! comparison steps in lockstep. The step arithmetic is pure and unit-tested natively.

use leptos::prelude::*;

/// Steps per second a play may run at; the page offers these.
pub const SPEEDS: [f64; 5] = [0.5, 1.0, 2.0, 4.0, 8.0];
/// The speed a page starts with.
pub const DEFAULT_SPEED: f64 = 2.0;

/// The shown step and the player (all signals, so it is `Copy`).
#[derive(Clone, Copy)]
pub struct Playback {
    /// The last step shown (0-based); `None` shows every step, as they stream.
    pub step: RwSignal<Option<usize>>,
    /// Whether steps advance on their own.
    pub playing: RwSignal<bool>,
    /// Steps per second while playing.
    pub speed: RwSignal<f64>,
}

impl Playback {
    /// A player showing `step` (`None`: every step), paused.
    pub fn new(step: Option<usize>) -> Self {
        Self {
            step: RwSignal::new(step),
            playing: RwSignal::new(false),
            speed: RwSignal::new(DEFAULT_SPEED),
        }
    }

    /// The player of the page (provided by the translate page).
    pub fn from_context() -> Self {
        use_context::<Playback>().unwrap_or_else(|| Self::new(None))
    }

    /// Applies `action` to a decoding of `total` steps.
    pub fn apply(self, action: Action, total: usize) {
        let now = self.step.get_untracked();
        if action == Action::Toggle && self.playing.get_untracked() {
            self.playing.set(false);
            return;
        }
        let next = action.step(now, total);
        if next != now {
            self.step.set(next);
        }
        let playing = match action {
            Action::Toggle => total > 0,
            Action::Tick => next.is_some() && next != now,
            _ => false,
        };
        if self.playing.get_untracked() != playing {
            self.playing.set(playing);
        }
    }
}

/// What a control or a key asks of the player.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Show the first step only.
    First,
    /// One step back.
    Back,
    /// One step forward (past the last: every step).
    Forward,
    /// Every step (live).
    All,
    /// Show step `n` (clamped to the decoding).
    Goto(usize),
    /// Play from the current step (from the first when every step is shown or the last is
    /// reached), or pause.
    Toggle,
    /// The timer's beat while playing: one step forward, stopping at the last.
    Tick,
}

impl Action {
    /// The step shown after this action, from `now`, in a decoding of `total` steps.
    pub fn step(self, now: Option<usize>, total: usize) -> Option<usize> {
        if total == 0 {
            return None;
        }
        let last = total - 1;
        match self {
            Action::First => Some(0),
            Action::Back => Some(now.unwrap_or(last).saturating_sub(1)),
            Action::Forward => match now {
                Some(k) if k < last => Some(k + 1),
                _ => None,
            },
            Action::All => None,
            Action::Goto(n) => Some(n.min(last)),
            Action::Toggle => match now {
                Some(k) if k < last => Some(k),
                _ => Some(0),
            },
            Action::Tick => now.map(|k| (k + 1).min(last)),
        }
    }

    /// The action of a key press (`KeyboardEvent.key`), if it is a playback shortcut.
    pub fn of_key(key: &str) -> Option<Self> {
        Some(match key {
            "ArrowLeft" => Action::Back,
            "ArrowRight" => Action::Forward,
            " " | "k" => Action::Toggle,
            "Home" => Action::First,
            "End" => Action::All,
            _ => return None,
        })
    }
}

/// How many rows a decoding of `total` rows shows at `step`.
pub fn shown_len(step: Option<usize>, total: usize) -> usize {
    step.map_or(total, |k| (k + 1).min(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stepping_stays_inside_the_decoding() {
        let n = 4;
        assert_eq!(Action::First.step(None, n), Some(0));
        assert_eq!(Action::Back.step(None, n), Some(2));
        assert_eq!(Action::Back.step(Some(0), n), Some(0));
        assert_eq!(Action::Forward.step(Some(1), n), Some(2));
        // Past the last step: every step again, live.
        assert_eq!(Action::Forward.step(Some(3), n), None);
        assert_eq!(Action::Forward.step(None, n), None);
        assert_eq!(Action::Goto(9).step(None, n), Some(3));
        assert_eq!(Action::All.step(Some(1), n), None);
        // Playing starts over from a finished or whole view, else goes on from the step.
        assert_eq!(Action::Toggle.step(None, n), Some(0));
        assert_eq!(Action::Toggle.step(Some(3), n), Some(0));
        assert_eq!(Action::Toggle.step(Some(1), n), Some(1));
        assert_eq!(Action::Tick.step(Some(1), n), Some(2));
        assert_eq!(Action::Tick.step(Some(3), n), Some(3));
        assert_eq!(Action::First.step(None, 0), None);
    }

    #[test]
    fn keys_and_shown_rows() {
        assert_eq!(Action::of_key("ArrowLeft"), Some(Action::Back));
        assert_eq!(Action::of_key(" "), Some(Action::Toggle));
        assert_eq!(Action::of_key("x"), None);
        assert_eq!(shown_len(None, 5), 5);
        assert_eq!(shown_len(Some(1), 5), 2);
        assert_eq!(shown_len(Some(9), 5), 5);
    }
}
