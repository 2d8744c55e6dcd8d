//! The one shutdown path: stop signal to every worker, SIGTERM to every other process, SIGKILL
//! when the grace ends (or at a second SIGTERM/SIGINT), exit the moment nothing is left.

use super::policy::StopReason;
use super::worker::{After, Outcome, Phase};
use super::{Action, Millis, Mode, Supervisor};
use crate::events::Event;
use crate::stop::{Event as StopEvent, Order, Stop};
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shutdown {
    reason: String,
    started_at: Millis,
    /// SIGTERM went to every other process; SIGKILL to everything at `grace_ms`. Never given up
    /// on: the shutdown ends when nothing is left.
    stop: Stop,
    /// Distinct processes SIGKILLed, as the runtime saw them (`Input::Killed`).
    pub killed_pids: BTreeSet<i32>,
    /// The exit code decided when it began (config mode, max crashes); otherwise computed at
    /// the end from the workers' outcomes.
    forced_code: Option<i32>,
    is_signal_initiated: bool,
    /// The signal that started it, when one did.
    pub first_signal: Option<i32>,
    is_complete: bool,
    /// The signal a single command's child gets instead of its stop signal (tini's way).
    pub forwarded_signal: Option<i32>,
}

impl Shutdown {
    /// Workers still get their stop signal as their dependents exit (until the KILL).
    pub fn is_stopping_in_order(&self) -> bool {
        !self.stop.is_killed() && !self.is_complete
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        self.stop.next_deadline().filter(|_| !self.is_complete)
    }
}

impl Supervisor {
    /// Shutdown for a reason of fleet-init's own (max crashes, every worker finished).
    pub(super) fn begin_shutdown(&mut self, reason: &str, forced_code: Option<i32>, now: Millis) {
        self.begin(reason, forced_code, None, None, now);
    }

    /// Shutdown asked for by SIGTERM/SIGINT (or SIGQUIT in config mode). In single-command mode the child gets the very
    /// signal fleet-init got (tini forwards it); in config mode each worker its stop signal.
    pub(super) fn begin_shutdown_by_signal(&mut self, reason: &str, signal: i32, now: Millis) {
        let forwarded = match self.mode {
            Mode::Single { .. } => Some(signal),
            Mode::Config => None,
        };
        self.begin(reason, None, forwarded, Some(signal), now);
    }

    fn begin(
        &mut self,
        reason: &str,
        forced_code: Option<i32>,
        signal: Option<i32>,
        first_signal: Option<i32>,
        now: Millis,
    ) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(Shutdown {
            reason: reason.to_string(),
            started_at: now,
            stop: Stop::asked(libc::SIGTERM, now.saturating_add(self.grace_ms), None),
            killed_pids: BTreeSet::new(),
            forced_code,
            is_signal_initiated: first_signal.is_some(),
            first_signal,
            is_complete: false,
            forwarded_signal: signal,
        });
        let mut spare_groups = Vec::new();
        let mut to_stop = Vec::new();
        for (index, w) in self.workers.iter_mut().enumerate() {
            match &mut w.phase {
                Phase::Running(run) => {
                    spare_groups.push(run.pid);
                    if run.stop.is_none() {
                        to_stop.push(index);
                    }
                }
                Phase::Draining { pgid, then, .. } => {
                    spare_groups.push(*pgid);
                    *then = After::StayDown;
                }
                // Forked, exec not confirmed: its group is spared like a running worker's and
                // it gets its own stop signal once `Spawned` says it runs.
                Phase::Starting if w.forked.is_some() => spare_groups.extend(w.forked),
                Phase::Waiting { .. } | Phase::Starting => w.phase = Phase::Done,
                Phase::Done => {}
            }
        }
        // Reverse start order: a worker gets its stop signal once every worker after it has
        // exited (`advance_order` sends the rest as they do).
        to_stop.retain(|index| self.are_dependents_gone(*index));
        // The signals first: the event is for the log, the signal is what a worker waits for.
        for index in to_stop {
            self.stop_worker_with(index, StopReason::Shutdown, signal, now);
        }
        self.emit(Event::info("shutdown_started").with("reason", reason));
        self.actions.push(Action::SignalOthers {
            signal: libc::SIGTERM,
            spare_groups,
        });
    }

    /// When the shutdown's grace ends (at once after a second SIGTERM/SIGINT); `None` when no
    /// shutdown has begun. The runtime gives the workers' last output lines until then.
    pub fn grace_ends_at(&self) -> Option<Millis> {
        self.shutdown.as_ref().map(|shutdown| {
            if shutdown.stop.is_killed() {
                // Killed at the grace's end or at a second signal: it is over.
                shutdown.started_at
            } else {
                shutdown.stop.kill_at
            }
        })
    }

    /// A second SIGTERM/SIGINT: the rest of the grace is skipped.
    pub(super) fn skip_grace(&mut self, now: Millis) {
        self.step_shutdown(StopEvent::SkipGrace, now);
    }

    pub(super) fn tick_shutdown(&mut self, now: Millis) {
        self.step_shutdown(StopEvent::Tick, now);
    }

    fn step_shutdown(&mut self, event: StopEvent, now: Millis) {
        let Some(shutdown) = self.shutdown.as_mut() else {
            return;
        };
        if shutdown.is_complete || shutdown.stop.handle(event, now) != Some(Order::Kill) {
            return;
        }
        self.actions.push(Action::KillAll);
        // KillAll covers every worker's group: their own stops are at their kill now. A worker
        // still waiting for its dependents to exit never got its stop signal: it is stopped
        // by the shutdown all the same, and its exit says so.
        for w in &mut self.workers {
            match &mut w.phase {
                Phase::Running(run) => {
                    run.stop.get_or_insert(StopReason::Shutdown);
                    let stop =
                        run.stopping
                            .get_or_insert(Stop::asked(w.spec.stop_signal, now, None));
                    stop.handle(StopEvent::SkipGrace, now);
                }
                Phase::Draining { stop, .. } => {
                    stop.handle(StopEvent::SkipGrace, now);
                }
                _ => {}
            }
        }
    }

    /// Nothing is left below fleet-init: a shutdown under way is complete.
    pub(super) fn on_children_gone(&mut self, now: Millis) {
        let code = self.exit_code();
        let Some(shutdown) = self.shutdown.as_mut() else {
            return;
        };
        if shutdown.is_complete {
            return;
        }
        shutdown.is_complete = true;
        let event = Event::info("shutdown_complete")
            .with("reason", shutdown.reason.clone())
            .with("exit_code", code)
            .with("duration_ms", now.saturating_sub(shutdown.started_at))
            .with("killed", shutdown.killed_pids.len());
        for w in &mut self.workers {
            w.phase = Phase::Done;
        }
        self.emit(event);
        self.actions.push(Action::Exit { code });
    }

    /// Single-command mode: the child's code. Config mode: 0 after a signal or when every
    /// worker finished cleanly; 1 after max crashes or any failed final run.
    fn exit_code(&self) -> i32 {
        let Some(shutdown) = self.shutdown.as_ref() else {
            return 0;
        };
        match self.mode {
            Mode::Single { .. } => self.workers.first().and_then(|w| w.last_code).unwrap_or(0),
            Mode::Config => {
                if let Some(code) = shutdown.forced_code {
                    code
                } else if shutdown.is_signal_initiated
                    || self.workers.iter().all(|w| w.outcome == Outcome::Clean)
                {
                    0
                } else {
                    1
                }
            }
        }
    }
}
