//! The supervisor's pure core: every worker's life cycle and the shutdown, as
//! `handle(input, now) -> actions` plus `next_deadline()`. No system calls, no clock: the
//! runtime feeds it what happened and carries out what it asks for.

mod control;
mod order;
pub mod policy;
mod shutdown;
pub mod state;
pub mod worker;

use crate::config::probes::ProbeKind;
use crate::config::{OnMaxCrashes, RestartPolicy, SignalTarget, WorkerSpec};
use crate::control::protocol::Request;
use crate::events::Event;
use crate::exit::Exit;
use crate::procscan::TreeMemory;
use crate::signals;
use policy::{backoff_ms, classify, signal_bit, Cause, StopReason};
use serde_json::Value;
use shutdown::Shutdown;
use worker::{After, Outcome, Phase, Run, Worker};

/// Milliseconds on a monotonic clock chosen by the caller.
pub type Millis = u64;

/// After SIGKILL, how long a group that still looks alive is waited for before moving on.
const KILL_SETTLE_MS: Millis = 1000;

use crate::stop::{Event as StopEvent, Order, Stop};

/// What happened, as the runtime observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time passed: act on every deadline that is due.
    Tick,
    /// The worker's child is forked; `Spawned` or `SpawnFailed` follows once it exec'd or not.
    Forked {
        worker: usize,
        pid: i32,
    },
    Spawned {
        worker: usize,
        pid: i32,
    },
    SpawnFailed {
        worker: usize,
        /// The forked child that failed to exec, when there was one.
        pid: Option<i32>,
        error: String,
        /// 127 for a missing command, 126 for one that cannot be executed.
        exit_code: i32,
        /// fork itself failed (EAGAIN, ENOMEM): retried with backoff, never a crash.
        is_fork_failure: bool,
    },
    /// A child stopped (`is_stopped`) or was continued, as the reaper saw it: pids that are
    /// no worker's main process are ignored.
    JobState {
        pid: i32,
        is_stopped: bool,
    },
    /// A reaped child, any child: pids that are no worker's are ignored.
    Exited {
        pid: i32,
        exit: Exit,
    },
    Signal(i32),
    /// A signal the runtime already sent on as `first_signal_action` said, the moment it woke:
    /// handled as `Signal`, without that action again.
    SignalSentAhead(i32),
    /// The runtime found a draining worker's process group empty.
    GroupEmpty {
        worker: usize,
    },
    /// `waitpid` said ECHILD: no process is left below fleet-init.
    ChildrenGone,
    /// The memory of a worker's process tree, as asked for by `SampleMemory`.
    MemorySample {
        worker: usize,
        pid: i32,
        memory: TreeMemory,
    },
    /// Live processes a SIGKILL of the shutdown hit, as the runtime saw them: counted once each
    /// in `shutdown_complete.killed`.
    Killed(Vec<i32>),
    /// The cgroup's OOM-kill counter, read at start and before a SIGKILL death is fed.
    OomKills(u64),
    /// The answer to `Probe` (or a notify_fd line): `pid` is the worker run it was about.
    ProbeResult {
        worker: usize,
        pid: i32,
        ok: bool,
        error: String,
    },
    /// A request from the control socket; answered with `Action::Reply` to that client.
    Control {
        client: u64,
        peer_uid: u32,
        request: Request,
    },
}

/// What the runtime must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Emit(Event),
    Spawn {
        worker: usize,
    },
    SignalProcess {
        pid: i32,
        signal: i32,
    },
    SignalGroup {
        pgid: i32,
        signal: i32,
    },
    /// Shutdown: every process left (in the namespace as PID 1, below fleet-init as a
    /// subreaper) except those in `spare_groups`, which got their worker's stop signal.
    SignalOthers {
        signal: i32,
        spare_groups: Vec<i32>,
    },
    /// The grace is over: SIGKILL every process left. The runtime reports the count with
    /// `Input::Killed`.
    KillAll,
    Exit {
        code: i32,
    },
    /// Every process of this run (its main process and its group) is confirmed gone: its
    /// registry entry may go.
    Released {
        pid: i32,
    },
    /// Read the memory of the worker's process tree and answer with `MemorySample`.
    SampleMemory {
        worker: usize,
        pid: i32,
    },
    /// Run one readiness or health check of the worker's run `pid`, bounded by `timeout_ms`;
    /// answer with `ProbeResult`.
    Probe {
        worker: usize,
        pid: i32,
        kind: ProbeKind,
        timeout_ms: Millis,
    },
    /// The reply line to a control client's request.
    Reply {
        client: u64,
        reply: Value,
    },
}

