//! The one imperative loop: sleep until a signal or the supervisor's next deadline, drain
//! signals, reap every zombie, feed the supervisor, carry out its actions. Once running it
//! never ends the program on an error: every failure is logged and the loop goes on.

use crate::config::probes::ProbeKind;
use crate::control::ControlServer;
use crate::events::{self, Event};
use crate::exit::Exit;
use crate::handoff::Registry;
use crate::job_control::JobControl;
use crate::orphans::leftovers::{self, Scope};
use crate::output::Output;
use crate::pidfd;
use crate::probes::Probes;
use crate::procscan;
use crate::signals::{self, SignalInbox};
use crate::spawn::{self, SpawnOptions};
use crate::supervisor::{Action, Input, Millis, Supervisor};
use crate::watchdog::oom::OomCounter;
use crate::zombies;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::killpg;
use nix::unistd::Pid;
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

const PROC: &str = "/proc";
/// How long before a drain that could not be settled is looked at again, and how many times.
const RECHECK_MS: Millis = 2;
const MAX_RECHECKS: u32 = 5;
/// How long into a single command's shutdown its group is looked at for stopped members.
const MEMBERS_CHECK_MS: Millis = 50;
/// The least time the workers' last output lines get to go out after the last process is gone,
/// even when the shutdown's grace is already over. The final event's wait for room comes out
/// of the same time: a shutdown ends at most this long after its grace (9 s with the default
/// 8 s grace, under Docker's and Kubernetes' 10 s), however stalled the reader.
const FINAL_FLUSH_MS: Millis = 1000;
/// The longest the final event waits for room in a slow reader's pipe.
const FINAL_EVENT_WAIT_MS: Millis = 1000;
/// Of the output's time, what is kept for the end of a line cut short and the final event.
const FINAL_EVENT_RESERVE_MS: Millis = 200;

/// Everything the loop needs besides the supervisor.
pub struct Runtime {
    supervisor: Supervisor,
    inbox: SignalInbox,
    started: Instant,
    scope: Scope,
    spawn_options: SpawnOptions,
    exit_code: Option<i32>,
    /// A worker was spawned after the last reap: its ECHILD verdict is stale.
    has_spawned_since_reap: bool,
    /// Located after the first turn, which forks the first worker: its /proc and cgroup reads
    /// (~15 system calls) then run beside that worker's exec, not before its fork.
    oom_counter: Option<OomCounter>,
    /// The group the last group signal found empty (ESRCH), within one turn's actions.
    empty_group: Option<i32>,
    /// One /proc scan serves every memory sample of a turn.
    scan_of_turn: Option<Vec<procscan::ProcStat>>,
    /// fleet-init's children as the draining groups' checks of this turn read them (once).
    children_of_turn: Option<Vec<leftovers::Child>>,
    /// A single command's shutdown looked for stopped members of the child's group (once).
    has_continued_members: bool,
    /// When it looks, if the child is still there by then.
    members_check_at: Option<Millis>,
    /// The child that was given the terminal (its group's id), until it exits.
    terminal_pgid: Option<i32>,
    registry: Registry,
    /// The last reap found children (or a spawn made one since).
    has_children: bool,
    /// /proc/self names this process: the scans see this PID namespace.
    is_proc_ours: bool,
    /// Escaped leftovers of draining workers, and the signal each was sent last (the stop
    /// signal, then SIGKILL once the grace is over).
    stopped_leftovers: BTreeMap<i32, i32>,
    /// Processes the shutdown signalled that are not fleet-init's children (`docker exec`'d
    /// ones, whose parent is outside the namespace): waitpid cannot see them exit, their
    /// pidfds can. The shutdown is complete only once they are gone too.
    awaited: Vec<(i32, OwnedFd)>,
    /// The shutdown's signal to every other process, due after this turn's reap: a worker
    /// that died of the group's signal meanwhile (the yield gives it the CPU) is reaped first,
    /// and then, as PID 1, kill(-1, 0) says whether anybody at all is left to scan /proc for.
    others_due: Option<(i32, Vec<i32>)>,
    /// Forked workers whose exec is not confirmed yet, by worker.
    starting: Vec<(usize, spawn::Started)>,
    /// Inputs that carrying out actions produced, waiting for the core (see `feed`).
    results: VecDeque<Input>,
    /// Draining workers whose group looked empty while a child could not be told apart, with
    /// how many times it was looked at again.
    rechecks: BTreeMap<usize, u32>,
    /// When to look again at such a drain.
    recheck_at: Option<Millis>,
    /// Set by the test-only fault injection: end as if something went badly wrong.
    abnormal_end: Option<i32>,
    job_control: JobControl,
    /// tini's `-w`: warn when reaping a zombie that was not a worker.
    is_warn_on_reap: bool,
    /// Readiness and health checks in flight, and notify_fd pipes.
    probes: Probes,
    /// `fleet-init ctl`'s socket, served from this loop.
    control: ControlServer,
    /// Where the control socket goes, until `open_control` opens it.
    control_dir: Option<PathBuf>,
    /// A signal of the actions being carried out reached someone: yield before the next
    /// non-signal action (see `yield_to_receivers`). A group already empty is no one to yield to.
    has_delivered: bool,
    /// The signal `send_ahead` sent on before the turn that feeds it.
    sent_ahead: Option<i32>,
    /// The one start there will be: once it runs, fleet-init drops its inherited descriptors.
    is_last_start: bool,
    /// The last poll saw the control socket or a client ready (true for the first turn).
    is_control_due: bool,
    /// The last poll saw an output pipe or a waiting stream ready (true for the first turn).
    is_output_due: bool,
    /// The pipes of the `jsonl` workers and what their lines wait for.
    output: Output,
    /// `shutdown_complete`, held until the workers' output is written: it is the last line.
    final_event: Option<Event>,
    /// When the shutdown's last writes must be done (`finish_output` sets it).
    final_end: Millis,
}

