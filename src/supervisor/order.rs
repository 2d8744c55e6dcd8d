//! Start order, readiness and health in the pure core: which waiting worker may start (every
//! worker it is `after` ready or completed), when a readiness or health probe is due, what a
//! probe's result means, and the order in which a shutdown stops the workers (dependents
//! first). The runtime carries out the probes (`Action::Probe`) and answers with
//! `Input::ProbeResult`.

use super::policy::StopReason;
use super::worker::{Outcome, Phase};
use super::{Action, Millis, Mode, Supervisor};
use crate::config::probes::ProbeKind;
use crate::events::Event;
use serde_json::Value;

/// Each readiness try's bound: a check that hangs is killed and counts as not ready yet.
pub const READY_TRY_TIMEOUT_MS: Millis = 2000;

/// A worker's place in the start order and the state of its current run's probes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerOrder {
    /// The workers it is `after`, by index.
    pub dependencies: Vec<usize>,
    /// `worker_waiting` was emitted for the start it waits for.
    pub is_waiting_reported: bool,
    /// The current run passed its readiness check (or has none).
    pub is_ready: bool,
    /// When the next probe try is due; `None` while one is in flight or none is scheduled.
    pub probe_at: Option<Millis>,
    pub is_probing: bool,
    /// Not ready by then: stopped as unhealthy.
    pub ready_by: Option<Millis>,
    /// Health check failures in a row.
    pub health_failures: u32,
    /// Never started: a worker it is after failed for good.
    pub is_dependency_failed: bool,
}

impl WorkerOrder {
    /// What this worker needs the loop to wake up for while it runs.
    pub fn next_deadline(&self) -> Option<Millis> {
        let probe = self.probe_at.filter(|_| !self.is_probing);
        let ready = self.ready_by.filter(|_| !self.is_ready);
        [probe, ready].into_iter().flatten().min()
    }
}

/// Where a dependency stands for the workers after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Ready (a service) or completed (a oneshot that exited 0, a service done cleanly once it
    /// had been ready).
    Satisfied,
    Pending,
    /// Down for good after a failure: what is after it can never start.
    Failed,
}

impl Supervisor {
    /// Turns the `after` names into indices (the config checked that they exist).
    pub(super) fn resolve_order(&mut self) {
        let names: Vec<String> = self.workers.iter().map(|w| w.spec.name.clone()).collect();
        for w in &mut self.workers {
            w.order.dependencies = w
                .spec
                .after
                .iter()
                .filter_map(|name| names.iter().position(|other| other == name))
                .collect();
        }
    }

    fn standing(&self, index: usize) -> Standing {
        let Some(w) = self.workers.get(index) else {
            return Standing::Failed;
        };
        match &w.phase {
            Phase::Running(run) if run.stop.is_none() && w.order.is_ready => Standing::Satisfied,
            // Down on request (`ctl stop`): back with `ctl start`, so its dependents wait.
            Phase::Done if w.is_held_down => Standing::Pending,
            Phase::Done => match w.outcome {
                Outcome::Clean => Standing::Satisfied,
                Outcome::Failed => Standing::Failed,
            },
            _ => Standing::Pending,
        }
    }

    /// The first worker this one is after that is down for good, if any: it can never start.
    pub(super) fn failed_dependency(&self, index: usize) -> Option<String> {
        let w = self.workers.get(index)?;
        w.order
            .dependencies
            .iter()
            .find(|d| self.standing(**d) == Standing::Failed)
            .and_then(|d| self.workers.get(*d))
            .map(|d| d.spec.name.clone())
    }

    /// Whether every worker this one is after is ready or completed.
    pub(super) fn may_start(&self, index: usize) -> bool {
        self.workers.get(index).is_some_and(|w| {
            w.order
                .dependencies
                .iter()
                .all(|d| self.standing(*d) == Standing::Satisfied)
        })
    }

