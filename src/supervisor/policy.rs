//! The supervision rules as pure functions: exit classification, crash backoff, and the
//! sliding-window clean-restart budget.

use super::Millis;
use crate::exit::Exit;
use std::collections::VecDeque;

/// Why a worker's main process ended, as reported in `worker_exited.likely_cause`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    CleanExit,
    Crash,
    Watchdog,
    Shutdown,
    SpawnFailed,
    /// Stopped after failed health checks, or not ready in time: counted as a crash.
    Unhealthy,
    /// `fleet-init ctl stop` (or `restart`): never a crash, never budgeted as one.
    Stopped,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::CleanExit => "clean_exit",
            Cause::Crash => "crash",
            Cause::Watchdog => "watchdog",
            Cause::Shutdown => "shutdown",
            Cause::SpawnFailed => "spawn_failed",
            Cause::Unhealthy => "unhealthy",
            Cause::Stopped => "stopped",
        }
    }

    /// Crashes and spawn failures touch the crash count; nothing else does.
    pub fn is_crash(self) -> bool {
        matches!(self, Cause::Crash | Cause::SpawnFailed | Cause::Unhealthy)
    }

    /// Clean-class exits are counted in the clean-restart budget.
    pub fn is_clean_class(self) -> bool {
        matches!(self, Cause::CleanExit | Cause::Watchdog)
    }
}

/// Why fleet-init itself asked a worker to stop (so its death is not a crash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Watchdog,
    Shutdown,
    /// Its health checks failed, or it was not ready in time.
    Unhealthy,
    /// Asked for on the control socket (`ctl stop`, `ctl restart`).
    Manual,
}

/// Exit 0 is clean; a death fleet-init caused is the reason it caused it; a death by a signal
/// fleet-init sent the run (`sent_signals`, from `signal_bit`: a forwarded `docker kill -s HUP`,
/// a `ctl signal`) is no crash either (SPEC: a crash is a death by a signal fleet-init did not
/// send), and counts as clean (budgeted, restarted at once); anything else crashed.
pub fn classify(exit: Exit, stop: Option<StopReason>, sent_signals: u64) -> Cause {
    match (stop, exit) {
        (Some(StopReason::Shutdown), _) => Cause::Shutdown,
        (Some(StopReason::Watchdog), _) => Cause::Watchdog,
        (Some(StopReason::Unhealthy), _) => Cause::Unhealthy,
        (Some(StopReason::Manual), _) => Cause::Stopped,
        (None, exit) if exit.is_success() => Cause::CleanExit,
        (None, Exit::Signal(signal)) if sent_signals & signal_bit(signal) != 0 => Cause::CleanExit,
        (None, _) => Cause::Crash,
    }
}

/// Bit N-1 for signal N (0 for a number out of 1..=64).
pub fn signal_bit(signal: i32) -> u64 {
    u32::try_from(signal.saturating_sub(1))
        .ok()
        .and_then(|shift| 1u64.checked_shl(shift))
        .unwrap_or(0)
}

/// `min(initial * 2^(n-1), max)` for the n-th consecutive step (n >= 1); saturating.
pub fn backoff_ms(initial_ms: Millis, max_ms: Millis, step: u32) -> Millis {
    let doublings = step.saturating_sub(1).min(63);
    let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
    initial_ms.saturating_mul(factor).min(max_ms)
}

/// How far past its budget the clean-restart window counts: the backoff's doublings stop at 63.
const MAX_OVER_BUDGET: usize = 64;

/// What the budget says about one clean-class restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetVerdict {
    /// Clean restarts inside the window, this one included.
    pub count: usize,
    /// How long this restart waits: 0 within the budget.
    pub delay_ms: Millis,
    /// True for the restart that first exceeds the budget in this stretch: warn once.
    pub warn: bool,
}

/// Clean-class restarts in a sliding window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanBudget {
    restarts_at: VecDeque<Millis>,
    is_over: bool,
}