/// How the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Everything is gone: exit with this code.
    Exit(i32),
    /// Ended with processes possibly left: reap them first, then exit with this code.
    Abnormal(i32),
}

impl Runtime {
    pub fn new(
        supervisor: Supervisor,
        inbox: SignalInbox,
        spawn_options: SpawnOptions,
        registry: Registry,
        is_proc_ours: bool,
    ) -> Runtime {
        let self_pid = std::process::id();
        let self_pid = i32::try_from(self_pid).unwrap_or(i32::MAX);
        Runtime {
            supervisor,
            inbox,
            started: Instant::now(),
            scope: Scope {
                self_pid,
                is_pid1: self_pid == 1,
            },
            spawn_options,
            exit_code: None,
            has_spawned_since_reap: false,
            oom_counter: None,
            empty_group: None,
            scan_of_turn: None,
            children_of_turn: None,
            has_continued_members: false,
            members_check_at: None,
            terminal_pgid: None,
            registry,
            awaited: Vec::new(),
            others_due: None,
            results: VecDeque::new(),
            starting: Vec::new(),
            rechecks: BTreeMap::new(),
            recheck_at: None,
            stopped_leftovers: BTreeMap::new(),
            is_proc_ours,
            has_children: false,
            abnormal_end: None,
            job_control: JobControl::default(),
            is_warn_on_reap: false,
            probes: Probes::default(),
            control: ControlServer::disabled(),
            control_dir: None,
            has_delivered: false,
            sent_ahead: None,
            is_last_start: false,
            is_control_due: true,
            is_output_due: true,
            output: Output::default(),
            final_event: None,
            final_end: 0,
        }
    }

    /// tini's and dumb-init's behaviours: job control and `-w`.
    pub fn set_dropin(&mut self, job_control: JobControl, is_warn_on_reap: bool) {
        self.job_control = job_control;
        self.is_warn_on_reap = is_warn_on_reap;
    }

    /// The control socket in `state_dir`, opened once the first workers are forked (a client
    /// has nothing to ask before that, and the socket's inode write then overlaps their exec).
    pub fn set_control(&mut self, state_dir: PathBuf) {
        self.control_dir = Some(state_dir);
    }

    /// Opens the control socket asked for by `set_control`, once; without it (reported once)
    /// fleet-init goes on. Before the first sleep, so before any `worker_started`: a client
    /// that waited for that event finds the socket. True the one time it opened (or tried
    /// to): the start is over then.
    fn open_control(&mut self) -> bool {
        let Some(dir) = self.control_dir.take() else {
            return false;
        };
        let (server, event) = ControlServer::open(&dir);
        if let Some(event) = event {
            events::emit(&event);
        }
        self.control = server;
        self.is_control_due = true;
        true
    }

    /// A single command never restarted: its start is the last one that needs the inherited
    /// descriptors.
    pub fn close_inherited_fds_after_start(&mut self, is_last_start: bool) {
        self.is_last_start = is_last_start;
    }

    fn now(&self) -> Millis {
        Millis::try_from(self.started.elapsed().as_millis()).unwrap_or(Millis::MAX)
    }

    /// Runs until the supervisor says exit.
    pub fn run(&mut self) -> Ending {
        loop {
            let did_act = self.turn();
            self.locate_oom_counter();
            if let Some(code) = self.exit_code {
                self.signal_others_due();
                self.finish_output();
                // Nothing is left below fleet-init: the generation leaves nothing to reap, and
                // the file goes without a last write of its now empty list.
                self.registry.remove();
                self.control.close();
                if let Some(event) = self.final_event.take() {
                    let left = self.final_end.saturating_sub(self.now());
                    let wait = u16::try_from(left.min(FINAL_EVENT_WAIT_MS)).unwrap_or(0);
                    events::emit_final_within(&event, wait);
                }
                return Ending::Exit(code);
            }
            self.persist_registry();
            if self.open_control() {
                // `init_started`, if nothing since the first forks has written it (any event
                // does, first; an exit before this point writes at least `shutdown_complete`).
                events::release_held();
                crate::startup::release_start_memory();
                // The first workers inherited it; from now on, spawns move there themselves.
                crate::startup::leave_start_directory();
            }
            if let Some(code) = self.abnormal_end {
                self.control.close();
                return Ending::Abnormal(code);
            }
            // Whatever was done may have changed what there is to see (a group now empty, a
            // child already dead): look again before sleeping.
            if !did_act {
                self.sleep();
            }
        }
    }

    /// The cgroup's oom_kill counter, its count now the baseline. Once, after the first turn:
    /// a worker cannot be OOM-killed in the microseconds between its fork and this read, while
    /// it is still on its way to exec, and its first turn's start no longer waits for the read.
    fn locate_oom_counter(&mut self) {
        if self.oom_counter.is_some() {
            return;
        }
        let counter = OomCounter::locate();
        if let Some(count) = counter.initial {
            self.feed(Input::OomKills(count));
        }
        self.oom_counter = Some(counter);
    }