    /// After every input: start the waiting workers whose dependencies are now met, report
    /// those still waiting (once), fail those whose dependency failed for good; during a
    /// shutdown, stop the workers whose dependents are gone.
    pub(super) fn advance_order(&mut self, now: Millis) {
        if self.shutdown.is_some() {
            self.stop_in_order(now);
            return;
        }
        // A failure travels down the order one level per pass.
        while self.fail_dependents() {}
        for index in 0..self.workers.len() {
            let Some(w) = self.workers.get(index) else {
                continue;
            };
            let Phase::Waiting { start_at } = w.phase else {
                continue;
            };
            if self.may_start(index) {
                // A dependent starts in the step its last dependency became ready; a worker
                // without dependencies waits for the tick, as ever (so that the signals of the
                // loop's first turn are read before anything starts).
                if start_at <= now && !w.order.dependencies.is_empty() {
                    self.tick_worker(index, now);
                }
                continue;
            }
            if w.order.is_waiting_reported {
                continue;
            }
            let on: Vec<Value> = w
                .order
                .dependencies
                .iter()
                .filter(|d| self.standing(**d) != Standing::Satisfied)
                .filter_map(|d| self.workers.get(*d))
                .map(|d| Value::from(d.spec.name.clone()))
                .collect();
            let event = Event::info("worker_waiting")
                .with("worker", w.spec.name.clone())
                .with("on", on);
            if let Some(w) = self.workers.get_mut(index) {
                w.order.is_waiting_reported = true;
            }
            self.emit(event);
        }
    }

    /// Waiting workers with a dependency failed for good are failed too; true if any was.
    fn fail_dependents(&mut self) -> bool {
        let mut changed = false;
        for index in 0..self.workers.len() {
            let Some(w) = self.workers.get(index) else {
                continue;
            };
            if !matches!(w.phase, Phase::Waiting { .. }) {
                continue;
            }
            let Some(dependency) = self.failed_dependency(index) else {
                continue;
            };
            let Some(w) = self.workers.get_mut(index) else {
                continue;
            };
            w.phase = Phase::Done;
            w.outcome = Outcome::Failed;
            w.order.is_dependency_failed = true;
            // `warn`, as every `health_warn` (README's events table).
            let event = Event::warn("health_warn")
                .with("worker", w.spec.name.clone())
                .with("reason", "dependency_failed")
                .with("dependency", dependency);
            self.emit(event);
            changed = true;
        }
        changed
    }

    /// A run began: its readiness is checked, or it is ready at once (without `ready`).
    pub(super) fn on_run_started(&mut self, index: usize, now: Millis) {
        let is_config = self.mode == Mode::Config;
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        let dependencies = std::mem::take(&mut w.order.dependencies);
        w.order = super::order::WorkerOrder {
            dependencies,
            ..Default::default()
        };
        if w.spec.oneshot {
            return;
        }
        match &w.spec.ready {
            Some(ready) => {
                w.order.ready_by = ready.timeout_ms.map(|ms| now.saturating_add(ms));
                if !matches!(ready.kind, ProbeKind::NotifyFd(_)) {
                    w.order.probe_at = Some(now);
                }
            }
            // Ready once exec succeeded. A single command has nothing after it: no event.
            None if is_config => self.become_ready(index, now),
            None => w.order.is_ready = true,
        }
    }

    fn become_ready(&mut self, index: usize, now: Millis) {
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        let Phase::Running(run) = &w.phase else {
            return;
        };
        w.order.is_ready = true;
        w.order.ready_by = None;
        w.order.probe_at = w
            .spec
            .health
            .as_ref()
            .map(|health| now.saturating_add(health.interval_ms));
        let event = Event::info("worker_ready")
            .with("worker", w.spec.name.clone())
            .with("pid", run.pid)
            .with("after_ms", now.saturating_sub(run.started_at));
        self.emit(event);
    }