/// Single-command mode (tini's semantics) or the workers of a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Single { remap_exit: Vec<i32> },
    Config,
}

pub struct Supervisor {
    mode: Mode,
    grace_ms: Millis,
    workers: Vec<Worker>,
    shutdown: Option<Shutdown>,
    actions: Vec<Action>,
    /// The cgroup's OOM-kill counter as last read; `None` where there is none.
    oom_kills: Option<u64>,
    /// The counter value up to which OOM kills were attributed to a worker's death.
    oom_kills_claimed: u64,
}

impl Supervisor {
    pub fn new(mode: Mode, grace_ms: Millis, specs: Vec<WorkerSpec>) -> Supervisor {
        let mut supervisor = Supervisor {
            mode,
            grace_ms,
            workers: specs.into_iter().map(Worker::new).collect(),
            shutdown: None,
            actions: Vec::new(),
            oom_kills: None,
            oom_kills_claimed: 0,
        };
        supervisor.resolve_order();
        supervisor
    }

    pub fn spec(&self, worker: usize) -> Option<&WorkerSpec> {
        self.workers.get(worker).map(|w| &w.spec)
    }

    /// The run number the worker's next start will have.
    pub fn next_run(&self, worker: usize) -> u32 {
        self.workers
            .get(worker)
            .map(|w| w.run.saturating_add(1))
            .unwrap_or(1)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_some()
    }

    /// Workers whose main process is gone while their group may still hold processes.
    pub fn draining_groups(&self) -> Vec<(usize, i32)> {
        self.workers
            .iter()
            .enumerate()
            .filter_map(|(index, w)| match w.phase {
                Phase::Draining { pgid, .. } => Some((index, pgid)),
                _ => None,
            })
            .collect()
    }

    /// The signal an escapee of a draining worker found only now gets: its stop signal within
    /// the grace, SIGKILL once the grace is over (the group had its SIGKILL while the escapee
    /// was not ours to see yet: still a child of the worker's main process).
    pub fn drain_signal(&self, index: usize) -> Option<i32> {
        match self.workers.get(index).map(|w| &w.phase) {
            Some(Phase::Draining { stop, .. }) => Some(stop.current_signal()),
            _ => None,
        }
    }

    /// Each worker's name and state, in config order.
    pub fn states(&self) -> Vec<(&str, state::State)> {
        self.workers
            .iter()
            .map(|w| (w.spec.name.as_str(), w.state()))
            .collect()
    }

    /// The main pids of the running workers.
    pub fn running_pids(&self) -> Vec<i32> {
        self.workers
            .iter()
            .filter_map(Worker::running_pid)
            .collect()
    }

    /// The earliest deadline of any worker or of the shutdown; `None`: sleep until a signal.
    pub fn next_deadline(&self) -> Option<Millis> {
        let workers = self.workers.iter().enumerate().filter_map(|(index, w)| {
            // Waiting workers do not start during a shutdown, nor before their dependencies.
            match (&w.phase, &self.shutdown) {
                (Phase::Waiting { .. }, Some(_)) => None,
                (Phase::Waiting { .. }, None) if !self.may_start(index) => None,
                (Phase::Running(run), None) if run.stop.is_none() => {
                    [w.next_deadline(), w.order.next_deadline()]
                        .into_iter()
                        .flatten()
                        .min()
                }
                _ => w.next_deadline(),
            }
        });
        let shutdown = self.shutdown.as_ref().and_then(Shutdown::next_deadline);
        workers.chain(shutdown).min()
    }

