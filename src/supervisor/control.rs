//! Requests from the control socket (`fleet-init ctl`), decided in the pure core: status and
//! readiness snapshots, manual stop/start/restart (supervisorctl semantics: a stopped worker
//! stays down, keeps its history and keeps fleet-init up), signals, shutdown. Every request
//! gets one reply (`Action::Reply`) and one `control` event per worker it names.

use super::policy::{Cause, StopReason};
use super::state::State;
use super::worker::{After, Outcome, Phase};
use super::{signal_worker, Action, Millis, Supervisor};
use crate::control::protocol::{refusal, Request, Verb};
use crate::events::Event;
use crate::exit::Exit;
use crate::signals;
use serde_json::{json, Value};

/// What a request did to one worker: a word for people, or why not.
type Verdict = Result<&'static str, String>;

impl Supervisor {
    pub(super) fn on_control(
        &mut self,
        client: u64,
        peer_uid: u32,
        request: &Request,
        now: Millis,
    ) {
        let verb = request.verb.as_str();
        let indices = match self.resolve(&request.workers) {
            Ok(indices) => indices,
            Err(error) => {
                self.emit_control(verb, None, peer_uid, Err(&error));
                self.actions.push(Action::Reply {
                    client,
                    reply: refusal(&error),
                });
                return;
            }
        };
        let reply = match request.verb {
            Verb::Status => {
                let workers: Vec<Value> = indices.iter().map(|&i| self.status_of(i, now)).collect();
                self.emit_control(verb, None, peer_uid, Ok(()));
                json!({"ok": true, "workers": workers})
            }
            Verb::Ready => self.readiness(peer_uid),
            Verb::Shutdown => {
                self.emit_control(verb, None, peer_uid, Ok(()));
                if self.shutdown.is_none() {
                    // As SIGTERM does; a later SIGTERM/SIGINT skips the rest of the grace.
                    self.begin_shutdown_by_signal("ctl_shutdown", libc::SIGTERM, now);
                }
                json!({"ok": true})
            }
            Verb::Stop | Verb::Start | Verb::Restart | Verb::Signal => {
                self.per_worker(request, &indices, peer_uid, now)
            }
        };
        self.actions.push(Action::Reply { client, reply });
    }

    /// Every worker when no name is given; an unknown name refuses the whole request.
    fn resolve(&self, names: &[String]) -> Result<Vec<usize>, String> {
        if names.is_empty() {
            return Ok((0..self.workers.len()).collect());
        }
        names
            .iter()
            .map(|name| {
                self.workers
                    .iter()
                    .position(|w| w.spec.name == *name)
                    .ok_or_else(|| format!("no worker named {:?}", crate::cli::one_line(name)))
            })
            .collect()
    }

    fn per_worker(
        &mut self,
        request: &Request,
        indices: &[usize],
        peer_uid: u32,
        now: Millis,
    ) -> Value {
        let verb = request.verb.as_str();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for &index in indices {
            let outcome = if self.shutdown.is_some() {
                Err("fleet-init is shutting down".to_string())
            } else {
                match (request.verb, request.signal) {
                    (Verb::Stop, _) => Ok(self.stop_by_request(index, now)),
                    (Verb::Start, _) => self.start_by_request(index, now),
                    (Verb::Restart, _) => self.restart_by_request(index, now),
                    (Verb::Signal, Some(signal)) => self.signal_by_request(index, signal),
                    _ => Err(format!("{verb} is not a per-worker verb")),
                }
            };
            let name = self.workers.get(index).map(|w| w.spec.name.clone());
            let name = name.unwrap_or_default();
            self.emit_control(verb, Some(&name), peer_uid, outcome.as_ref().map(|_| ()));
            match outcome {
                Ok(result) => results.push(json!({"name": name, "result": result})),
                Err(error) => {
                    results.push(json!({"name": name, "error": error.clone()}));
                    errors.push(format!("{name}: {error}"));
                }
            }
        }
        let mut reply = json!({"ok": errors.is_empty(), "workers": results});
        if !errors.is_empty() {
            reply["error"] = Value::from(errors.join("; "));
        }
        reply
    }

