//! The supervision rules, driven through `handle` with a fake clock and a simulated runtime.

#[cfg(test)]
use super::*;
use crate::config::WorkerSpec;
use std::collections::HashMap;

/// A runtime stand-in: answers `Spawn` with fresh pids, finds groups empty unless told not
/// to, and records everything the core asked for.
struct Sim {
    sup: Supervisor,
    now: Millis,
    next_pid: i32,
    events: Vec<Event>,
    actions: Vec<Action>,
    exit: Option<i32>,
    pids: HashMap<usize, i32>,
    groups_linger: bool,
    fail_spawns: bool,
    /// Starts stay forked, exec unconfirmed, until the test feeds `Spawned`.
    hold_starts: bool,
}

impl Sim {
    fn new(mode: Mode, specs: Vec<WorkerSpec>) -> Sim {
        let mut sim = Sim {
            sup: Supervisor::new(mode, 8000, specs),
            now: 0,
            next_pid: 100,
            events: Vec::new(),
            actions: Vec::new(),
            exit: None,
            pids: HashMap::new(),
            groups_linger: false,
            fail_spawns: false,
            hold_starts: false,
        };
        sim.feed(Input::Tick);
        sim
    }

    fn config(specs: Vec<WorkerSpec>) -> Sim {
        Sim::new(Mode::Config, specs)
    }

    fn feed(&mut self, input: Input) {
        let actions = self.sup.handle(input, self.now);
        for action in actions {
            self.apply(action);
        }
        if !self.groups_linger {
            for (worker, _) in self.sup.draining_groups() {
                self.feed(Input::GroupEmpty { worker });
            }
        }
    }

    fn apply(&mut self, action: Action) {
        match &action {
            Action::Emit(event) => self.events.push(event.clone()),
            Action::Spawn { worker } => {
                self.next_pid += 1;
                let pid = self.next_pid;
                if self.hold_starts {
                    self.pids.insert(*worker, pid);
                    self.feed(Input::Forked {
                        worker: *worker,
                        pid,
                    });
                } else if self.fail_spawns {
                    self.feed(Input::SpawnFailed {
                        worker: *worker,
                        pid: Some(pid),
                        error: "No such file or directory".into(),
                        exit_code: 127,
                        is_fork_failure: false,
                    });
                } else {
                    self.pids.insert(*worker, pid);
                    self.feed(Input::Spawned {
                        worker: *worker,
                        pid,
                    });
                }
            }
            Action::Exit { code } => self.exit = Some(*code),
            _ => {}
        }
        self.actions.push(action);
    }

    fn exit_worker(&mut self, worker: usize, exit: Exit) {
        let pid = self.pids[&worker];
        self.feed(Input::Exited { pid, exit });
    }

    fn advance(&mut self, ms: Millis) {
        self.now += ms;
        self.feed(Input::Tick);
    }

    /// Jumps to the next deadline, as the loop's sleep would.
    fn sleep(&mut self) {
        let deadline = self.sup.next_deadline().expect("a deadline");
        assert!(deadline >= self.now, "deadline in the past");
        self.now = deadline;
        self.feed(Input::Tick);
    }

    fn named(&self, name: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.name == name).collect()
    }

    fn last(&self, name: &str) -> &Event {
        self.named(name).pop().expect(name)
    }

    fn count(&self, name: &str) -> usize {
        self.named(name).len()
    }

    fn is_running(&self, worker: usize) -> bool {
        self.sup.workers[worker].running_pid().is_some()
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }
}

fn spec(name: &str) -> WorkerSpec {
    WorkerSpec::new(name, vec!["/bin/true".into()], 8000)
}

fn field(event: &Event, key: &str) -> Value {
    event.field(key).cloned().unwrap_or(Value::Null)
}

#[test]
fn alternating_crash_and_clean_exits_trip_max_crashes_at_the_ninth_exit() {
    let mut worker = spec("api");
    worker.backoff_initial_ms = 10;
    let mut sim = Sim::config(vec![worker]);
    for n in 1u32..=9 {
        assert!(sim.is_running(0), "running before exit {n}");
        assert_eq!(
            sim.count("max_crashes_exceeded"),
            0,
            "not tripped before exit {n}"
        );
        let code = if n % 2 == 1 { 1 } else { 0 };
        sim.advance(5);
        sim.exit_worker(0, Exit::Code(code));
        let exited = sim.last("worker_exited");
        let want_count = n.div_ceil(2);
        assert_eq!(field(exited, "crash_count"), want_count, "exit {n}");
        if sim.count("max_crashes_exceeded") == 0 && !sim.is_running(0) {
            sim.sleep();
        }
    }
    let tripped = sim.last("max_crashes_exceeded");
    assert_eq!(field(tripped, "crash_count"), 5);
    assert_eq!(field(tripped, "max_crashes"), 5);
    assert_eq!(sim.count("worker_started"), 9);
    assert_eq!(sim.count("worker_exited"), 9);
    // on_max_crashes: shutdown; nothing is left, so the container ends with 1.
    sim.feed(Input::ChildrenGone);
    assert_eq!(sim.exit, Some(1));
    assert_eq!(
        field(sim.last("shutdown_started"), "reason"),
        "max_crashes_exceeded"
    );
}