impl CleanBudget {
    /// Records a clean-class restart at `now`. Within `budget` restarts per `window_ms` it is
    /// immediate; past it, restarts wait an exponential backoff and the first one warns.
    /// The warning re-arms once the window has slid back under the budget.
    pub fn record(
        &mut self,
        now: Millis,
        budget: u32,
        window_ms: Millis,
        backoff_initial_ms: Millis,
        backoff_max_ms: Millis,
    ) -> BudgetVerdict {
        while let Some(&oldest) = self.restarts_at.front() {
            if now.saturating_sub(oldest) >= window_ms {
                self.restarts_at.pop_front();
            } else {
                break;
            }
        }
        let budget = usize::try_from(budget).unwrap_or(usize::MAX);
        if self.restarts_at.len() < budget {
            self.is_over = false;
        }
        self.restarts_at.push_back(now);
        // Only the newest matter: the restarts inside the window are always the newest, and
        // past the budget by 64 the backoff is at its cap. Kept longer, a day's window of
        // instant restarts held one timestamp each (8 bytes a restart, ~36 MiB an hour).
        while self.restarts_at.len() > budget.saturating_add(MAX_OVER_BUDGET) {
            self.restarts_at.pop_front();
        }
        let count = self.restarts_at.len();
        if count <= budget {
            return BudgetVerdict {
                count,
                delay_ms: 0,
                warn: false,
            };
        }
        let over = u32::try_from(count - budget).unwrap_or(u32::MAX);
        let warn = !self.is_over;
        self.is_over = true;
        BudgetVerdict {
            count,
            delay_ms: backoff_ms(backoff_initial_ms, backoff_max_ms, over),
            warn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_window_of_instant_restarts_keeps_a_bounded_list_and_the_same_verdicts() {
        let (budget, window) = (10, 86_400_000);
        let mut capped = CleanBudget::default();
        for at in 0..200_000u64 {
            let verdict = capped.record(at, budget, window, 1, 1 << 40);
            assert!(capped.restarts_at.len() <= 10 + MAX_OVER_BUDGET);
            let count = usize::try_from(at + 1).unwrap();
            assert_eq!(verdict.count, count.min(10 + MAX_OVER_BUDGET), "at {at}");
            assert_eq!(
                verdict.warn,
                at == 10,
                "warns once, when it first goes over"
            );
        }
        // A day later the window is empty again: back within the budget, at once.
        let verdict = capped.record(200_000 + window, budget, window, 1, 1 << 40);
        assert_eq!((verdict.count, verdict.delay_ms), (1, 0));
    }

    #[test]
    fn classification_table() {
        use StopReason::*;
        for (exit, stop, want) in [
            (Exit::Code(0), None, Cause::CleanExit),
            (Exit::Code(1), None, Cause::Crash),
            (Exit::Signal(9), None, Cause::Crash),
            (Exit::Signal(15), None, Cause::Crash),
            (Exit::Signal(15), Some(Shutdown), Cause::Shutdown),
            (Exit::Code(0), Some(Shutdown), Cause::Shutdown),
            (Exit::Signal(9), Some(Watchdog), Cause::Watchdog),
            (Exit::Code(0), Some(Watchdog), Cause::Watchdog),
            (Exit::Signal(15), Some(Unhealthy), Cause::Unhealthy),
            (Exit::Code(0), Some(Unhealthy), Cause::Unhealthy),
            (Exit::Signal(15), Some(Manual), Cause::Stopped),
            (Exit::Code(3), Some(Manual), Cause::Stopped),
        ] {
            assert_eq!(classify(exit, stop, 0), want, "{exit:?} {stop:?}");
        }
        // Signals fleet-init sent the run: a death by one of them is no crash; by another it is.
        let sent = signal_bit(1) | signal_bit(9) | signal_bit(64);
        for (exit, want) in [
            (Exit::Signal(1), Cause::CleanExit),
            (Exit::Signal(9), Cause::CleanExit),
            (Exit::Signal(64), Cause::CleanExit),
            (Exit::Signal(15), Cause::Crash),
            (Exit::Code(1), Cause::Crash),
            (Exit::Code(0), Cause::CleanExit),
        ] {
            assert_eq!(classify(exit, None, sent), want, "{exit:?}");
        }
        assert_eq!(
            classify(Exit::Signal(1), Some(Shutdown), sent),
            Cause::Shutdown
        );
        assert_eq!(signal_bit(0), 0);
        assert_eq!(signal_bit(65), 0);
        assert_eq!(signal_bit(-3), 0);
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let got: Vec<Millis> = (1..=9).map(|n| backoff_ms(1000, 60_000, n)).collect();
        assert_eq!(
            got,
            [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]
        );
        assert_eq!(backoff_ms(1000, 60_000, 0), 1000);
        assert_eq!(backoff_ms(u64::MAX, u64::MAX, 200), u64::MAX);
        assert_eq!(backoff_ms(0, 60_000, 5), 0);
    }

    #[test]
    fn budget_warns_once_backs_off_and_recovers_when_the_window_slides() {
        let mut budget = CleanBudget::default();
        let record = |b: &mut CleanBudget, now| b.record(now, 10, 60_000, 1000, 60_000);
        for i in 0..10 {
            let verdict = record(&mut budget, i * 1000);
            assert_eq!((verdict.delay_ms, verdict.warn), (0, false), "restart {i}");
        }
        let eleventh = record(&mut budget, 10_000);
        assert_eq!(
            (eleventh.count, eleventh.delay_ms, eleventh.warn),
            (11, 1000, true)
        );
        let twelfth = record(&mut budget, 11_000);
        assert_eq!(
            (twelfth.count, twelfth.delay_ms, twelfth.warn),
            (12, 2000, false)
        );
        // 60 s after the first restarts they leave the window: back under budget, no delay.
        let later = record(&mut budget, 70_500);
        assert_eq!((later.count, later.delay_ms, later.warn), (2, 0, false));
        // And the warning is armed again for the next burst.
        let mut warned = 0;
        for i in 0..20 {
            if record(&mut budget, 71_000 + i).warn {
                warned += 1;
            }
        }
        assert_eq!(warned, 1);
    }

    #[test]
    fn zero_budget_backs_off_every_clean_restart() {
        let mut budget = CleanBudget::default();
        let first = budget.record(0, 0, 60_000, 500, 4000);
        assert_eq!((first.delay_ms, first.warn), (500, true));
        let second = budget.record(1, 0, 60_000, 500, 4000);
        assert_eq!((second.delay_ms, second.warn), (1000, false));
    }
}