    fn emit_control(
        &mut self,
        verb: &str,
        worker: Option<&str>,
        peer_uid: u32,
        ok: Result<(), &String>,
    ) {
        let mut event = match ok {
            Ok(()) => Event::info("control"),
            Err(_) => Event::warn("control"),
        }
        .with("verb", verb.to_string());
        if let Some(worker) = worker {
            event = event.with("worker", worker.to_string());
        }
        event = event.with("peer_uid", peer_uid).with("ok", ok.is_ok());
        if let Err(error) = ok {
            event = event.with("error", error.clone());
        }
        self.emit(event);
    }

    /// Down until `start`, across any backoff. A run in progress gets its stop signal (grace,
    /// SIGKILL) and ends as `stopped`: never a crash.
    fn stop_by_request(&mut self, index: usize, now: Millis) -> &'static str {
        let Some(w) = self.workers.get_mut(index) else {
            return "not running";
        };
        let was_held = std::mem::replace(&mut w.is_held_down, true);
        let must_signal = matches!(&w.phase, Phase::Running(run) if run.stop.is_none());
        let result = match &mut w.phase {
            // A run already being stopped (watchdog) just stays down after it.
            Phase::Running(_) => "stopping",
            // on_spawned stops it the moment it runs.
            Phase::Starting => "stopping",
            Phase::Waiting { .. } => {
                w.phase = Phase::Done;
                "stopped"
            }
            Phase::Draining { then, .. } => {
                *then = After::StayDown;
                "stopping"
            }
            Phase::Done if was_held => "stopped",
            // Completed or failed: it is down already, and stays as it ended.
            Phase::Done => {
                w.is_held_down = false;
                "not running"
            }
        };
        if must_signal {
            self.stop_worker(index, StopReason::Manual, now);
        }
        result
    }

    /// A new run (the run count goes on; crashes and last exit are kept); a pending backoff is
    /// cut short.
    fn start_by_request(&mut self, index: usize, now: Millis) -> Verdict {
        // Down, and what it is after is down for good: it could only fail again at once.
        let is_down = matches!(
            self.workers.get(index).map(|w| &w.phase),
            Some(Phase::Waiting { .. } | Phase::Done)
        );
        if let Some(dependency) = self.failed_dependency(index).filter(|_| is_down) {
            return Err(format!(
                "cannot start: {dependency:?}, which it is after, failed"
            ));
        }
        let Some(w) = self.workers.get_mut(index) else {
            return Err("not running".into());
        };
        w.is_held_down = false;
        let result = match &mut w.phase {
            // Its exit (as `stopped`) restarts it: see `after_manual_stop`.
            Phase::Running(run) if run.stop == Some(StopReason::Manual) => "starting",
            Phase::Running(_) | Phase::Starting => return Ok("already running"),
            Phase::Draining { then, .. } => {
                *then = After::RestartAt(now);
                "starting"
            }
            Phase::Waiting { start_at } => {
                *start_at = now;
                "starting"
            }
            Phase::Done => {
                w.outcome = Outcome::Clean;
                w.phase = Phase::Waiting { start_at: now };
                "starting"
            }
        };
        self.tick_worker(index, now);
        let is_held = matches!(
            self.workers.get(index).map(|w| &w.phase),
            Some(Phase::Waiting { start_at }) if *start_at <= now
        );
        // Held by `after`: it starts once what it is after is ready (not now, as said).
        if result == "starting" && is_held && !self.may_start(index) {
            return Ok("waiting for the workers it is after");
        }
        Ok(result)
    }

    /// A clean-class stop then start: the exit is `stopped` and the new run starts at once,
    /// counted in the clean-restart budget like a clean exit.
    fn restart_by_request(&mut self, index: usize, now: Millis) -> Verdict {
        let Some(w) = self.workers.get_mut(index) else {
            return Err("not running".into());
        };
        if matches!(&w.phase, Phase::Running(run) if run.stop.is_none()) {
            w.is_held_down = false;
            self.stop_worker(index, StopReason::Manual, now);
            return Ok("restarting");
        }
        self.start_by_request(index, now)
    }

    fn signal_by_request(&mut self, index: usize, signal: i32) -> Verdict {
        let Some(w) = self.workers.get_mut(index) else {
            return Err("not running".into());
        };
        let Some(pid) = w.running_pid() else {
            return Err(format!("not running ({})", w.state().as_str()));
        };
        let action = signal_worker(&w.spec, pid, signal);
        if let Phase::Running(run) = &mut w.phase {
            run.note_sent(signal);
        }
        self.actions.push(action);
        Ok("signalled")
    }

    /// Called by `after_exit` for an exit after `ctl stop`/`restart` or of a held-down worker:
    /// down it stays when held down; otherwise (a restart, or a start that came while it was
    /// stopping) it starts again at once, within the clean-restart budget.
    pub(super) fn after_manual_stop(&mut self, index: usize, now: Millis) -> After {
        let Some(w) = self.workers.get_mut(index) else {
            return After::StayDown;
        };
        if w.is_held_down {
            return After::StayDown;
        }
        let (delay_ms, warning) = w.record_clean_restart(now);
        let name = w.spec.name.clone();
        if let Some(event) = warning {
            self.emit(event);
        }
        self.emit(
            Event::info("backoff")
                .with("worker", name)
                .with("ms", delay_ms),
        );
        After::RestartAt(now.saturating_add(delay_ms))
    }

    /// `ready`: every worker ready or completed. A worker stopped on request is not ready
    /// (supervisorctl users expect a stopped service to fail its probe).
    fn readiness(&mut self, peer_uid: u32) -> Value {
        let not_ready: Vec<Value> = self
            .workers
            .iter()
            .filter(|w| !matches!(w.state(), State::Ready | State::Completed))
            .map(|w| json!({"name": w.spec.name, "state": w.state().as_str()}))
            .collect();
        let is_ready = not_ready.is_empty() && self.shutdown.is_none();
        self.emit_control("ready", None, peer_uid, Ok(()));
        json!({"ok": true, "ready": is_ready, "shutting_down": self.shutdown.is_some(),
               "not_ready": not_ready})
    }

    /// One worker as `ctl status` shows it.
    fn status_of(&self, index: usize, now: Millis) -> Value {
        let Some(w) = self.workers.get(index) else {
            return Value::Null;
        };
        let uptime_ms = match &w.phase {
            Phase::Running(run) => Some(now.saturating_sub(run.started_at)),
            _ => None,
        };
        // A start not yet confirmed shows its forked pid.
        let pid = w.live_pid();
        let (last_exit, likely_cause) = match w.last_exit {
            Some((Exit::Code(code), cause)) => (json!({"code": code}), Value::from(cause.as_str())),
            Some((Exit::Signal(signal), cause)) => (
                json!({"signal": signals::name(signal)}),
                Value::from(cause.as_str()),
            ),
            None => (Value::Null, Value::Null),
        };
        json!({
            "name": w.spec.name,
            "state": w.state().as_str(),
            "pid": pid,
            "uptime_ms": uptime_ms,
            "runs": w.run,
            "crashes": w.crash_count,
            "last_exit": last_exit,
            "likely_cause": likely_cause,
            "memory_bytes": w.memory_bytes,
        })
    }
}

/// Whether an exit is one `after_manual_stop` decides about.
pub(super) fn is_manual(cause: Cause, is_held_down: bool) -> bool {
    cause == Cause::Stopped || is_held_down
}

#[cfg(test)]
mod tests;