#[test]
fn a_hundred_clean_exits_never_trip_and_restart_at_once_within_the_budget() {
    let mut sim = Sim::config(vec![spec("drained")]);
    for _ in 0..100 {
        // One clean exit every 10 s stays within 10 per 60 s.
        sim.advance(10_000);
        sim.exit_worker(0, Exit::Code(0));
        assert!(sim.is_running(0), "restarted in the same step");
        assert_eq!(field(sim.last("backoff"), "ms"), 0);
        assert_eq!(
            field(sim.last("worker_exited"), "likely_cause"),
            "clean_exit"
        );
        assert_eq!(field(sim.last("worker_exited"), "crash_count"), 0);
    }
    assert_eq!(sim.count("max_crashes_exceeded"), 0);
    assert_eq!(sim.count("health_warn"), 0);
    assert_eq!(sim.count("worker_started"), 101);
}

#[test]
fn a_worker_drained_forever_in_a_tight_loop_backs_off_but_never_trips() {
    let mut sim = Sim::config(vec![spec("drained")]);
    for _ in 0..100 {
        sim.exit_worker(0, Exit::Code(0));
        if !sim.is_running(0) {
            sim.sleep();
        }
    }
    assert_eq!(sim.count("max_crashes_exceeded"), 0);
    assert!(sim.count("health_warn") >= 1);
    assert_eq!(sim.count("worker_started"), 101);
    assert_eq!(sim.count("worker_exited"), 100);
}

#[test]
fn the_eleventh_clean_restart_in_a_window_warns_once_and_backs_off() {
    let mut sim = Sim::config(vec![spec("api")]);
    for n in 1..=10 {
        sim.advance(100);
        sim.exit_worker(0, Exit::Code(0));
        assert_eq!(field(sim.last("backoff"), "ms"), 0, "restart {n}");
    }
    assert_eq!(sim.count("health_warn"), 0);
    sim.advance(100);
    sim.exit_worker(0, Exit::Code(0));
    let warn = sim.last("health_warn");
    assert_eq!(field(warn, "reason"), "clean_restart_budget_exceeded");
    assert_eq!(field(warn, "clean_restarts"), 11);
    assert_eq!(field(warn, "clean_restart_budget"), 10);
    assert_eq!(field(sim.last("backoff"), "ms"), 1000);
    assert!(!sim.is_running(0), "waits its backoff");
    sim.sleep();
    assert!(sim.is_running(0));
    sim.exit_worker(0, Exit::Code(0));
    assert_eq!(field(sim.last("backoff"), "ms"), 2000);
    assert_eq!(sim.count("health_warn"), 1, "warned once per stretch");
    // A minute later the window has slid: restarts are immediate again.
    sim.sleep();
    sim.advance(61_000);
    sim.exit_worker(0, Exit::Code(0));
    assert_eq!(field(sim.last("backoff"), "ms"), 0);
    assert!(sim.is_running(0));
    assert_eq!(sim.count("max_crashes_exceeded"), 0);
}

#[test]
fn crash_backoff_doubles_up_to_its_cap() {
    let mut worker = spec("api");
    worker.max_crashes = 100;
    worker.backoff_initial_ms = 1000;
    worker.backoff_max_ms = 8000;
    let mut sim = Sim::config(vec![worker]);
    let mut delays = Vec::new();
    for _ in 0..6 {
        sim.exit_worker(0, Exit::Code(2));
        delays.push(field(sim.last("backoff"), "ms"));
        let before = sim.now;
        sim.sleep();
        assert_eq!(Value::from(sim.now - before), *delays.last().unwrap());
        assert!(sim.is_running(0));
    }
    assert_eq!(delays, [1000, 2000, 4000, 8000, 8000, 8000]);
}

#[test]
fn a_crash_after_a_stable_run_counts_as_one() {
    let mut worker = spec("api");
    worker.stable_run_ms = 60_000;
    worker.backoff_initial_ms = 10;
    let mut sim = Sim::config(vec![worker]);
    for _ in 0..3 {
        sim.exit_worker(0, Exit::Signal(11));
        sim.sleep();
    }
    assert_eq!(field(sim.last("worker_exited"), "crash_count"), 3);
    sim.advance(60_000);
    sim.exit_worker(0, Exit::Code(1));
    assert_eq!(field(sim.last("worker_exited"), "crash_count"), 1);
    assert_eq!(field(sim.last("backoff"), "ms"), 10);
}

#[test]
fn spawn_failures_count_as_crashes_and_trip_the_limit() {
    let mut worker = spec("ghost");
    worker.max_crashes = 3;
    worker.backoff_initial_ms = 10;
    let mut sim = Sim {
        fail_spawns: true,
        ..Sim::new(Mode::Config, vec![])
    };
    sim.sup = Supervisor::new(Mode::Config, 8000, vec![worker]);
    sim.feed(Input::Tick);
    for _ in 0..2 {
        sim.sleep();
    }
    assert_eq!(sim.count("spawn_failed"), 3);
    assert_eq!(sim.count("worker_started"), 3);
    assert_eq!(sim.count("worker_exited"), 3);
    assert_eq!(
        field(sim.last("worker_exited"), "likely_cause"),
        "spawn_failed"
    );
    assert_eq!(field(sim.last("max_crashes_exceeded"), "crash_count"), 3);
    sim.feed(Input::ChildrenGone);
    assert_eq!(sim.exit, Some(1));
}