    pub fn handle(&mut self, input: Input, now: Millis) -> Vec<Action> {
        match input {
            Input::Tick => self.on_tick(now),
            Input::Forked { worker, pid } => {
                if let Some(w) = self.workers.get_mut(worker) {
                    w.forked = Some(pid);
                }
            }
            Input::Spawned { worker, pid } => self.on_spawned(worker, pid, now),
            Input::SpawnFailed {
                worker,
                error,
                is_fork_failure: true,
                ..
            } => self.on_fork_failed(worker, &error, now),
            Input::SpawnFailed {
                worker,
                pid,
                error,
                exit_code,
                is_fork_failure: false,
            } => self.on_spawn_failed(worker, pid, &error, exit_code, now),
            Input::Exited { pid, exit } => self.on_exited(pid, exit, now),
            Input::JobState { pid, is_stopped } => {
                for w in &mut self.workers {
                    let Phase::Running(run) = &mut w.phase else {
                        continue;
                    };
                    if run.pid != pid {
                        continue;
                    }
                    run.is_stopped = is_stopped;
                    // Stopped while it is being stopped: a forwarded signal went alone to a
                    // child not yet known stopped (the stop and SIGTERM came in one wake-up,
                    // or the stop came after), and a stopped child cannot act on it. SIGCONT,
                    // once a run, as the stop signal would have had it.
                    if is_stopped && run.stop.is_some() && !run.is_continued_in_stop {
                        run.is_continued_in_stop = true;
                        self.actions
                            .push(signal_worker(&w.spec, pid, libc::SIGCONT));
                    }
                }
            }
            Input::Signal(signal) => self.on_signal(signal, now),
            Input::SignalSentAhead(signal) => {
                let sent = self.first_signal_action(signal);
                self.on_signal(signal, now);
                if let Some(at) = sent.and_then(|sent| self.actions.iter().position(|a| *a == sent))
                {
                    self.actions.remove(at);
                }
            }
            Input::GroupEmpty { worker } => self.on_group_empty(worker, now),
            Input::ChildrenGone => self.on_children_gone(now),
            Input::MemorySample {
                worker,
                pid,
                memory,
            } => self.on_memory_sample(worker, pid, &memory, now),
            Input::OomKills(count) => self.oom_kills = Some(count),
            Input::Killed(pids) => {
                if let Some(shutdown) = self.shutdown.as_mut() {
                    shutdown.killed_pids.extend(pids);
                }
            }
            Input::ProbeResult {
                worker,
                pid,
                ok,
                error,
            } => self.on_probe_result(worker, pid, ok, &error, now),
            Input::Control {
                client,
                peer_uid,
                request,
            } => self.on_control(client, peer_uid, &request, now),
        }
        self.advance_order(now);
        self.finish_if_nothing_left(now);
        std::mem::take(&mut self.actions)
    }

    /// Whether the counter rose since `at_start` by a kill no other death claimed; claims it.
    fn claim_oom_kill(&mut self, at_start: Option<u64>) -> bool {
        let (Some(before), Some(now)) = (at_start, self.oom_kills) else {
            return false;
        };
        let claimed = before.max(self.oom_kills_claimed);
        if now > claimed {
            self.oom_kills_claimed = claimed.saturating_add(1);
            true
        } else {
            false
        }
    }

    fn emit(&mut self, event: Event) {
        self.actions.push(Action::Emit(event));
    }

    fn on_tick(&mut self, now: Millis) {
        for index in 0..self.workers.len() {
            self.tick_worker(index, now);
            self.tick_probes(index, now);
        }
        self.tick_shutdown(now);
    }

