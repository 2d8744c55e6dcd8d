//! One supervised worker: its spec, its phase in the life cycle and its counters.

use super::policy::{Cause, CleanBudget, StopReason};
use super::Millis;
use crate::config::WorkerSpec;
use crate::events::Event;
use crate::exit::Exit;
use crate::stop::Stop;

/// A started run of the worker's main process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub pid: i32,
    pub started_at: Millis,
    /// Set when fleet-init asked it to stop, so its death is classified by that reason.
    pub stop: Option<StopReason>,
    /// The stop under way once asked: SIGKILL when its grace ends.
    pub stopping: Option<Stop>,
    /// Next memory sample, for workers with a limit.
    pub sample_at: Option<Millis>,
    /// The cgroup's OOM-kill counter when it started.
    pub oom_kills_at_start: Option<u64>,
    /// Stopped (SIGSTOP, Ctrl-Z) and not continued since, as the reaper last saw it.
    pub is_stopped: bool,
    /// Given SIGCONT for a stop seen after its stop began (once a run).
    pub is_continued_in_stop: bool,
    /// The signals fleet-init sent this run (forwarded, `ctl signal`), bit N-1 for signal N:
    /// a death by one of them is not a crash (SPEC).
    pub sent_signals: u64,
}

impl Run {
    /// Notes that fleet-init sent `signal` to this run.
    pub fn note_sent(&mut self, signal: i32) {
        self.sent_signals |= super::policy::signal_bit(signal);
    }
}

/// What happens once a dead worker's process group is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    RestartAt(Millis),
    StayDown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not running; starts at `start_at` (at once for the first run, later after a backoff).
    Waiting {
        start_at: Millis,
    },
    /// `Spawn` was asked for; the runtime answers with `Spawned` or `SpawnFailed`.
    Starting,
    Running(Run),
    /// The main process is gone; what is left of its group is being stopped (a group held up
    /// after the SIGKILL by a zombie of a foreign parent is given up on after a while).
    Draining {
        pgid: i32,
        stop: Stop,
        then: After,
    },
    /// Never started again.
    Done,
}

/// How the worker's last run ended, for the config-mode exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    Failed,
}

#[derive(Clone, Debug)]
pub struct Worker {
    pub spec: WorkerSpec,
    pub phase: Phase,
    /// Runs started so far (1 for the first).
    pub run: u32,
    pub crash_count: u32,
    pub budget: CleanBudget,
    /// Shell-style code of the last exit, after `--remap-exit`.
    pub last_code: Option<i32>,
    /// fork() failures in a row (fleet-init's trouble): they set the backoff, never a crash.
    pub fork_failures: u32,
    /// The forked child of a start not yet confirmed (`Starting`): signals reach it too.
    pub forked: Option<i32>,
    /// What fleet-init sent that child (`signal_bit`s): the run it becomes starts with them,
    /// so that a death by a forwarded signal is no crash however early it came.
    pub sent_while_starting: u64,
    pub outcome: Outcome,
    /// Its place in the start order and its probes' state.
    pub order: super::order::WorkerOrder,
    /// Down on request (`ctl stop`) until `ctl start`: not restarted, keeps fleet-init up.
    pub is_held_down: bool,
    /// How the last run ended (before `--remap-exit`) and why, for `ctl status`.
    pub last_exit: Option<(Exit, Cause)>,
    /// The last memory reading of the current run's tree, for `ctl status`.
    pub memory_bytes: Option<u64>,
}

impl Worker {
    /// Records a clean-class restart (a clean exit, a watchdog stop, a manual restart) in the
    /// clean-restart budget: the delay before it, and the `health_warn` the budget asks for
    /// when this restart is the first over it.
    pub fn record_clean_restart(&mut self, now: Millis) -> (Millis, Option<Event>) {
        let spec = &self.spec;
        let verdict = self.budget.record(
            now,
            spec.clean_restart_budget,
            spec.clean_restart_window_ms,
            spec.backoff_initial_ms,
            spec.backoff_max_ms,
        );
        let warning = verdict.warn.then(|| {
            Event::warn("health_warn")
                .with("worker", spec.name.clone())
                .with("reason", "clean_restart_budget_exceeded")
                .with("clean_restarts", verdict.count)
                .with("clean_restart_budget", spec.clean_restart_budget)
                .with("clean_restart_window_ms", spec.clean_restart_window_ms)
                .with("backoff_ms", verdict.delay_ms)
        });
        (verdict.delay_ms, warning)
    }

    pub fn new(spec: WorkerSpec) -> Worker {
        Worker {
            spec,
            phase: Phase::Waiting { start_at: 0 },
            run: 0,
            crash_count: 0,
            budget: CleanBudget::default(),
            last_code: None,
            fork_failures: 0,
            forked: None,
            sent_while_starting: 0,
            outcome: Outcome::Clean,
            order: super::order::WorkerOrder::default(),
            is_held_down: false,
            last_exit: None,
            memory_bytes: None,
        }
    }

    pub fn running_pid(&self) -> Option<i32> {
        match &self.phase {
            Phase::Running(run) => Some(run.pid),
            _ => None,
        }
    }

    /// The main process signals go to: a running one's, or a start's not yet confirmed.
    pub fn live_pid(&self) -> Option<i32> {
        match &self.phase {
            Phase::Starting => self.forked,
            _ => self.running_pid(),
        }
    }

    /// The earliest instant at which this worker needs the loop to wake up.
    pub fn next_deadline(&self) -> Option<Millis> {
        match &self.phase {
            Phase::Waiting { start_at } => Some(*start_at),
            Phase::Running(run) => {
                let kill = run.stopping.as_ref().and_then(Stop::next_deadline);
                [kill, run.sample_at].into_iter().flatten().min()
            }
            Phase::Draining { stop, .. } => stop.next_deadline(),
            Phase::Starting | Phase::Done => None,
        }
    }
}