#[test]
fn restart_policies_decide_which_exits_restart() {
    use RestartPolicy::*;
    for (policy, exit, restarts) in [
        (Always, Exit::Code(0), true),
        (Always, Exit::Code(1), true),
        (OnFailure, Exit::Code(0), false),
        (OnFailure, Exit::Code(1), true),
        (OnFailure, Exit::Signal(9), true),
        (Never, Exit::Code(0), false),
        (Never, Exit::Code(1), false),
    ] {
        let mut worker = spec("w");
        worker.restart = policy;
        let mut sim = Sim::config(vec![worker, spec("other")]);
        sim.exit_worker(0, exit);
        if !sim.is_running(0) && sim.sup.next_deadline().is_some() {
            sim.sleep();
        }
        assert_eq!(sim.is_running(0), restarts, "{policy:?} {exit:?}");
    }
}

#[test]
fn on_max_crashes_stop_keeps_the_others_running() {
    let mut flaky = spec("flaky");
    flaky.max_crashes = 1;
    flaky.on_max_crashes = OnMaxCrashes::Stop;
    let mut sim = Sim::config(vec![flaky, spec("steady")]);
    sim.exit_worker(0, Exit::Code(1));
    assert_eq!(sim.count("max_crashes_exceeded"), 1);
    assert_eq!(sim.count("shutdown_started"), 0);
    assert!(!sim.is_running(0));
    assert!(sim.is_running(1));
    assert_eq!(sim.sup.next_deadline(), None, "nothing scheduled: idle");
}

#[test]
fn sigterm_stops_every_worker_then_kills_at_the_grace_and_exits_when_all_are_gone() {
    let mut custom = spec("nginx");
    custom.stop_signal = libc::SIGQUIT;
    custom.stop_grace_ms = 3000;
    let mut sim = Sim::config(vec![spec("api"), custom]);
    let (api, nginx) = (sim.pids[&0], sim.pids[&1]);
    sim.take_actions();
    sim.feed(Input::Signal(libc::SIGTERM));
    let actions = sim.take_actions();
    assert!(actions.contains(&Action::SignalGroup {
        pgid: api,
        signal: libc::SIGTERM
    }));
    assert!(actions.contains(&Action::SignalGroup {
        pgid: nginx,
        signal: libc::SIGQUIT
    }));
    assert!(actions.contains(&Action::SignalOthers {
        signal: libc::SIGTERM,
        spare_groups: vec![api, nginx]
    }));
    // api exits in time; nginx does not, and is killed at its own grace.
    sim.advance(500);
    sim.exit_worker(0, Exit::Signal(libc::SIGTERM));
    assert_eq!(field(sim.last("worker_exited"), "likely_cause"), "shutdown");
    assert!(!sim.is_running(0), "no restart during shutdown");
    sim.take_actions();
    sim.sleep();
    assert_eq!(sim.now, 3000);
    assert!(sim.take_actions().contains(&Action::SignalGroup {
        pgid: nginx,
        signal: libc::SIGKILL
    }));
    sim.sleep();
    assert_eq!(sim.now, 8000);
    assert!(sim.take_actions().contains(&Action::KillAll));
    // The runtime saw two live processes hit, one of them twice.
    sim.feed(Input::Killed(vec![nginx, 7001]));
    sim.feed(Input::Killed(vec![nginx]));
    sim.exit_worker(1, Exit::Signal(libc::SIGKILL));
    assert_eq!(sim.exit, None, "not before every process is gone");
    sim.feed(Input::ChildrenGone);
    assert_eq!(sim.exit, Some(0));
    let complete = sim.last("shutdown_complete");
    assert_eq!(field(complete, "reason"), "SIGTERM");
    assert_eq!(field(complete, "exit_code"), 0);
    assert_eq!(field(complete, "duration_ms"), 8000);
    assert_eq!(field(complete, "killed"), 2);
    assert_eq!(sim.count("worker_started"), sim.count("worker_exited"));
}

#[test]
fn a_second_sigterm_skips_the_rest_of_the_grace() {
    let mut sim = Sim::config(vec![spec("api")]);
    sim.feed(Input::Signal(libc::SIGTERM));
    sim.take_actions();
    sim.advance(10);
    sim.feed(Input::Signal(libc::SIGINT));
    assert!(sim.take_actions().contains(&Action::KillAll));
    assert_eq!(sim.sup.next_deadline(), None);
}

#[test]
fn single_mode_forwards_the_shutdown_signal_and_exits_with_the_childs_code() {
    let mode = Mode::Single { remap_exit: vec![] };
    let mut single = spec("main");
    single.restart = RestartPolicy::Never;
    let mut sim = Sim::new(mode, vec![single]);
    let pid = sim.pids[&0];
    sim.take_actions();
    sim.feed(Input::Signal(libc::SIGINT));
    assert!(sim.take_actions().contains(&Action::SignalGroup {
        pgid: pid,
        signal: libc::SIGINT
    }));
    sim.exit_worker(0, Exit::Signal(libc::SIGINT));
    sim.feed(Input::ChildrenGone);
    assert_eq!(sim.exit, Some(130));
}