    /// One wake-up: signals, zombies, deadlines, draining groups. True if anything was done.
    fn turn(&mut self) -> bool {
        self.empty_group = None;
        // Starts first: a worker whose exec is confirmed is running for the signals that follow.
        let mut did_act = self.check_starts();
        let mut sent_ahead = self.sent_ahead.take();
        for arrival in self.inbox.drain() {
            log::debug!("received {}", signals::name(arrival.received));
            if let Some(signal) = arrival.acted_as {
                if signal == libc::SIGCONT {
                    self.job_control
                        .on_continue(&self.supervisor.running_pids());
                }
                let input = if sent_ahead.take() == Some(signal) {
                    Input::SignalSentAhead(signal)
                } else {
                    Input::Signal(signal)
                };
                did_act |= self.feed(input);
            }
            self.job_control.after_forwarding(arrival.received);
        }
        self.continue_stopped_members();
        self.is_control_due |= self.inbox.take_io_due();
        // The pipes are read when the poll saw one of them (or a stream with room again); not
        // on every wake-up (a reaped orphan, a timer), where each pipe would only say EAGAIN.
        // A worker's exit reads them again after the reap (below).
        if std::mem::take(&mut self.is_output_due) {
            let wake_fd = self.inbox.wake_fd();
            self.output.service(&|| is_readable(wake_fd));
        } else {
            self.output.flush();
        }
        self.scan_of_turn = None;
        self.probes.kill_groups_of_ended();
        let reaped = zombies::reap_all();
        // Read after the reap, and used only until the next: a child in it that exits stays
        // an unreaped zombie meanwhile, so its pid cannot be reused under it.
        self.children_of_turn = None;
        let worker_pids = self.supervisor.running_pids();
        // After the reap, before the exits are fed: everything a worker wrote before it exited
        // is in its pipe now, and goes out before its `worker_exited` (unless its stream is
        // full). Read only before the reap, a line written between that read and the exit came
        // after the event (3 of 5 `podman stop`s of a worker that says goodbye on SIGTERM).
        // Read to the end of what is there, not cut short by a signal waiting (the exit's own
        // SIGCHLD from a worker's child, say): a file as stdout had 44,000 of 200,000 lines of
        // an exited worker after its `worker_exited`.
        if reaped
            .exits
            .iter()
            .any(|(pid, _)| worker_pids.contains(pid))
        {
            self.output.drain_after_exit();
        }
        self.job_control.after_reap(&reaped.stopped, &worker_pids);
        let job_states = reaped
            .stopped
            .iter()
            .map(|(pid, _)| (*pid, true))
            .chain(reaped.continued.iter().map(|pid| (*pid, false)));
        for (pid, is_stopped) in job_states {
            if worker_pids.contains(&pid) {
                did_act |= self.feed(Input::JobState { pid, is_stopped });
            }
        }
        self.undo_terminal_stops(&reaped.stopped, &worker_pids);
        if self.is_warn_on_reap {
            for (pid, _) in reaped
                .exits
                .iter()
                .filter(|(pid, _)| !worker_pids.contains(pid) && !self.probes.is_probe(*pid))
            {
                // tini's wording, which its tests look for.
                log::warn!("Reaped zombie process with pid={pid}");
            }
        }
        self.has_spawned_since_reap = false;
        self.has_children = reaped.has_children;
        if reaped
            .exits
            .iter()
            .any(|(_, exit)| *exit == Exit::Signal(libc::SIGKILL))
        {
            if let Some(count) = self.oom_counter.as_ref().and_then(OomCounter::read) {
                did_act |= self.feed(Input::OomKills(count));
            }
        }
        for (pid, _) in &reaped.exits {
            self.stopped_leftovers.remove(pid);
        }
        // Before the exits: a child reaped now has closed its report pipe, so its start is
        // known (exec'd or failed) before its exit is fed.
        did_act |= self.check_starts();
        for (pid, exit) in reaped.exits {
            // A probe's exit is its result, not a worker's exit.
            if self.probes.is_probe(pid) {
                if let Some(result) = self.probes.on_exit(pid, exit) {
                    did_act |= self.feed(result);
                }
                continue;
            }
            self.probes.forget_run(pid);
            if self.terminal_pgid == Some(pid) {
                self.terminal_pgid = None;
                spawn::take_back_terminal(pid);
            }
            did_act |= self.feed(Input::Exited { pid, exit });
        }
        let now = self.now();
        for result in self
            .probes
            .collect()
            .into_iter()
            .chain(self.probes.expire(now))
        {
            did_act |= self.feed(result);
        }
        did_act |= self.feed(Input::Tick);
        did_act |= self.serve_control();
        for (worker, pgid) in self.supervisor.draining_groups() {
            let leftovers = self.escaped_leftovers(worker, pgid);
            if !leftovers.pids.is_empty() || !is_group_empty(pgid) {
                self.stop_leftovers(worker, &leftovers.pids);
            } else if leftovers.is_unsure && self.may_look_again(worker) {
                // A child of ours could not be told apart (caught mid-exec): look again in a
                // moment rather than restart the worker beside an escapee of its own.
            } else {
                self.rechecks.remove(&worker);
                did_act |= self.feed(Input::GroupEmpty { worker });
            }
        }
        // After the exits of this turn's reap, before the verdict on "nobody left": what the
        // shutdown signals now, it waits for.
        self.signal_others_due();
        self.awaited.retain(|(_, pidfd)| !pidfd::has_exited(pidfd));
        if !reaped.has_children && !self.has_spawned_since_reap && self.awaited.is_empty() {
            did_act |= self.feed(Input::ChildrenGone);
        }
        #[cfg(feature = "fault-injection")]
        self.inject_fault();
        did_act
    }