    fn tick_worker(&mut self, index: usize, now: Millis) {
        let shutting_down = self.shutdown.is_some();
        let may_start = self.may_start(index);
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        match &mut w.phase {
            Phase::Waiting { start_at } if !shutting_down && may_start && *start_at <= now => {
                w.phase = Phase::Starting;
                w.sent_while_starting = 0;
                self.actions.push(Action::Spawn { worker: index });
            }
            Phase::Running(run) => {
                if let Some(sample_at) = run.sample_at.filter(|at| *at <= now) {
                    run.sample_at = Some(
                        sample_at
                            .max(now)
                            .saturating_add(w.spec.watchdog_interval_ms),
                    );
                    self.actions.push(Action::SampleMemory {
                        worker: index,
                        pid: run.pid,
                    });
                }
                let order = run
                    .stopping
                    .as_mut()
                    .and_then(|stop| stop.handle(StopEvent::Tick, now));
                if order == Some(Order::Kill) {
                    let pid = run.pid;
                    self.actions.push(Action::SignalGroup {
                        pgid: pid,
                        signal: libc::SIGKILL,
                    });
                    // A process that left its own group is still the worker: kill it too.
                    self.actions.push(Action::SignalProcess {
                        pid,
                        signal: libc::SIGKILL,
                    });
                }
            }
            Phase::Draining { pgid, stop, then } => match stop.handle(StopEvent::Tick, now) {
                Some(Order::Kill) => self.actions.push(Action::SignalGroup {
                    pgid: *pgid,
                    signal: libc::SIGKILL,
                }),
                Some(Order::GiveUp) => {
                    let then = *then;
                    self.leave_draining(index, then, now);
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn on_spawned(&mut self, index: usize, pid: i32, now: Millis) {
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        w.run = w.run.saturating_add(1);
        w.fork_failures = 0;
        w.memory_bytes = None;
        w.forked = None;
        let interval = w.spec.watchdog_interval_ms;
        let sample_at = w.spec.max_rss_mb.map(|_| now.saturating_add(interval));
        w.phase = Phase::Running(Run {
            pid,
            started_at: now,
            stop: None,
            stopping: None,
            sample_at,
            oom_kills_at_start: self.oom_kills,
            is_stopped: false,
            is_continued_in_stop: false,
            sent_signals: std::mem::take(&mut w.sent_while_starting),
        });
        let event = Event::info("worker_started")
            .with("worker", w.spec.name.clone())
            .with("pid", pid)
            .with("run", w.run);
        self.emit(event);
        if self.shutdown.is_some() {
            // Raced with a shutdown: stop it like the others.
            self.stop_worker(index, StopReason::Shutdown, now);
        } else if self.workers.get(index).is_some_and(|w| w.is_held_down) {
            // `ctl stop` came while it was being started.
            self.stop_worker(index, StopReason::Manual, now);
        } else {
            self.on_run_started(index, now);
            // A readiness check due at once goes out in this same step.
            self.tick_probes(index, now);
        }
    }

    /// The worker never ran: not its crash. The start is tried again after a backoff that
    /// grows with the failures in a row, and no crash limit applies.
    fn on_fork_failed(&mut self, index: usize, error: &str, now: Millis) {
        let shutting_down = self.shutdown.is_some();
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        w.fork_failures = w.fork_failures.saturating_add(1);
        w.forked = None;
        let delay_ms = backoff_ms(
            w.spec.backoff_initial_ms,
            w.spec.backoff_max_ms,
            w.fork_failures,
        );
        w.phase = if shutting_down {
            Phase::Done
        } else {
            Phase::Waiting {
                start_at: now.saturating_add(delay_ms),
            }
        };
        let name = w.spec.name.clone();
        self.emit(
            Event::error("spawn_failed")
                .with("worker", name.clone())
                .with("error", error)
                .with("counted", false),
        );
        if !shutting_down {
            self.emit(
                Event::info("backoff")
                    .with("worker", name)
                    .with("ms", delay_ms),
            );
        }
    }

    fn on_spawn_failed(
        &mut self,
        index: usize,
        pid: Option<i32>,
        error: &str,
        exit_code: i32,
        now: Millis,
    ) {
        // `--remap-exit` applies to 127 and 126 too (SPEC's exit codes; tini's `-e 127`).
        let reported = remap(&self.mode, Exit::Code(exit_code));
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        w.run = w.run.saturating_add(1);
        w.crash_count = w.crash_count.saturating_add(1);
        w.last_code = Some(reported.shell_code());
        w.last_exit = Some((Exit::Code(exit_code), Cause::SpawnFailed));
        w.forked = None;
        w.phase = Phase::Done;
        let name = w.spec.name.clone();
        let (run, crash_count) = (w.run, w.crash_count);
        if let Some(pid) = pid {
            self.emit(
                Event::info("worker_started")
                    .with("worker", name.clone())
                    .with("pid", pid)
                    .with("run", run),
            );
        }
        self.emit(
            Event::error("spawn_failed")
                .with("worker", name.clone())
                .with("error", error),
        );
        if let Some(pid) = pid {
            self.emit(
                Event::warn("worker_exited")
                    .with("worker", name)
                    .with("pid", pid)
                    .with("code", exit_code)
                    .with("uptime_ms", 0)
                    .with("likely_cause", Cause::SpawnFailed.as_str())
                    .with("crash_count", crash_count),
            );
        }
        // Nothing of this run is left to drain: decide at once.
        let then = self.after_exit(index, Cause::SpawnFailed, false, now);
        self.leave_draining(index, then, now);
    }

    fn on_exited(&mut self, pid: i32, exit: Exit, now: Millis) {
        let found = self
            .workers
            .iter()
            .position(|w| w.running_pid() == Some(pid));
        let Some(index) = found else {
            return;
        };
        let Some(Phase::Running(run)) = self.workers.get(index).map(|w| w.phase.clone()) else {
            return;
        };
        let reported = remap(&self.mode, exit);
        let cause = classify(reported, run.stop, run.sent_signals);
        // SIGKILL that fleet-init did not send while the cgroup counted an OOM kill that no
        // earlier death has claimed: one count, one flag.
        let is_oom_killed = exit == Exit::Signal(libc::SIGKILL)
            && run.stop.is_none()
            && run.sent_signals & signal_bit(libc::SIGKILL) == 0
            && self.claim_oom_kill(run.oom_kills_at_start);
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        let uptime_ms = now.saturating_sub(run.started_at);
        if uptime_ms >= w.spec.stable_run_ms {
            w.crash_count = 0;
        }
        if cause.is_crash() {
            w.crash_count = w.crash_count.saturating_add(1);
        }
        w.last_code = Some(reported.shell_code());
        w.last_exit = Some((exit, cause));
        let mut event = Event::new(level_of(cause), "worker_exited")
            .with("worker", w.spec.name.clone())
            .with("pid", pid);
        event = match exit {
            Exit::Code(code) => event.with("code", code),
            Exit::Signal(signal) => event.with("signal", signals::name(signal)),
        };
        event = event
            .with("uptime_ms", uptime_ms)
            .with("likely_cause", cause.as_str())
            .with("crash_count", w.crash_count);
        if is_oom_killed {
            event = event.with("oom_killed", true);
        }
        let grace_ms = w.spec.stop_grace_ms;
        let (stop_signal, target) = (w.spec.stop_signal, w.spec.signal_target);
        // Whatever is left of its group is stopped before anything else happens to it. The
        // phase changes first, so that a shutdown the exit starts (max crashes) spares the
        // group as it spares every draining worker's; and a group that already got the stop
        // signal (a stop, a shutdown) is not sent it again.
        // A stop already under way goes on with its deadlines; otherwise the group's starts now.
        let stop = match run.stopping {
            Some(stop) => stop.settling(KILL_SETTLE_MS, now),
            None => Stop::asked(
                stop_signal,
                now.saturating_add(grace_ms),
                Some(KILL_SETTLE_MS),
            ),
        };
        w.phase = Phase::Draining {
            pgid: pid,
            stop,
            then: After::StayDown,
        };
        let was_group_signalled = run.stop.is_some() && target == SignalTarget::Group;
        self.emit(event);
        if !was_group_signalled {
            self.stop_group(pid, stop_signal);
        }
        let then = self.after_exit(index, cause, exit.is_success(), now);
        let is_shutting_down = self.shutdown.is_some();
        if let Some(Phase::Draining { then: next, .. }) =
            self.workers.get_mut(index).map(|w| &mut w.phase)
        {
            if !is_shutting_down {
                *next = then;
            }
        }
    }

    /// The stop signal to a whole group, then SIGCONT, so that a stopped process (SIGSTOP,
    /// SIGTSTP, a read from the terminal in the background) acts on it (as systemd does).
    fn stop_group(&mut self, pgid: i32, signal: i32) {
        self.actions.push(Action::SignalGroup { pgid, signal });
        if signal != libc::SIGKILL && signal != libc::SIGCONT {
            self.actions.push(Action::SignalGroup {
                pgid,
                signal: libc::SIGCONT,
            });
        }
    }

    /// Applies the restart rules to an exit of the given cause; emits `max_crashes_exceeded`,
    /// `health_warn` and `backoff` as they apply.
    /// `is_success`: the run exited 0 (a oneshot that a forwarded signal ended is `clean_exit`,
    /// not counted as a crash, but it did not complete).
    fn after_exit(&mut self, index: usize, cause: Cause, is_success: bool, now: Millis) -> After {
        if self.shutdown.is_some() {
            return After::StayDown;
        }
        if self
            .workers
            .get(index)
            .is_some_and(|w| control::is_manual(cause, w.is_held_down))
        {
            return self.after_manual_stop(index, now);
        }
        let Some(w) = self.workers.get_mut(index) else {
            return After::StayDown;
        };
        let spec = &w.spec;
        // A oneshot that exited 0 is completed: what is after it may start; never again.
        if spec.oneshot && cause == Cause::CleanExit && is_success {
            w.outcome = Outcome::Clean;
            return After::StayDown;
        }
        // Done with its job: a service that ended cleanly once it had been ready (one that
        // never was is no dependency's *ready*: down for good, it fails them); a oneshot only
        // by exiting 0, above.
        let is_clean = cause == Cause::CleanExit && !spec.oneshot && w.order.is_ready;
        if cause.is_crash() && w.crash_count >= spec.max_crashes {
            w.outcome = Outcome::Failed;
            let event = Event::error("max_crashes_exceeded")
                .with("worker", spec.name.clone())
                .with("crash_count", w.crash_count)
                .with("max_crashes", spec.max_crashes);
            let shuts_down = spec.on_max_crashes == OnMaxCrashes::Shutdown;
            self.emit(event);
            if shuts_down {
                let code = match self.mode {
                    Mode::Config => Some(1),
                    Mode::Single { .. } => None,
                };
                self.begin_shutdown("max_crashes_exceeded", code, now);
            }
            return After::StayDown;
        }
        let restarts = match spec.restart {
            RestartPolicy::Always => true,
            // A oneshot that did not complete runs again, whatever ended it.
            RestartPolicy::OnFailure => cause != Cause::CleanExit || spec.oneshot,
            RestartPolicy::Never => false,
        };
        if !restarts {
            w.outcome = if is_clean {
                Outcome::Clean
            } else {
                Outcome::Failed
            };
            return After::StayDown;
        }
        let delay_ms = if cause.is_clean_class() {
            let (delay_ms, warning) = w.record_clean_restart(now);
            if let Some(event) = warning {
                self.actions.push(Action::Emit(event));
            }
            delay_ms
        } else {
            backoff_ms(spec.backoff_initial_ms, spec.backoff_max_ms, w.crash_count)
        };
        let event = Event::info("backoff")
            .with("worker", w.spec.name.clone())
            .with("ms", delay_ms);
        self.emit(event);
        After::RestartAt(now.saturating_add(delay_ms))
    }

    /// Over its limit: the worker is stopped like any stop (signal, grace, SIGKILL); its exit
    /// will be a `watchdog` one, budgeted like a clean exit.
    fn on_memory_sample(&mut self, index: usize, pid: i32, memory: &TreeMemory, now: Millis) {
        let Some(w) = self.workers.get(index) else {
            return;
        };
        let Phase::Running(run) = &w.phase else {
            return;
        };
        if run.pid != pid || run.stop.is_some() {
            return;
        }
        if memory.source.is_some() {
            if let Some(w) = self.workers.get_mut(index) {
                w.memory_bytes = Some(memory.total_bytes);
            }
        }
        let Some(w) = self.workers.get(index) else {
            return;
        };
        let Some(max_rss_mb) = w.spec.max_rss_mb else {
            return;
        };
        if let Some(event) = crate::watchdog::check(&w.spec.name, pid, memory, max_rss_mb) {
            self.emit(event);
            self.stop_worker(index, StopReason::Watchdog, now);
        }
    }

    fn on_group_empty(&mut self, index: usize, now: Millis) {
        let Some(w) = self.workers.get(index) else {
            return;
        };
        if let Phase::Draining { then, .. } = w.phase {
            self.leave_draining(index, then, now);
        }
    }

    fn leave_draining(&mut self, index: usize, then: After, now: Millis) {
        let shutting_down = self.shutdown.is_some();
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        if let Phase::Draining { pgid, .. } = w.phase {
            self.actions.push(Action::Released { pid: pgid });
        }
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        w.phase = match then {
            After::RestartAt(at) if !shutting_down => Phase::Waiting {
                start_at: at.max(now),
            },
            _ => Phase::Done,
        };
        // A restart due now happens in this same step: no extra loop turn for a clean exit.
        if matches!(w.phase, Phase::Waiting { start_at } if start_at <= now) {
            self.tick_worker(index, now);
        }
    }

    fn on_signal(&mut self, signal: i32, now: Millis) {
        match signal {
            libc::SIGCHLD => {}
            libc::SIGTERM | libc::SIGINT => self.on_stop_signal(signal, now),
            // Images built on nginx inherit `STOPSIGNAL SIGQUIT`: in config mode it stops
            // everything; with a single command it is the child's to act on, as under tini.
            libc::SIGQUIT if self.mode == Mode::Config => self.on_stop_signal(signal, now),
            _ => self.forward(signal),
        }
    }

    /// What `Input::Signal(signal)` makes the core do first, where that is certain before the
    /// signal comes and is a signal to a worker: a single command's running child gets every
    /// signal as it is (tini's way), the first SIGTERM/SIGINT too (it begins the shutdown). The
    /// runtime sends it the moment it wakes, as catatonit goes from its read of the signalfd
    /// straight to kill(2), and then feeds `SignalSentAhead`, handled from the same state.
    /// `None` where the answer takes more: config mode (stop order, a stop signal per worker),
    /// a repeated stop signal (the kill), a child not exec'd yet or already stopping, SIGCHLD,
    /// and the job-control signals, around which the runtime does more.
    /// Whether fleet-init sent `signal` to the running worker whose main process is `pid`.
    pub fn has_sent(&self, pid: i32, signal: i32) -> bool {
        self.workers.iter().any(|w| match &w.phase {
            Phase::Running(run) => run.pid == pid && run.sent_signals & signal_bit(signal) != 0,
            _ => false,
        })
    }

    /// Single-command mode: a forwarded stop signal is followed by SIGCONT only for a child
    /// known to be stopped (`Input::JobState`).
    pub fn is_single(&self) -> bool {
        matches!(self.mode, Mode::Single { .. })
    }

    pub fn first_signal_action(&self, signal: i32) -> Option<Action> {
        let is_plain = !matches!(signal, libc::SIGCHLD | libc::SIGCONT | libc::SIGSTOP)
            && !signals::JOB_CONTROL.contains(&signal);
        let (Mode::Single { .. }, [w], true) = (&self.mode, self.workers.as_slice(), is_plain)
        else {
            return None;
        };
        let Phase::Running(run) = &w.phase else {
            return None;
        };
        let is_stop = matches!(signal, libc::SIGTERM | libc::SIGINT);
        let is_forwarded = match &self.shutdown {
            // The first stop signal: the shutdown forwards it to a child not yet stopping.
            None if is_stop => run.stop.is_none(),
            None => true,
            // During the shutdown another signal (another stop signal too) is forwarded; the
            // same stop signal again is the kill.
            Some(shutdown) => shutdown.first_signal != Some(signal),
        };
        is_forwarded.then(|| signal_worker(&w.spec, run.pid, signal))
    }

    /// A shutdown signal: the first starts the shutdown, a second skips the rest of the grace.
    /// With a single command only the same signal again counts as a second one: tini and
    /// dumb-init forward every signal to the child, so `SIGINT` then `SIGTERM` reaches it twice
    /// instead of killing it.
    fn on_stop_signal(&mut self, signal: i32, now: Millis) {
        let first = self.shutdown.as_ref().map(|shutdown| shutdown.first_signal);
        match (first, &self.mode) {
            (None, _) => {
                let reason = signals::name(signal);
                self.begin_shutdown_by_signal(&reason, signal, now);
            }
            (Some(first), Mode::Single { .. }) if first != Some(signal) => self.forward(signal),
            (Some(_), _) => self.skip_grace(now),
        }
    }

    fn forward(&mut self, signal: i32) {
        let mut names = Vec::new();
        for w in &mut self.workers {
            // A start not yet confirmed gets it too, as tini's child does from its fork on.
            let Some(pid) = w.live_pid() else { continue };
            names.push(Value::from(w.spec.name.clone()));
            self.actions.push(signal_worker(&w.spec, pid, signal));
            match &mut w.phase {
                Phase::Running(run) => run.note_sent(signal),
                Phase::Starting => w.sent_while_starting |= signal_bit(signal),
                _ => {}
            }
        }
        self.emit(
            Event::info("signal_forwarded")
                .with("signal", signals::name(signal))
                .with("workers", names),
        );
    }

    /// Asks a running worker to stop with its stop signal; SIGKILL after its grace.
    fn stop_worker(&mut self, index: usize, reason: StopReason, now: Millis) {
        self.stop_worker_with(index, reason, None, now);
    }

    fn stop_worker_with(
        &mut self,
        index: usize,
        reason: StopReason,
        signal: Option<i32>,
        now: Millis,
    ) {
        let Some(w) = self.workers.get_mut(index) else {
            return;
        };
        let Phase::Running(run) = &mut w.phase else {
            return;
        };
        run.stop = Some(reason);
        run.sample_at = None;
        // The worker's own stop signal is followed by SIGCONT, so that a stopped process can
        // act on it (SPEC, as systemd does). A forwarded one (a single command's, as tini and
        // dumb-init forward it) goes alone unless the child is stopped: a running child then
        // sees exactly the signals it was sent, as under tini. Its main process's exit is
        // certain to come, so a kill is waited out (no settle time).
        let is_forwarded = signal.is_some() && !run.is_stopped;
        let signal = signal.unwrap_or(w.spec.stop_signal);
        let (stop, order) = Stop::begin(signal, w.spec.stop_grace_ms, None, now);
        run.stopping = Some(stop);
        let pid = run.pid;
        match order {
            Order::Signal(signal) => {
                self.actions.push(signal_worker(&w.spec, pid, signal));
                if !is_forwarded && signal != libc::SIGCONT {
                    self.actions
                        .push(signal_worker(&w.spec, pid, libc::SIGCONT));
                }
            }
            // SIGKILL as its stop signal: the group and the process, as at a grace's end.
            _ => {
                self.actions
                    .push(signal_worker(&w.spec, pid, libc::SIGKILL));
            }
        }
    }

    fn finish_if_nothing_left(&mut self, now: Millis) {
        // Workers stopped on request keep fleet-init up until started again (supervisorctl).
        if self.shutdown.is_none()
            && self.workers.iter().all(|w| w.phase == Phase::Done)
            && !self.workers.iter().any(|w| w.is_held_down)
        {
            self.begin_shutdown("workers_finished", None, now);
        }
    }
}

/// The action that delivers a signal to a worker by its `signal_target`.
fn signal_worker(spec: &WorkerSpec, pid: i32, signal: i32) -> Action {
    match spec.signal_target {
        SignalTarget::Group => Action::SignalGroup { pgid: pid, signal },
        SignalTarget::Process => Action::SignalProcess { pid, signal },
    }
}

/// `--remap-exit`: the listed shell codes are reported as exit 0.
fn remap(mode: &Mode, exit: Exit) -> Exit {
    match mode {
        Mode::Single { remap_exit } if remap_exit.contains(&exit.shell_code()) => Exit::Code(0),
        _ => exit,
    }
}

fn level_of(cause: Cause) -> crate::events::Level {
    match cause {
        Cause::CleanExit | Cause::Shutdown | Cause::Stopped => crate::events::Level::Info,
        Cause::Watchdog | Cause::Crash | Cause::SpawnFailed | Cause::Unhealthy => {
            crate::events::Level::Warn
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_order;