#[test]
fn a_child_seen_stopped_after_its_forwarded_sigterm_gets_sigcont_once() {
    // The stop and the SIGTERM arrive in one wake-up: the signal is forwarded alone (the
    // child was running as far as anyone knew), and the reap then reports the stop. A stopped
    // child cannot act on the signal: SIGCONT follows the report, once a run.
    let mode = Mode::Single { remap_exit: vec![] };
    let mut sim = Sim::new(mode, vec![spec("main")]);
    let pid = sim.pids[&0];
    sim.take_actions();
    sim.feed(Input::Signal(libc::SIGTERM));
    let cont = Action::SignalGroup {
        pgid: pid,
        signal: libc::SIGCONT,
    };
    assert!(
        !sim.take_actions().contains(&cont),
        "a running child: the signal alone"
    );
    sim.feed(Input::JobState {
        pid,
        is_stopped: true,
    });
    assert_eq!(sim.take_actions(), std::slice::from_ref(&cont));
    sim.feed(Input::JobState {
        pid,
        is_stopped: false,
    });
    sim.feed(Input::JobState {
        pid,
        is_stopped: true,
    });
    assert!(!sim.take_actions().contains(&cont), "once a run");
    // Not stopping: a stop is the job's business (Ctrl-Z, a debugger).
    let mut idle = Sim::new(Mode::Single { remap_exit: vec![] }, vec![spec("main")]);
    let pid = idle.pids[&0];
    idle.take_actions();
    idle.feed(Input::JobState {
        pid,
        is_stopped: true,
    });
    assert!(idle.take_actions().is_empty());
}

#[test]
fn single_mode_forwards_another_shutdown_signal_and_skips_the_grace_on_the_same_one() {
    // dumb-init's tests send SIGINT, then SIGTERM, then more: each must reach the child.
    let mode = Mode::Single { remap_exit: vec![] };
    let mut sim = Sim::new(mode, vec![spec("main")]);
    let pid = sim.pids[&0];
    sim.take_actions();
    sim.feed(Input::Signal(libc::SIGINT));
    sim.take_actions();
    for signal in [libc::SIGTERM, libc::SIGQUIT] {
        sim.feed(Input::Signal(signal));
        let actions = sim.take_actions();
        assert!(actions.contains(&Action::SignalGroup { pgid: pid, signal }));
        assert!(!actions.contains(&Action::KillAll), "{actions:?}");
    }
    assert_eq!(sim.count("shutdown_started"), 1);
    sim.feed(Input::Signal(libc::SIGINT));
    assert!(sim.take_actions().contains(&Action::KillAll));
}

#[test]
fn sigquit_stops_config_mode_and_is_forwarded_with_a_command() {
    let mut sim = Sim::config(vec![spec("api")]);
    sim.take_actions();
    sim.feed(Input::Signal(libc::SIGQUIT));
    let started = sim.events.iter().find(|e| e.name == "shutdown_started");
    assert_eq!(field(started.unwrap(), "reason"), "SIGQUIT");
    assert!(sim.take_actions().iter().any(|a| matches!(
        a,
        Action::SignalGroup { signal, .. } if *signal == libc::SIGTERM
    )));
    let mut sim = Sim::new(Mode::Single { remap_exit: vec![] }, vec![spec("main")]);
    let pid = sim.pids[&0];
    sim.take_actions();
    sim.feed(Input::Signal(libc::SIGQUIT));
    assert_eq!(sim.count("shutdown_started"), 0);
    assert!(sim.take_actions().contains(&Action::SignalGroup {
        pgid: pid,
        signal: libc::SIGQUIT
    }));
}

#[test]
fn single_mode_exit_codes_and_remapping() {
    for (remap, exit, want) in [
        (vec![], Exit::Code(0), 0),
        (vec![], Exit::Code(3), 3),
        (vec![], Exit::Signal(11), 139),
        (vec![143], Exit::Signal(15), 0),
        (vec![3], Exit::Code(3), 0),
        (vec![3], Exit::Code(4), 4),
    ] {
        let mut single = spec("main");
        single.restart = RestartPolicy::Never;
        let mut sim = Sim::new(
            Mode::Single {
                remap_exit: remap.clone(),
            },
            vec![single],
        );
        sim.exit_worker(0, exit);
        assert_eq!(
            field(sim.last("shutdown_started"), "reason"),
            "workers_finished"
        );
        sim.feed(Input::ChildrenGone);
        assert_eq!(sim.exit, Some(want), "{remap:?} {exit:?}");
    }
}

#[test]
fn remapping_applies_to_an_exec_failure_s_127_too() {
    // tini's `-e 127 -- /nonexistent` exits 0; fleet-init once exited 127 whatever the list.
    for (remap, want) in [(vec![], 127), (vec![127], 0), (vec![126], 127)] {
        let mut single = spec("main");
        single.restart = RestartPolicy::Never;
        let mode = Mode::Single {
            remap_exit: remap.clone(),
        };
        let mut sim = Sim {
            fail_spawns: true,
            ..Sim::new(mode.clone(), vec![])
        };
        sim.sup = Supervisor::new(mode, 8000, vec![single]);
        sim.feed(Input::Tick);
        assert_eq!(sim.count("spawn_failed"), 1);
        assert_eq!(
            field(sim.last("worker_exited"), "code"),
            127,
            "the event keeps the real code"
        );
        sim.feed(Input::ChildrenGone);
        assert_eq!(sim.exit, Some(want), "{remap:?}");
    }
}