    /// Test-only: `FLEET_INIT_FAULT=panic` panics once a worker runs; `abend:N` ends the loop
    /// abnormally with code N. Both must make fleet-init exec `--reap` before it exits.
    #[cfg(feature = "fault-injection")]
    fn inject_fault(&mut self) {
        if self.supervisor.draining_groups().is_empty() && self.registry.entries().is_empty() {
            return;
        }
        match std::env::var("FLEET_INIT_FAULT").ok().as_deref() {
            Some("panic") => panic!("injected fault (FLEET_INIT_FAULT=panic)"),
            Some(fault) => {
                if let Some(code) = fault.strip_prefix("abend:").and_then(|c| c.parse().ok()) {
                    self.abnormal_end = Some(code);
                }
            }
            None => {}
        }
    }

    /// Requests on the control socket go to the supervisor like any input; its replies are
    /// written in `execute`.
    fn serve_control(&mut self) -> bool {
        // Only when the poll saw the socket or a client move, or a client's deadline is due:
        // not an accept(2) that fails with EAGAIN on every wake-up (one per reaped orphan).
        let now = self.now();
        let is_deadline_due = self
            .control
            .next_deadline()
            .is_some_and(|deadline| deadline <= now);
        if !std::mem::take(&mut self.is_control_due) && !is_deadline_due {
            return false;
        }
        let mut did_act = false;
        for received in self.control.serve(self.now()) {
            did_act |= self.feed(Input::Control {
                client: received.client,
                peer_uid: received.peer_uid,
                request: received.request,
            });
        }
        did_act
    }

    /// The signal that woke the loop goes on at once where the core has decided it goes
    /// (`Supervisor::first_signal_action`), before the turn: catatonit goes from its read of
    /// the signalfd straight to kill(2). The turn's ~3,200 instructions in between, over code
    /// and data the sleep let go cold, made SIGTERM → child 17 µs slower (ftrace, 40 runs).
    fn send_ahead(&mut self) {
        let Some(signal) = self.inbox.waited_acted_as() else {
            return;
        };
        // The forward alone goes ahead: a child that turns out stopped gets its SIGCONT when
        // the reap reports the stop (`Input::JobState` during its stop). A job-state peek
        // here (waitid, on cold caches) added ~14 µs to SIGTERM → child.
        if let Some(action) = self.supervisor.first_signal_action(signal) {
            self.execute(action);
            self.sent_ahead = Some(signal);
            if std::mem::take(&mut self.has_delivered) {
                yield_to_receivers();
            }
            log::debug!("sent {} on ahead of the turn", signals::name(signal));
        }
    }

    /// A single command's shutdown forwards the very signal fleet-init got to the child's
    /// group, alone (a running child sees exactly what it was sent, as under tini); a stopped
    /// process in that group (`sleep 1000 & kill -STOP $!`) could not act on it and took the
    /// whole grace, then SIGKILL. Once per shutdown, when a member of the group is stopped,
    /// the group gets SIGCONT after the signal, as the SPEC's stop rule gives it in config mode.
    /// The look (a /proc scan, ~0.1 ms here) waits `MEMBERS_CHECK_MS`: a child that exits on
    /// the signal at once, the usual case, ends the shutdown without it (the scan in that
    /// turn made the fast-child shutdown ×1.27 of catatonit's, against ×1.10).
    fn continue_stopped_members(&mut self) {
        if self.has_continued_members
            || !self.is_proc_ours
            || !self.supervisor.is_single()
            || !self.supervisor.is_shutting_down()
        {
            return;
        }
        let now = self.now();
        match self.members_check_at {
            None => {
                self.members_check_at = Some(now.saturating_add(MEMBERS_CHECK_MS));
                return;
            }
            Some(at) if now < at => return,
            Some(_) => {}
        }
        self.members_check_at = None;
        self.has_continued_members = true;
        let is_group = self
            .supervisor
            .spec(0)
            .is_some_and(|spec| spec.signal_target == crate::config::SignalTarget::Group);
        // The child itself may be gone by now (a shell dies of the SIGTERM at once), its
        // group not: while the group has a member its number cannot be reused.
        let pgid = self.supervisor.running_pids().first().copied().or_else(|| {
            self.supervisor
                .draining_groups()
                .first()
                .map(|(_, pgid)| *pgid)
        });
        let (Some(pgid), true) = (pgid, is_group) else {
            return;
        };
        // A scan of its own: the turn's may be an earlier turn's.
        let table = procscan::scan(Path::new(PROC));
        if table.iter().any(|p| p.pgrp == pgid && p.state == 'T') {
            log::debug!("a process of group {pgid} is stopped: SIGCONT after the stop signal");
            self.has_delivered |= signal_group(pgid, libc::SIGCONT);
        }
    }