    /// Asks for the probes that are due and stops a worker not ready in time.
    pub(super) fn tick_probes(&mut self, index: usize, now: Millis) {
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        let Phase::Running(run) = &w.phase else {
            return;
        };
        // During a shutdown nothing is probed: a worker waiting for its dependents to exit is
        // not stopped as unhealthy meanwhile.
        if run.stop.is_some() || self.shutdown.is_some() {
            return;
        }
        let pid = run.pid;
        if let Some(ready_by) = w
            .order
            .ready_by
            .filter(|by| *by <= now && !w.order.is_ready)
        {
            w.order.ready_by = None;
            w.order.probe_at = None;
            let timeout_ms = w.spec.ready.as_ref().and_then(|ready| ready.timeout_ms);
            let event = Event::warn("health_failed")
                .with("worker", w.spec.name.clone())
                .with("pid", pid)
                .with("failures", 0)
                .with(
                    "error",
                    format!("not ready within {} ms", timeout_ms.unwrap_or(ready_by)),
                );
            self.emit(event);
            self.stop_worker(index, StopReason::Unhealthy, now);
            return;
        }
        if w.order.is_probing || w.order.probe_at.is_none_or(|at| at > now) {
            return;
        }
        let probe = if w.order.is_ready {
            w.spec
                .health
                .as_ref()
                .map(|health| (health.kind.clone(), health.timeout_ms))
        } else {
            w.spec
                .ready
                .as_ref()
                .map(|ready| (ready.kind.clone(), READY_TRY_TIMEOUT_MS))
        };
        w.order.probe_at = None;
        let Some((kind, timeout_ms)) = probe else {
            return;
        };
        w.order.is_probing = true;
        self.actions.push(Action::Probe {
            worker: index,
            pid,
            kind,
            timeout_ms,
        });
    }

    /// A probe's answer: ready, not yet (try again after the interval), healthy, or one more
    /// failure in a row (the one that reaches `failures` stops the worker as unhealthy).
    pub(super) fn on_probe_result(
        &mut self,
        index: usize,
        pid: i32,
        ok: bool,
        error: &str,
        now: Millis,
    ) {
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        // A result for an earlier run, for a worker being stopped, or during a shutdown, is
        // moot.
        match &w.phase {
            Phase::Running(run) if run.pid == pid && run.stop.is_none() => {}
            _ => return,
        }
        if self.shutdown.is_some() {
            return;
        }
        w.order.is_probing = false;
        if !w.order.is_ready {
            if ok {
                self.become_ready(index, now);
            } else if let Some(ready) = &w.spec.ready {
                if !matches!(ready.kind, ProbeKind::NotifyFd(_)) {
                    w.order.probe_at = Some(now.saturating_add(ready.interval_ms));
                }
            }
            return;
        }
        let Some(health) = w.spec.health.clone() else {
            return;
        };
        if ok {
            w.order.health_failures = 0;
        } else {
            w.order.health_failures = w.order.health_failures.saturating_add(1);
        }
        if w.order.health_failures < health.failures {
            w.order.probe_at = Some(now.saturating_add(health.interval_ms));
            return;
        }
        let event = Event::warn("health_failed")
            .with("worker", w.spec.name.clone())
            .with("pid", pid)
            .with("failures", w.order.health_failures)
            .with("error", error);
        self.emit(event);
        self.stop_worker(index, StopReason::Unhealthy, now);
    }

    /// Whether the main process of every worker that is after this one has exited (so it may
    /// get its stop signal). A dependent's leftovers being drained do not hold it up: they are
    /// stopped with the dependent's own stop signal, grace and SIGKILL.
    pub(super) fn are_dependents_gone(&self, index: usize) -> bool {
        self.workers.iter().all(|w| {
            !w.order.dependencies.contains(&index) || !matches!(w.phase, Phase::Running(_))
        })
    }

    /// Shutdown: the stop signal to each running worker whose dependents are all gone.
    fn stop_in_order(&mut self, now: Millis) {
        let Some(shutdown) = self.shutdown.as_ref() else {
            return;
        };
        if !shutdown.is_stopping_in_order() {
            return;
        }
        let signal = shutdown.forwarded_signal;
        let ready: Vec<usize> = (0..self.workers.len())
            .filter(|index| {
                self.workers
                    .get(*index)
                    .is_some_and(|w| matches!(&w.phase, Phase::Running(run) if run.stop.is_none()))
            })
            .filter(|index| self.are_dependents_gone(*index))
            .collect();
        for index in ready {
            self.stop_worker_with(index, StopReason::Shutdown, signal, now);
        }
    }
}