#[test]
fn a_dead_workers_group_is_stopped_before_its_restart() {
    let mut sim = Sim::config(vec![spec("api")]);
    sim.groups_linger = true;
    let pid = sim.pids[&0];
    sim.take_actions();
    sim.exit_worker(0, Exit::Code(0));
    assert!(sim.take_actions().contains(&Action::SignalGroup {
        pgid: pid,
        signal: libc::SIGTERM
    }));
    assert!(!sim.is_running(0), "not restarted while its group lingers");
    sim.sleep();
    assert_eq!(sim.now, 8000);
    assert!(sim.take_actions().contains(&Action::SignalGroup {
        pgid: pid,
        signal: libc::SIGKILL
    }));
    sim.feed(Input::GroupEmpty { worker: 0 });
    assert!(sim.is_running(0));
    assert_eq!(field(sim.last("worker_started"), "run"), 2);
}

#[test]
fn config_mode_exit_code_after_every_worker_finished() {
    for (codes, want) in [(vec![0, 0], 0), (vec![0, 2], 1)] {
        let specs = codes
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let mut s = spec(&format!("w{i}"));
                s.restart = RestartPolicy::Never;
                s
            })
            .collect();
        let mut sim = Sim::config(specs);
        for (i, code) in codes.iter().enumerate() {
            assert_eq!(sim.count("shutdown_started"), 0);
            sim.exit_worker(i, Exit::Code(*code));
        }
        sim.feed(Input::ChildrenGone);
        assert_eq!(sim.exit, Some(want), "{codes:?}");
    }
}

#[test]
fn signals_are_forwarded_to_each_workers_target() {
    let mut celery = spec("celery");
    celery.signal_target = SignalTarget::Process;
    let mut sim = Sim::config(vec![spec("api"), celery]);
    let (api, celery) = (sim.pids[&0], sim.pids[&1]);
    sim.take_actions();
    sim.feed(Input::Signal(libc::SIGHUP));
    let actions = sim.take_actions();
    assert!(actions.contains(&Action::SignalGroup {
        pgid: api,
        signal: libc::SIGHUP
    }));
    assert!(actions.contains(&Action::SignalProcess {
        pid: celery,
        signal: libc::SIGHUP
    }));
    let forwarded = sim.last("signal_forwarded");
    assert_eq!(field(forwarded, "signal"), "SIGHUP");
    assert_eq!(
        field(forwarded, "workers"),
        serde_json::json!(["api", "celery"])
    );
    // SIGCHLD is fleet-init's own business.
    sim.feed(Input::Signal(libc::SIGCHLD));
    assert!(sim.take_actions().is_empty());
}

#[test]
fn unknown_pids_are_ignored_and_idle_means_no_deadline() {
    let mut sim = Sim::config(vec![spec("api")]);
    sim.take_actions();
    sim.feed(Input::Exited {
        pid: 99_999,
        exit: Exit::Code(0),
    });
    sim.feed(Input::ChildrenGone);
    assert!(sim.take_actions().is_empty());
    assert_eq!(sim.sup.next_deadline(), None);
}

#[test]
fn every_started_worker_gets_exactly_one_exit_event_on_every_path() {
    let mut flaky = spec("flaky");
    flaky.backoff_initial_ms = 1;
    let mut sim = Sim::config(vec![spec("api"), flaky, spec("cron")]);
    sim.exit_worker(1, Exit::Code(1));
    sim.sleep();
    sim.exit_worker(2, Exit::Code(0));
    sim.feed(Input::Signal(libc::SIGTERM));
    for worker in 0..3 {
        sim.exit_worker(worker, Exit::Signal(libc::SIGTERM));
    }
    sim.feed(Input::ChildrenGone);
    let mut started: Vec<Value> = sim
        .named("worker_started")
        .iter()
        .map(|e| field(e, "pid"))
        .collect();
    let mut exited: Vec<Value> = sim
        .named("worker_exited")
        .iter()
        .map(|e| field(e, "pid"))
        .collect();
    started.sort_by_key(|v| v.as_i64());
    exited.sort_by_key(|v| v.as_i64());
    assert_eq!(started, exited);
    assert_eq!(sim.exit, Some(0));
}

fn memory(total_mib: u64) -> crate::procscan::TreeMemory {
    crate::procscan::TreeMemory {
        total_bytes: total_mib * 1024 * 1024,
        source: Some(crate::procscan::MemorySource::RssAnonShmem),
        top: vec![(1, total_mib * 1024 * 1024)],
        processes: 1,
    }
}