    /// As PID 1 there is no shell above to resume a job: a single command's child that its
    /// terminal stopped (Ctrl-Z under `docker run -it`, SIGTSTP that fleet-init did not
    /// forward) would stay stopped for good, and Ctrl-C after it would not reach it. Its group
    /// is continued at once, so Ctrl-Z does nothing there, as under dumb-init. A SIGTSTP that
    /// was forwarded (`docker kill -s TSTP`), SIGSTOP, and a stop without a terminal are left
    /// as they are.
    fn undo_terminal_stops(&mut self, stopped: &[(i32, i32)], worker_pids: &[i32]) {
        if !self.scope.is_pid1 || !self.spawn_options.foreground {
            return;
        }
        for (pid, signal) in stopped {
            if *signal != libc::SIGTSTP
                || !worker_pids.contains(pid)
                || self.supervisor.has_sent(*pid, libc::SIGTSTP)
            {
                continue;
            }
            // SAFETY: a plain call on fd 0; without a terminal it answers no.
            if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
                continue;
            }
            log::debug!("worker {pid} stopped by its terminal as PID 1: continued");
            signal_group(*pid, libc::SIGCONT);
        }
    }

    /// At most one write per turn, whatever the turn changed.
    fn persist_registry(&mut self) {
        if let Some(event) = self.registry.persist(self.now()) {
            events::emit(&event);
        }
    }

    fn sleep(&mut self) {
        // Lines read and not rendered yet, and room for them: no sleep, but a poll all the same
        // (a zero timeout), so that clients, probes and starts are seen during a flood (a
        // health check's connect once timed out behind one).
        let has_backlog = self.output.has_backlog_with_room();
        self.is_output_due |= has_backlog;
        let recheck_at = self.recheck_at.take();
        let deadlines = [
            self.supervisor.next_deadline(),
            self.registry.next_retry(),
            recheck_at,
            self.members_check_at,
            self.probes.next_deadline(),
            self.control.next_deadline(),
            self.output
                .stall_retry_ms()
                .map(|ms| self.now().saturating_add(ms)),
        ];
        let wait_ms = deadlines
            .into_iter()
            .flatten()
            .min()
            .map(|deadline| deadline.saturating_sub(self.now()));
        // Nothing but signals can wake the loop (no pipe, pidfd, probe or client; connections
        // raise SIGIO): one sigtimedwait, as catatonit's one read, instead of a poll and a read.
        if !has_backlog
            && self.awaited.is_empty()
            && self.starting.is_empty()
            && self.control.is_signal_driven()
            && self.output.is_quiet()
            && !self.probes.has_poll_fds()
        {
            self.inbox
                .wait(wait_ms.map(std::time::Duration::from_millis));
            self.send_ahead();
            return;
        }
        let timeout = match wait_ms {
            _ if has_backlog => PollTimeout::ZERO,
            None => PollTimeout::NONE,
            Some(ms) => PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = vec![PollFd::new(self.inbox.wake_fd(), PollFlags::POLLIN)];
        fds.extend(
            self.awaited
                .iter()
                .map(|(_, pidfd)| PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)),
        );
        let control_from = fds.len();
        fds.extend(self.control.poll_fds());
        let control_to = fds.len();
        fds.extend(self.output.poll_fds());
        let output_to = fds.len();
        fds.extend(
            self.starting
                .iter()
                .map(|(_, started)| PollFd::new(started.as_fd(), PollFlags::POLLIN)),
        );
        let probes_from = fds.len();
        fds.extend(self.probes.poll_fds());
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => log::error!("poll failed: {errno}; going on"),
        }
        let probe_events: Vec<PollFlags> = fds
            .iter()
            .skip(probes_from)
            .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
            .collect();
        let has_events = |range: std::ops::Range<usize>| {
            fds.get(range)
                .unwrap_or_default()
                .iter()
                .any(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
        };
        self.is_control_due |= has_events(control_from..control_to);
        self.is_output_due |= has_events(control_to..output_to);
        drop(fds);
        self.probes.note_events(&probe_events);
    }

    /// Hands one input to the supervisor and carries out what it asks; what carrying it out
    /// produces (a spawn's outcome, a memory reading) comes back as queued inputs, handled one at
    /// a time in this same loop, never as a nested call. True if anything was asked.
    fn feed(&mut self, input: Input) -> bool {
        let mut did_act = false;
        self.results.push_back(input);
        while let Some(input) = self.results.pop_front() {
            let now = self.now();
            let actions = self.supervisor.handle(input, now);
            did_act |= !actions.is_empty();
            for action in actions {
                let is_signal = matches!(
                    action,
                    Action::SignalGroup { .. } | Action::SignalProcess { .. }
                );
                if !is_signal && std::mem::take(&mut self.has_delivered) {
                    yield_to_receivers();
                }
                self.execute(action);
            }
            if std::mem::take(&mut self.has_delivered) {
                yield_to_receivers();
            }
        }
        did_act
    }

    fn execute(&mut self, action: Action) {
        match action {
            // The shutdown's summary is the last line: it waits for the workers' output.
            Action::Emit(event) if event.name == "shutdown_complete" => {
                self.final_event = Some(event);
            }
            Action::Emit(event) => events::emit(&event),
            Action::Spawn { worker } => {
                self.spawn(worker);
                self.has_children = true;
            }
            Action::SignalProcess { pid, signal } => {
                if signal == libc::SIGKILL {
                    self.count_killed(|p| p.pid == pid);
                }
                self.has_delivered |= signal_process(pid, signal);
            }
            Action::SignalGroup { pgid, signal } => {
                if signal == libc::SIGKILL {
                    self.count_killed(|p| p.pgrp == pgid);
                    self.kill_leftovers_of_group(pgid);
                }
                // The stop signal found the group empty (its main process gone, nothing left
                // in it): the SIGCONT that follows it would find it empty too.
                if signal == libc::SIGCONT && self.empty_group == Some(pgid) {
                    return;
                }
                let is_delivered = signal_group(pgid, signal);
                self.empty_group = (!is_delivered).then_some(pgid);
                self.has_delivered |= is_delivered;
            }
            Action::SignalOthers {
                signal,
                spare_groups,
            } => self.others_due = Some((signal, spare_groups)),
            Action::KillAll => {
                let killed = self.signal_others(libc::SIGKILL, &[]);
                self.note_killed(killed);
            }
            Action::Exit { code } => self.exit_code = Some(code),
            Action::Reply { client, reply } => self.control.reply(client, &reply),
            Action::Released { pid } => self.registry.forget_pid(pid),
            // A foreign /proc would give a stranger's memory: no reading, no action.
            Action::SampleMemory { .. } if !self.is_proc_ours => {}
            Action::Probe {
                worker,
                pid,
                kind,
                timeout_ms,
            } => self.probe(worker, pid, &kind, timeout_ms),
            Action::SampleMemory { worker, pid } => {
                let table = self
                    .scan_of_turn
                    .get_or_insert_with(|| procscan::scan(Path::new(PROC)));
                let memory = procscan::tree_memory(Path::new(PROC), table, pid);
                self.results.push_back(Input::MemorySample {
                    worker,
                    pid,
                    memory,
                });
            }
        }
    }

    /// Forks the worker and records it at once; whether it exec'd comes back through its
    /// report pipe, polled with everything else (`check_starts`), so the registry write and
    /// the child's exec overlap and an exec that hangs never holds up the loop.
    fn spawn(&mut self, worker: usize) {
        let Some(spec) = self.supervisor.spec(worker) else {
            log::error!("spawn asked for unknown worker #{worker}");
            return;
        };
        // No write before the fork: the handoff file already holds this generation's id, which
        // the new process carries in its environment. Its identity follows in this turn's write.
        let run = self.supervisor.next_run(worker);
        let notify_fd = match spec.ready.as_ref().map(|ready| &ready.kind) {
            Some(ProbeKind::NotifyFd(target)) => match self.probes.prepare_notify(worker) {
                Ok(write) => Some((write, *target)),
                Err(errno) => {
                    log::error!("worker {}: notify_fd pipe: {errno}", spec.name);
                    None
                }
            },
            _ => None,
        };
        let fds: Vec<(i32, i32)> = notify_fd
            .iter()
            .map(|(write, target)| (write.as_raw_fd(), *target))
            .collect();
        let started = spawn::start_with_fds(spec, self.spawn_options, &fds);
        // Only the worker holds the write end now: its exit closes the pipe.
        drop(notify_fd);
        if !fds.is_empty() {
            let pid = started.as_ref().ok().map(|started| started.pid);
            self.probes.bind_notify(worker, pid);
        }
        match started {
            Ok(mut started) => {
                if started.has_terminal {
                    self.terminal_pgid = Some(started.pid);
                }
                if let Some(ends) = started.output.take() {
                    self.output.add(&spec.name, ends);
                }
                self.has_spawned_since_reap = true;
                // Without our own /proc there is no start time to record, and so no identity.
                // The start time is the fork's: exec does not change it.
                let start_time = procscan::read_stat(Path::new(PROC), started.pid)
                    .found()
                    .filter(|_| self.is_proc_ours)
                    .map(|stat| stat.start_time);
                if let Some(start_time) = start_time {
                    self.registry.add(
                        &spec.name,
                        run,
                        started.pid,
                        start_time,
                        &spec.display_command(),
                    );
                }
                self.results.push_back(Input::Forked {
                    worker,
                    pid: started.pid,
                });
                self.starting.push((worker, started));
            }
            Err(failure) => self.results.push_back(spawn_failed(worker, failure)),
        }
    }

    /// Feeds the outcome of every start whose report pipe has spoken. True if any had.
    fn probe(&mut self, worker: usize, pid: i32, kind: &ProbeKind, timeout_ms: Millis) {
        let Some(spec) = self.supervisor.spec(worker) else {
            return;
        };
        let now = self.now();
        let answer =
            self.probes
                .start(worker, pid, kind, timeout_ms, spec, self.spawn_options, now);
        if matches!(kind, ProbeKind::Command(_)) {
            // A child of ours now exists: an ECHILD seen before it is stale.
            self.has_spawned_since_reap = true;
            self.has_children = true;
        }
        self.results.extend(answer);
    }

    fn check_starts(&mut self) -> bool {
        let mut did_act = false;
        let mut index = 0;
        while let Some((worker, started)) = self.starting.get(index) {
            let worker = *worker;
            let outcome = match self.supervisor.spec(worker) {
                Some(spec) => spawn::outcome(spec, started),
                None => spawn::Outcome::Execed,
            };
            let input = match outcome {
                spawn::Outcome::Pending => {
                    index += 1;
                    continue;
                }
                spawn::Outcome::Execed => {
                    if std::mem::take(&mut self.is_last_start) {
                        crate::startup::close_inherited_fds();
                    }
                    Input::Spawned {
                        worker,
                        pid: started.pid,
                    }
                }
                spawn::Outcome::Failed(failure) => {
                    // Nothing of a run that never ran stays recorded.
                    self.registry.forget_pid(started.pid);
                    spawn_failed(worker, failure)
                }
            };
            // `remove`, not `swap_remove`: the starts confirmed together are told in the order
            // they were forked (config order), not with the last one moved to the front.
            self.starting.remove(index);
            did_act |= self.feed(input);
        }
        did_act
    }

    /// Everything is gone: the workers' last lines are read to EOF and written out, bounded by
    /// the shutdown's grace (a second SIGTERM/SIGINT ends the wait). What a stalled reader
    /// could not take by then is reported, never dropped silently.
    fn finish_output(&mut self) {
        let now = self.now();
        let grace_end = self.supervisor.grace_ends_at().unwrap_or(now);
        self.final_end = grace_end.max(now.saturating_add(FINAL_FLUSH_MS));
        // The last moments are the final event's, and the end of a line cut by the deadline:
        // the stream ends on whole lines and on `shutdown_complete` whenever the reader moves.
        let mut deadline = self
            .final_end
            .saturating_sub(FINAL_EVENT_RESERVE_MS)
            .max(now);
        loop {
            let wake_fd = self.inbox.wake_fd();
            self.output.service(&|| is_readable(wake_fd));
            if self.output.is_drained() {
                return;
            }
            let now = self.now();
            if now >= deadline {
                break;
            }
            // A stream stalled on a full disk is tried again on its retry, not only at the end.
            let wake_at = self
                .output
                .stall_retry_ms()
                .map_or(deadline, |ms| now.saturating_add(ms).min(deadline));
            let timeout = if self.output.has_backlog_with_room() {
                PollTimeout::ZERO
            } else {
                PollTimeout::try_from(wake_at.saturating_sub(now)).unwrap_or(PollTimeout::MAX)
            };
            {
                let mut fds = vec![PollFd::new(self.inbox.wake_fd(), PollFlags::POLLIN)];
                fds.extend(self.output.poll_fds());
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(errno) => log::error!("poll failed: {errno}; going on"),
                }
            }
            for arrival in self.inbox.drain() {
                if matches!(arrival.acted_as, Some(libc::SIGTERM | libc::SIGINT)) {
                    deadline = now;
                    self.final_end = now;
                }
            }
            // Nothing of ours is left, but PID 1 keeps its table clean while it waits.
            zombies::reap_all();
        }
        let lost = self.output.abandon();
        if lost > 0 {
            events::diagnostic(&format!(
                "fleet-init: {lost} worker output lines could not be written before the end"
            ));
            if let Some(event) = self.final_event.take() {
                self.final_event = Some(event.with("output_lines_lost", lost));
            }
        }
    }

    /// Counts the live processes a SIGKILL is about to hit, for `shutdown_complete.killed`.
    /// Only then is /proc scanned: a SIGKILL is rare and the figure is worth the scan.
    fn count_killed(&mut self, is_target: impl Fn(&procscan::ProcStat) -> bool) {
        if !self.supervisor.is_shutting_down() || !self.is_proc_ours {
            return;
        }
        let table = procscan::scan(Path::new(PROC));
        let pids = table
            .iter()
            .filter(|p| !p.is_zombie() && is_target(p))
            .map(|p| p.pid)
            .collect();
        self.note_killed(pids);
    }

    /// What a shutdown's SIGKILL hit goes to the core, which counts each process once (its
    /// group's, its own and the final SIGKILL may all hit it).
    fn note_killed(&mut self, pids: Vec<i32>) {
        if !self.supervisor.is_shutting_down() || pids.is_empty() {
            return;
        }
        self.results.push_back(Input::Killed(pids));
    }

    /// The grace of a draining worker is over: its escaped leftovers go with its group.
    fn kill_leftovers_of_group(&mut self, pgid: i32) {
        let draining = self.supervisor.draining_groups();
        let Some((worker, _)) = draining.iter().find(|(_, group)| *group == pgid) else {
            return;
        };
        let leftovers = self.escaped_leftovers(*worker, pgid).pids;
        for pid in &leftovers {
            signal_process(*pid, libc::SIGKILL);
        }
        // They count in `shutdown_complete.killed` like the group's own.
        self.note_killed(leftovers);
    }

    /// Schedules another look at a drain that could not be settled, a few times at most.
    fn may_look_again(&mut self, worker: usize) -> bool {
        let looks = self.rechecks.entry(worker).or_insert(0);
        if *looks >= MAX_RECHECKS {
            return false;
        }
        *looks += 1;
        self.recheck_at = Some(self.now().saturating_add(RECHECK_MS));
        true
    }

    fn escaped_leftovers(&mut self, worker: usize, pgid: i32) -> leftovers::Escaped {
        // An escapee is a child of fleet-init (reparented when its parent died, before that
        // parent's exit was reaped): when the last reap said ECHILD, there is none to look for.
        if !self.is_proc_ours || !self.has_children {
            return leftovers::Escaped::default();
        }
        let Some(name) = self.supervisor.spec(worker).map(|spec| spec.name.clone()) else {
            return leftovers::Escaped::default();
        };
        let generation = self.spawn_options.generation.to_string();
        let children = match &self.children_of_turn {
            Some(children) => children,
            None => {
                let mains = self.supervisor.running_pids();
                let children = leftovers::children(Path::new(PROC), self.scope.self_pid, &mains);
                self.children_of_turn.insert(children)
            }
        };
        leftovers::escaped_among(children, &generation, &name, pgid)
    }

    /// The drain's signal once for each escaped leftover: the stop signal within the grace,
    /// SIGKILL after it (once more for one that had the stop signal). They are our unreaped
    /// children, so their pids cannot have been reused.
    fn stop_leftovers(&mut self, worker: usize, leftovers: &[i32]) {
        let Some(signal) = self.supervisor.drain_signal(worker) else {
            return;
        };
        let mut killed = Vec::new();
        for pid in leftovers {
            if self.stopped_leftovers.insert(*pid, signal) == Some(signal) {
                continue;
            }
            signal_process(*pid, signal);
            if signal == libc::SIGKILL {
                killed.push(*pid);
            } else {
                // A stopped process acts on the signal only once continued.
                signal_process(*pid, libc::SIGCONT);
            }
        }
        self.note_killed(killed);
    }

    fn signal_others_due(&mut self) {
        if let Some((signal, spare_groups)) = self.others_due.take() {
            self.signal_others(signal, &spare_groups);
        }
    }

    /// Signals every process left but the spared groups; returns the pids signalled.
    ///
    /// As PID 1 with a /proc that is not this namespace's, the scan would name strangers: the
    /// kernel's kill(-1) (every process of the namespace but init) is used instead. As PID 1,
    /// SIGKILL also goes through kill(-1), which misses nothing forked since the scan.
    fn signal_others(&mut self, signal: i32, spare_groups: &[i32]) -> Vec<i32> {
        // waitpid said ECHILD: nothing is below a subreaper. PID 1 looks anyway: a process
        // `docker exec` started is in the namespace without being anyone's child here.
        if !self.has_children && !self.scope.is_pid1 {
            return Vec::new();
        }
        if !self.is_proc_ours {
            // The pids in a foreign /proc are strangers' here. As PID 1, the kernel's kill(-1)
            // reaches exactly this namespace; otherwise only the workers' groups (signalled
            // by the supervisor) are ours to reach.
            if self.scope.is_pid1 {
                log::warn!("/proc is not this PID namespace's: signalling with kill(-1)");
                signal_process_raw(-1, signal);
            } else {
                log::warn!(
                    "/proc is not this PID namespace's: only the workers' groups get {}",
                    signals::name(signal)
                );
            }
            return Vec::new();
        }
        // As PID 1, kill(-1, 0) reaches every other process of the namespace (zombies too):
        // ESRCH says there is none, and the scan would find nothing.
        if self.scope.is_pid1 && raw_kill(-1, 0) == Err(Errno::ESRCH) {
            return Vec::new();
        }
        let table = procscan::scan_except(Path::new(PROC), self.scope.self_pid);
        let targets = leftovers::targets(&table, self.scope, spare_groups);
        let mut signalled = Vec::with_capacity(targets.len());
        for process in targets
            .iter()
            .filter_map(|pid| procscan::find(&table, *pid))
        {
            // Through a pidfd opened, then checked against the scan: a pid reused since the
            // scan is never hit.
            let Some(pidfd) = pidfd::open(process.pid) else {
                continue; // gone since the scan (or no pidfds: kill(-1) below covers PID 1)
            };
            let is_same = procscan::read_stat(Path::new(PROC), process.pid)
                .found()
                .is_some_and(|now| now.start_time == process.start_time);
            if !is_same {
                continue;
            }
            match pidfd::send(&pidfd, signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(errno) => log::warn!(
                    "kill({}, {}) failed: {errno}",
                    process.pid,
                    signals::name(signal)
                ),
            }
            if signal == libc::SIGTERM {
                // A stopped process acts on its TERM only once continued (as systemd does).
                if let Err(errno) = pidfd::send(&pidfd, libc::SIGCONT) {
                    log::debug!("SIGCONT to {}: {errno}", process.pid);
                }
            }
            signalled.push(process.pid);
            let is_awaited = self.awaited.iter().any(|(pid, _)| *pid == process.pid);
            if process.ppid != self.scope.self_pid && !is_awaited {
                self.awaited.push((process.pid, pidfd));
            }
        }
        if self.scope.is_pid1 && signal == libc::SIGKILL {
            signal_process_raw(-1, signal);
        }
        signalled
    }
}