#[test]
fn the_watchdog_samples_on_its_interval_and_drains_a_worker_over_its_limit() {
    let mut leaky = spec("leaky");
    leaky.max_rss_mb = Some(100);
    leaky.watchdog_interval_ms = 5000;
    let mut sim = Sim::config(vec![leaky, spec("unlimited")]);
    let pid = sim.pids[&0];
    sim.take_actions();
    assert_eq!(
        sim.sup.next_deadline(),
        Some(5000),
        "only the limited worker"
    );
    sim.sleep();
    let sample = Action::SampleMemory { worker: 0, pid };
    assert_eq!(sim.take_actions(), std::slice::from_ref(&sample));
    sim.feed(Input::MemorySample {
        worker: 0,
        pid,
        memory: memory(99),
    });
    assert_eq!(sim.count("watchdog_triggered"), 0);
    assert_eq!(sim.sup.next_deadline(), Some(10_000));
    sim.sleep();
    assert_eq!(sim.take_actions(), [sample]);
    sim.feed(Input::MemorySample {
        worker: 0,
        pid,
        memory: memory(200),
    });
    let triggered = sim.last("watchdog_triggered");
    assert_eq!(field(triggered, "rss_bytes"), 200 * 1024 * 1024);
    assert_eq!(field(triggered, "limit_bytes"), 100 * 1024 * 1024);
    assert_eq!(field(triggered, "source"), "rss_anon_shmem");
    assert!(sim.take_actions().contains(&Action::SignalGroup {
        pgid: pid,
        signal: libc::SIGTERM
    }));
    assert_eq!(
        sim.sup.next_deadline(),
        Some(18_000),
        "SIGKILL at the grace, no sample"
    );
    sim.exit_worker(0, Exit::Signal(libc::SIGTERM));
    let exited = sim.last("worker_exited");
    assert_eq!(field(exited, "likely_cause"), "watchdog");
    assert_eq!(field(exited, "crash_count"), 0);
    assert_eq!(
        field(sim.last("backoff"), "ms"),
        0,
        "budgeted like a clean exit"
    );
    assert!(sim.is_running(0));
}

#[test]
fn stale_samples_and_samples_without_a_reading_do_nothing() {
    let mut leaky = spec("leaky");
    leaky.max_rss_mb = Some(1);
    let mut sim = Sim::config(vec![leaky]);
    let pid = sim.pids[&0];
    let mut empty = memory(500);
    empty.source = None;
    sim.feed(Input::MemorySample {
        worker: 0,
        pid,
        memory: empty,
    });
    sim.feed(Input::MemorySample {
        worker: 0,
        pid: pid + 1000,
        memory: memory(500),
    });
    assert_eq!(sim.count("watchdog_triggered"), 0);
}

#[test]
fn a_sigkill_while_the_cgroup_counted_an_oom_kill_is_flagged() {
    let mut sim = Sim::config(vec![spec("hog"), spec("other")]);
    sim.feed(Input::OomKills(0));
    // Runs started before the counter was known are never flagged; restart both.
    sim.exit_worker(0, Exit::Code(0));
    sim.exit_worker(1, Exit::Code(0));
    sim.feed(Input::OomKills(1));
    sim.exit_worker(0, Exit::Signal(libc::SIGKILL));
    let exited = sim.last("worker_exited");
    assert_eq!(field(exited, "oom_killed"), true);
    assert_eq!(field(exited, "likely_cause"), "crash");
    sim.sleep();
    // The restarted run starts from the new count: a later SIGKILL is not an OOM kill.
    sim.exit_worker(0, Exit::Signal(libc::SIGKILL));
    assert_eq!(field(sim.last("worker_exited"), "oom_killed"), Value::Null);
    sim.exit_worker(1, Exit::Code(3));
    assert_eq!(field(sim.last("worker_exited"), "oom_killed"), Value::Null);
}

/// How many times `signal` went to group `pgid` among `actions`.
fn group_signals(actions: &[Action], pgid: i32, signal: i32) -> usize {
    actions
        .iter()
        .filter(|a| **a == Action::SignalGroup { pgid, signal })
        .count()
}

#[test]
fn one_stop_signal_per_stop_followed_by_sigcont() {
    // A watchdog stop: the group gets SIGTERM and SIGCONT once; the main process dying of it
    // sends nothing again, and the drain keeps the stop's own SIGKILL deadline.
    let mut limited = spec("api");
    limited.max_rss_mb = Some(10);
    limited.stop_grace_ms = 3000;
    let mut sim = Sim::config(vec![limited]);
    sim.groups_linger = true;
    let pid = sim.pids[&0];
    sim.advance(5000);
    sim.take_actions();
    sim.feed(Input::MemorySample {
        worker: 0,
        pid,
        memory: memory(20),
    });
    let stop = sim.take_actions();
    assert_eq!(group_signals(&stop, pid, libc::SIGTERM), 1);
    let term_at = stop.iter().position(|a| {
        *a == Action::SignalGroup {
            pgid: pid,
            signal: libc::SIGTERM,
        }
    });
    let cont_at = stop.iter().position(|a| {
        *a == Action::SignalGroup {
            pgid: pid,
            signal: libc::SIGCONT,
        }
    });
    assert!(term_at < cont_at && cont_at.is_some(), "{stop:?}");
    sim.advance(100);
    sim.exit_worker(0, Exit::Signal(libc::SIGTERM));
    let after = sim.take_actions();
    assert_eq!(group_signals(&after, pid, libc::SIGTERM), 0, "{after:?}");
    sim.sleep();
    assert_eq!(sim.now, 5000 + 3000, "the stop's grace, not a new one");
    assert_eq!(group_signals(&sim.take_actions(), pid, libc::SIGKILL), 1);

    // A main process that exits 0 and leaves a child: its group gets the stop signal once.
    let mut sim = Sim::config(vec![spec("web")]);
    sim.groups_linger = true;
    let pid = sim.pids[&0];
    sim.take_actions();
    sim.exit_worker(0, Exit::Code(0));
    let actions = sim.take_actions();
    assert_eq!(group_signals(&actions, pid, libc::SIGTERM), 1);
    assert_eq!(group_signals(&actions, pid, libc::SIGCONT), 1);
}

#[test]
fn a_crash_that_shuts_everything_down_spares_its_own_group_for_its_stop_signal() {
    let mut crasher = spec("crasher");
    crasher.max_crashes = 1;
    crasher.stop_signal = libc::SIGQUIT;
    let mut sim = Sim::config(vec![crasher, spec("other")]);
    sim.groups_linger = true;
    let pid = sim.pids[&0];
    sim.take_actions();
    sim.exit_worker(0, Exit::Code(1));
    assert_eq!(sim.count("shutdown_started"), 1);
    let actions = sim.take_actions();
    let quit_at = actions
        .iter()
        .position(|a| {
            *a == Action::SignalGroup {
                pgid: pid,
                signal: libc::SIGQUIT,
            }
        })
        .expect("its stop signal");
    let others_at = actions
        .iter()
        .position(|a| matches!(a, Action::SignalOthers { .. }))
        .expect("the shutdown's sweep");
    assert!(quit_at < others_at, "{actions:?}");
    let Some(Action::SignalOthers { spare_groups, .. }) = actions.get(others_at) else {
        unreachable!()
    };
    assert!(spare_groups.contains(&pid), "{spare_groups:?}");
}

#[test]
fn a_failed_fork_is_not_the_workers_crash() {
    let mut flaky = spec("api");
    flaky.max_crashes = 2;
    flaky.backoff_initial_ms = 100;
    flaky.backoff_max_ms = 400;
    let mut sim = Sim::config(vec![flaky]);
    sim.exit_worker(0, Exit::Code(0));
    // The restart's fork fails (a pids limit hit by someone else) ten times in a row.
    let mut delays = Vec::new();
    for _ in 0..10 {
        sim.sup.workers[0].phase = Phase::Starting;
        sim.feed(Input::SpawnFailed {
            worker: 0,
            pid: None,
            error: "fork: Resource temporarily unavailable".into(),
            exit_code: 126,
            is_fork_failure: true,
        });
        delays.push(field(sim.last("backoff"), "ms"));
        let Phase::Waiting { start_at } = sim.sup.workers[0].phase else {
            panic!("{:?}", sim.sup.workers[0].phase)
        };
        assert_eq!(Some(start_at), sim.sup.next_deadline());
    }
    assert_eq!(delays[..4], [100, 200, 400, 400]);
    assert_eq!(sim.sup.workers[0].crash_count, 0);
    assert_eq!(sim.count("max_crashes_exceeded"), 0);
    assert_eq!(sim.count("shutdown_started"), 0);
    assert_eq!(field(sim.last("spawn_failed"), "counted"), false);
    sim.sleep();
    assert!(sim.is_running(0), "tried again after the backoff");
    assert_eq!(
        sim.sup.workers[0].fork_failures, 0,
        "a success resets the count"
    );
}

#[test]
fn one_oom_kill_flags_one_death() {
    let mut sim = Sim::config(vec![spec("hog"), spec("bystander")]);
    sim.feed(Input::OomKills(0));
    sim.exit_worker(0, Exit::Code(0));
    sim.exit_worker(1, Exit::Code(0));
    sim.feed(Input::OomKills(1));
    sim.exit_worker(0, Exit::Signal(libc::SIGKILL));
    assert_eq!(field(sim.last("worker_exited"), "oom_killed"), true);
    // Killed by hand later: the counter did not move again, so it is no OOM kill.
    sim.advance(3000);
    sim.exit_worker(1, Exit::Signal(libc::SIGKILL));
    assert_eq!(field(sim.last("worker_exited"), "oom_killed"), Value::Null);
}

#[test]
fn a_start_not_yet_confirmed_gets_forwarded_signals_and_its_stop_once_it_runs() {
    let mut sim = Sim {
        hold_starts: true,
        ..Sim::config(vec![])
    };
    sim.sup = Supervisor::new(Mode::Config, 8000, vec![spec("api")]);
    sim.feed(Input::Tick);
    let pid = sim.pids[&0];
    assert_eq!(sim.sup.workers[0].state(), state::State::Starting);
    sim.take_actions();
    sim.feed(Input::Signal(libc::SIGHUP));
    assert!(
        sim.take_actions().contains(&Action::SignalGroup {
            pgid: pid,
            signal: libc::SIGHUP
        }),
        "forwarded to the forked child"
    );
    assert_eq!(
        field(sim.last("signal_forwarded"), "workers"),
        serde_json::json!(["api"])
    );
    // A shutdown while its exec is unconfirmed: its group is spared by the sweep, and it gets
    // its own stop signal once it runs, once.
    sim.feed(Input::Signal(libc::SIGTERM));
    let actions = sim.take_actions();
    let Some(Action::SignalOthers { spare_groups, .. }) = actions
        .iter()
        .find(|a| matches!(a, Action::SignalOthers { .. }))
    else {
        panic!("{actions:?}")
    };
    assert_eq!(spare_groups, &vec![pid]);
    sim.feed(Input::Spawned { worker: 0, pid });
    let stops: Vec<_> = sim
        .take_actions()
        .into_iter()
        .filter(
            |a| matches!(a, Action::SignalGroup { pgid, signal: libc::SIGTERM } if *pgid == pid),
        )
        .collect();
    assert_eq!(stops.len(), 1);
    sim.exit_worker(0, Exit::Signal(libc::SIGTERM));
    assert_eq!(field(sim.last("worker_exited"), "likely_cause"), "shutdown");
}