fn spawn_failed(worker: usize, failure: spawn::SpawnFailure) -> Input {
    Input::SpawnFailed {
        worker,
        pid: failure.pid,
        error: failure.error,
        exit_code: failure.exit_code,
        is_fork_failure: failure.is_fork_failure,
    }
}

/// After a run of signals, before fleet-init's own bookkeeping (an event line, a /proc scan):
/// a receiver woken on this CPU runs now rather than after it. Measured: SIGTERM to PID 1 →
/// the child's receipt, median 197 µs without, against 92 µs for catatonit, which goes straight
/// back to sleep after its kill.
fn yield_to_receivers() {
    // SAFETY: plain syscall, no arguments.
    unsafe { libc::sched_yield() };
}

/// kill(2) by raw number, so real-time signals work too.
fn raw_kill(pid: i32, signal: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall; an invalid pid or signal is an errno, not UB.
    let result = unsafe { libc::kill(pid, signal) };
    if result == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// True when the signal was delivered (someone may now run on it).
fn signal_process(pid: i32, signal: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    signal_process_raw(pid, signal)
}

/// Also for pid -1 (every process the caller may signal; as PID 1, its namespace).
fn signal_process_raw(pid: i32, signal: i32) -> bool {
    match raw_kill(pid, signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(errno) => {
            log::warn!("kill({pid}, {}) failed: {errno}", signals::name(signal));
            false
        }
    }
}

/// True when the signal was delivered to the group (ESRCH: the group is already empty).
fn signal_group(pgid: i32, signal: i32) -> bool {
    pgid > 1 && signal_process_raw(-pgid, signal)
}

/// Whether `fd` has something to read now (a signal waiting on the signalfd).
fn is_readable(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(nix::poll::poll(&mut fds, PollTimeout::ZERO), Ok(ready) if ready > 0)
}

/// A process group with no process left: kill(-pgid, 0) says ESRCH.
fn is_group_empty(pgid: i32) -> bool {
    if pgid <= 1 {
        return true;
    }
    matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}