#[test]
fn a_forwarded_signal_that_reached_a_start_not_yet_confirmed_is_no_crash() {
    // The SIGHUP went to the forked child, but only a running run noted it: a death by it
    // right after the exec was a crash (a burst of `docker kill -s HUP` during restarts hit
    // max_crashes and shut the container down with exit 1).
    let mut sim = Sim {
        hold_starts: true,
        ..Sim::config(vec![])
    };
    sim.sup = Supervisor::new(Mode::Config, 8000, vec![spec("api")]);
    sim.feed(Input::Tick);
    let pid = sim.pids[&0];
    sim.feed(Input::Signal(libc::SIGHUP));
    sim.feed(Input::Spawned { worker: 0, pid });
    sim.exit_worker(0, Exit::Signal(libc::SIGHUP));
    let exited = sim.last("worker_exited");
    assert_eq!(
        (field(exited, "likely_cause"), field(exited, "crash_count")),
        ("clean_exit".into(), 0.into())
    );
}

/// `first_signal_action` is what `Signal` does first, and `SignalSentAhead` does the rest: in
/// every state below, for every kind of signal, from two copies of the same history.
#[test]
fn a_signal_sent_ahead_is_the_first_action_of_its_input_and_is_not_sent_again() {
    fn single(target: SignalTarget) -> Sim {
        let mut main = spec("main");
        main.signal_target = target;
        Sim::new(Mode::Single { remap_exit: vec![] }, vec![main])
    }
    fn after(mut sim: Sim, signal: i32) -> Sim {
        sim.feed(Input::Signal(signal));
        sim
    }
    type Scenario = (&'static str, fn() -> Sim);
    let scenarios: Vec<Scenario> = vec![
        ("single, running", || single(SignalTarget::Group)),
        ("single, running, -s", || single(SignalTarget::Process)),
        ("single, after SIGINT", || {
            after(single(SignalTarget::Group), libc::SIGINT)
        }),
        ("single, after SIGTERM", || {
            after(single(SignalTarget::Group), libc::SIGTERM)
        }),
        ("single, exec unconfirmed", || {
            let mut sim = Sim {
                hold_starts: true,
                ..Sim::config(vec![])
            };
            sim.sup = Supervisor::new(
                Mode::Single { remap_exit: vec![] },
                8000,
                vec![spec("main")],
            );
            sim.feed(Input::Tick);
            sim
        }),
        ("single, main exited, group draining", || {
            let mut sim = single(SignalTarget::Group);
            sim.groups_linger = true;
            sim.exit_worker(0, Exit::Code(0));
            sim
        }),
        ("single, stopping by ctl", || {
            let mut sim = single(SignalTarget::Group);
            sim.feed(Input::Control {
                client: 7,
                peer_uid: 0,
                request: crate::control::protocol::Request {
                    verb: crate::control::protocol::Verb::Stop,
                    workers: vec!["main".into()],
                    signal: None,
                },
            });
            sim
        }),
        ("config, running", || Sim::config(vec![spec("api")])),
    ];
    let signals = [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGWINCH,
        libc::SIGKILL,
        libc::SIGRTMIN() + 1,
        libc::SIGCHLD,
        libc::SIGCONT,
        libc::SIGSTOP,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
    ];
    let mut sent_ahead = Vec::new();
    for (name, scenario) in &scenarios {
        for signal in signals {
            let (mut plain, mut ahead) = (scenario(), scenario());
            let want = plain.sup.handle(Input::Signal(signal), plain.now);
            let sent = ahead.sup.first_signal_action(signal);
            let rest = ahead.sup.handle(Input::SignalSentAhead(signal), ahead.now);
            let context = format!("{name}, {}", signals::name(signal));
            match &sent {
                Some(sent) => {
                    assert_eq!(want.first(), Some(sent), "{context}: {want:?}");
                    assert_eq!(
                        rest.as_slice(),
                        want.get(1..).unwrap_or_default(),
                        "{context}"
                    );
                    sent_ahead.push(context);
                }
                None => assert_eq!(rest, want, "{context}"),
            }
        }
    }
    // Sent ahead: a single command's running child, every signal but SIGCHLD and the job-control
    // ones, except the stop signal that began the shutdown (a second one is the kill) and a
    // first stop signal to a child already stopping (the shutdown leaves it to its own stop).
    let plain = [
        "SIGTERM",
        "SIGINT",
        "SIGQUIT",
        "SIGHUP",
        "SIGUSR1",
        "SIGWINCH",
        "SIGKILL",
        "SIGRTMIN+1",
    ];
    let mut want: Vec<String> = Vec::new();
    for (name, except) in [
        ("single, running", &[][..]),
        ("single, running, -s", &[]),
        ("single, after SIGINT", &["SIGINT"]),
        ("single, after SIGTERM", &["SIGTERM"]),
        ("single, stopping by ctl", &["SIGTERM", "SIGINT"]),
    ] {
        let sent = plain.iter().filter(|signal| !except.contains(signal));
        want.extend(sent.map(|signal| format!("{name}, {signal}")));
    }
    assert_eq!(sent_ahead, want);
}
