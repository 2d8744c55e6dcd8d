//! Start order, oneshots, readiness and health, driven through `handle` with a fake clock: a
//! table of inputs and the events, states and probes they must lead to.

#[cfg(test)]
use super::state::State;
use super::*;
use crate::config::probes::{HealthSpec, ReadySpec};
use crate::config::WorkerSpec;
use crate::control::protocol::{Request, Verb};
use std::collections::HashMap;

/// A runtime stand-in: answers `Spawn` with fresh pids, finds groups empty, records probes.
struct Sim {
    sup: Supervisor,
    now: Millis,
    next_pid: i32,
    events: Vec<Event>,
    pids: HashMap<usize, i32>,
    /// Probes asked for and not answered yet: (worker, pid).
    probes: Vec<(usize, i32)>,
    signals: Vec<(i32, i32)>,
    exit: Option<i32>,
    replies: Vec<Value>,
}

impl Sim {
    fn new(specs: Vec<WorkerSpec>) -> Sim {
        let mut sim = Sim {
            sup: Supervisor::new(Mode::Config, 8000, specs),
            now: 0,
            next_pid: 100,
            events: Vec::new(),
            pids: HashMap::new(),
            probes: Vec::new(),
            signals: Vec::new(),
            exit: None,
            replies: Vec::new(),
        };
        sim.feed(Input::Tick);
        sim
    }

    fn feed(&mut self, input: Input) {
        let actions = self.sup.handle(input, self.now);
        for action in actions {
            match action {
                Action::Emit(event) => self.events.push(event),
                Action::Spawn { worker } => {
                    self.next_pid += 1;
                    let pid = self.next_pid;
                    self.pids.insert(worker, pid);
                    self.feed(Input::Spawned { worker, pid });
                }
                Action::Probe { worker, pid, .. } => self.probes.push((worker, pid)),
                Action::SignalGroup { pgid, signal } => self.signals.push((pgid, signal)),
                Action::SignalProcess { pid, signal } => self.signals.push((pid, signal)),
                Action::Exit { code } => self.exit = Some(code),
                Action::Reply { reply, .. } => self.replies.push(reply),
                _ => {}
            }
        }
        for (worker, _) in self.sup.draining_groups() {
            self.feed(Input::GroupEmpty { worker });
        }
    }

    fn advance(&mut self, ms: Millis) {
        self.now += ms;
        self.feed(Input::Tick);
    }

    fn sleep(&mut self) {
        let deadline = self.sup.next_deadline().expect("a deadline");
        assert!(deadline >= self.now, "deadline in the past");
        self.now = deadline;
        self.feed(Input::Tick);
    }

    fn exit(&mut self, worker: usize, exit: Exit) {
        let pid = self.pids[&worker];
        self.feed(Input::Exited { pid, exit });
    }

    /// Answers the oldest probe asked for `worker`.
    fn answer(&mut self, worker: usize, ok: bool) {
        let at = self
            .probes
            .iter()
            .position(|(w, _)| *w == worker)
            .expect("a probe in flight");
        let (_, pid) = self.probes.remove(at);
        self.feed(Input::ProbeResult {
            worker,
            pid,
            ok,
            error: if ok { String::new() } else { "refused".into() },
        });
    }

    fn ctl(&mut self, verb: Verb, workers: &[&str]) -> Value {
        let request = Request {
            verb,
            workers: workers.iter().map(|w| w.to_string()).collect(),
            signal: None,
        };
        self.feed(Input::Control {
            client: 1,
            peer_uid: 0,
            request,
        });
        self.replies.pop().expect("a reply")
    }

    fn state(&self, worker: usize) -> State {
        self.sup.workers[worker].state()
    }

    fn named(&self, name: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.name == name).collect()
    }

    fn count(&self, name: &str) -> usize {
        self.named(name).len()
    }

    fn started(&self, name: &str) -> usize {
        self.named("worker_started")
            .iter()
            .filter(|e| e.field("worker") == Some(&Value::from(name)))
            .count()
    }
}

fn spec(name: &str, after: &[&str]) -> WorkerSpec {
    let mut spec = WorkerSpec::new(name, vec!["/bin/true".into()], 8000);
    spec.after = after.iter().map(|n| n.to_string()).collect();
    spec.backoff_initial_ms = 100;
    spec
}

fn oneshot(name: &str) -> WorkerSpec {
    let mut spec = spec(name, &[]);
    spec.oneshot = true;
    spec.restart = RestartPolicy::OnFailure;
    spec
}

fn with_ready(mut spec: WorkerSpec, timeout_ms: Option<u64>) -> WorkerSpec {
    spec.ready = Some(ReadySpec {
        kind: ProbeKind::Tcp(([127, 0, 0, 1], 8080).into()),
        interval_ms: 250,
        timeout_ms,
    });
    spec
}

fn field(event: &Event, key: &str) -> Value {
    event.field(key).cloned().unwrap_or(Value::Null)
}

#[test]
fn a_oneshot_that_fails_then_succeeds_gates_its_dependent_and_is_never_restarted() {
    let mut sim = Sim::new(vec![oneshot("migrate"), spec("api", &["migrate"])]);
    assert_eq!(sim.started("migrate"), 1);
    assert_eq!(sim.started("api"), 0);
    assert_eq!(sim.state(1), State::Waiting);
    assert_eq!(sim.count("worker_waiting"), 1);
    assert_eq!(
        field(sim.named("worker_waiting")[0], "on"),
        serde_json::json!(["migrate"])
    );
    // A waiting dependent costs no wake-up of its own: only migrate's deadlines remain.
    assert_eq!(sim.sup.next_deadline(), None);
    sim.advance(500);
    sim.exit(0, Exit::Code(1));
    assert_eq!(
        field(sim.named("worker_exited")[0], "likely_cause"),
        "crash"
    );
    assert_eq!(field(sim.named("backoff")[0], "ms"), 100);
    sim.sleep();
    assert_eq!(sim.started("migrate"), 2);
    assert_eq!(sim.started("api"), 0, "still waiting after the failed run");
    sim.advance(500);
    sim.exit(0, Exit::Code(0));
    assert_eq!(sim.state(0), State::Completed);
    assert_eq!(
        sim.started("api"),
        1,
        "started in the step migrate completed"
    );
    assert_eq!(sim.state(1), State::Ready);
    assert_eq!(sim.count("worker_waiting"), 1, "emitted once");
    sim.advance(60_000);
    assert_eq!(
        sim.started("migrate"),
        2,
        "a completed oneshot is never restarted"
    );
    assert_eq!(sim.exit, None);
}

#[test]
fn a_dependency_restart_keeps_dependents_running_and_it_becomes_ready_again() {
    let mut sim = Sim::new(vec![
        with_ready(spec("api", &[]), None),
        spec("client", &["api"]),
    ]);
    assert_eq!(sim.state(0), State::Running);
    assert_eq!(sim.probes, vec![(0, 101)], "first try at once");
    sim.answer(0, false);
    assert_eq!(
        sim.sup.next_deadline(),
        Some(250),
        "next try after interval_ms"
    );
    sim.sleep();
    sim.answer(0, true);
    assert_eq!(sim.state(0), State::Ready);
    let ready = sim.named("worker_ready")[0].clone();
    assert_eq!(
        (field(&ready, "pid"), field(&ready, "after_ms")),
        (101.into(), 250.into())
    );
    assert_eq!(sim.started("client"), 1);
    // Everything ready, no health checks: no deadline at all (zero wake-ups).
    assert_eq!(sim.sup.next_deadline(), None);
    sim.advance(1000);
    sim.exit(0, Exit::Code(1));
    assert_eq!(sim.state(1), State::Ready, "the dependent keeps running");
    sim.sleep();
    assert_eq!(sim.started("api"), 2);
    assert_eq!(sim.state(0), State::Running);
    sim.answer(0, true);
    assert_eq!(sim.state(0), State::Ready);
    assert_eq!(sim.count("worker_ready"), 3, "api twice, client once");
    assert_eq!(sim.started("client"), 1);
}

#[test]
fn a_readiness_timeout_stops_the_worker_as_unhealthy_and_counts_a_crash() {
    let mut sim = Sim::new(vec![
        with_ready(spec("api", &[]), Some(1000)),
        spec("client", &["api"]),
    ]);
    for _ in 0..4 {
        sim.answer(0, false);
        sim.sleep();
    }
    assert_eq!(sim.now, 1000);
    assert_eq!(sim.count("health_failed"), 1);
    assert_eq!(sim.signals.first(), Some(&(101, libc::SIGTERM)));
    sim.exit(0, Exit::Signal(libc::SIGTERM));
    let exited = sim.named("worker_exited")[0].clone();
    assert_eq!(field(&exited, "likely_cause"), "unhealthy");
    assert_eq!(field(&exited, "crash_count"), 1);
    assert_eq!(field(sim.named("backoff")[0], "ms"), 100);
    assert_eq!(sim.started("client"), 0);
    // A probe answer for the stopped run is moot.
    sim.probes.clear();
    sim.sleep();
    assert_eq!(sim.started("api"), 2);
}

#[test]
fn failed_health_checks_in_a_row_stop_the_worker_as_unhealthy() {
    let mut api = spec("api", &[]);
    api.health = Some(HealthSpec {
        kind: ProbeKind::Command(vec!["healthz".into()]),
        interval_ms: 1000,
        timeout_ms: 500,
        failures: 3,
    });
    let mut sim = Sim::new(vec![api]);
    assert_eq!(sim.state(0), State::Ready);
    assert_eq!(sim.sup.next_deadline(), Some(1000));
    // fail, fail, ok resets; then three in a row.
    for ok in [false, false, true, false, false] {
        sim.sleep();
        sim.answer(0, ok);
    }
    assert_eq!(sim.count("health_failed"), 0);
    sim.sleep();
    sim.answer(0, false);
    let failed = sim.named("health_failed")[0].clone();
    assert_eq!(field(&failed, "failures"), 3);
    assert_eq!(field(&failed, "error"), "refused");
    sim.exit(0, Exit::Signal(libc::SIGTERM));
    let exited = sim.named("worker_exited")[0].clone();
    assert_eq!(field(&exited, "likely_cause"), "unhealthy");
    assert_eq!(field(&exited, "crash_count"), 1);
    sim.sleep();
    assert_eq!(sim.started("api"), 2);
}

#[test]
fn a_dependency_that_hit_max_crashes_with_stop_fails_its_dependents_out_loud() {
    let mut migrate = oneshot("migrate");
    migrate.max_crashes = 2;
    migrate.on_max_crashes = OnMaxCrashes::Stop;
    let mut other = spec("other", &[]);
    other.restart = RestartPolicy::Never;
    let mut sim = Sim::new(vec![
        migrate,
        spec("api", &["migrate"]),
        spec("client", &["api"]),
        other,
    ]);
    sim.exit(0, Exit::Code(1));
    sim.sleep();
    sim.exit(0, Exit::Code(1));
    assert_eq!(sim.count("max_crashes_exceeded"), 1);
    let warns = sim.named("health_warn");
    let reasons: Vec<(Value, Value, Value)> = warns
        .iter()
        .map(|e| {
            (
                field(e, "worker"),
                field(e, "reason"),
                field(e, "dependency"),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("api".into(), "dependency_failed".into(), "migrate".into()),
            ("client".into(), "dependency_failed".into(), "api".into()),
        ]
    );
    assert_eq!((sim.state(1), sim.state(2)), (State::Failed, State::Failed));
    assert_eq!(sim.state(3), State::Ready, "the others go on");
    assert_eq!(sim.exit, None);
    // When the last worker finishes, the container ends: failed, so 1.
    sim.exit(3, Exit::Code(0));
    sim.feed(Input::ChildrenGone);
    assert_eq!(sim.exit, Some(1));
}

#[test]
fn shutdown_stops_dependents_first_under_one_deadline() {
    let mut sim = Sim::new(vec![
        spec("db", &[]),
        spec("api", &["db"]),
        spec("client", &["api"]),
    ]);
    assert_eq!(sim.started("client"), 1);
    sim.signals.clear();
    sim.feed(Input::Signal(libc::SIGTERM));
    let client = sim.pids[&2];
    assert_eq!(
        sim.signals.first(),
        Some(&(client, libc::SIGTERM)),
        "only the client first"
    );
    assert!(!sim.signals.iter().any(|(pid, _)| *pid == sim.pids[&1]));
    sim.advance(500);
    sim.exit(2, Exit::Signal(libc::SIGTERM));
    assert!(
        sim.signals.contains(&(sim.pids[&1], libc::SIGTERM)),
        "then the api"
    );
    assert!(!sim.signals.iter().any(|(pid, _)| *pid == sim.pids[&0]));
    sim.exit(1, Exit::Code(0));
    assert!(
        sim.signals.contains(&(sim.pids[&0], libc::SIGTERM)),
        "then the db"
    );
    // One deadline for all: the grace counts from the SIGTERM, not from each stop.
    assert_eq!(sim.sup.next_deadline(), Some(8000));
}

#[test]
fn a_second_sigterm_kills_all_even_those_not_yet_signalled() {
    let mut sim = Sim::new(vec![spec("api", &[]), spec("client", &["api"])]);
    sim.feed(Input::Signal(libc::SIGTERM));
    sim.signals.clear();
    let actions = sim.sup.handle(Input::Signal(libc::SIGTERM), sim.now);
    assert!(actions.contains(&Action::KillAll));
}

#[test]
fn a_worker_killed_while_it_waited_for_its_dependents_exits_as_shutdown_not_crash() {
    let mut sim = Sim::new(vec![spec("api", &[]), spec("client", &["api"])]);
    sim.feed(Input::Signal(libc::SIGTERM));
    // The client ignores its SIGTERM; the grace ends with the api never signalled.
    sim.now = 8000;
    let actions = sim.sup.handle(Input::Tick, sim.now);
    assert!(actions.contains(&Action::KillAll), "{actions:?}");
    sim.exit(1, Exit::Signal(libc::SIGKILL));
    sim.exit(0, Exit::Signal(libc::SIGKILL));
    let causes: Vec<Value> = sim
        .named("worker_exited")
        .iter()
        .map(|e| field(e, "likely_cause"))
        .collect();
    assert_eq!(causes, ["shutdown", "shutdown"]);
    assert!(sim
        .named("worker_exited")
        .iter()
        .all(|e| field(e, "crash_count") == 0));
}

#[test]
fn a_shutdown_signal_before_the_first_tick_starts_nothing_and_stops_probing() {
    let mut api = with_ready(spec("api", &[]), None);
    api.health = Some(HealthSpec {
        kind: ProbeKind::File("/healthy".into()),
        interval_ms: 100,
        timeout_ms: 100,
        failures: 1,
    });
    // Inputs before the first tick (the loop feeds the OOM counter first) start nothing.
    let mut sup = Supervisor::new(Mode::Config, 8000, vec![api.clone(), spec("b", &["api"])]);
    let actions = sup.handle(Input::OomKills(0), 0);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Spawn { .. })),
        "{actions:?}"
    );
    let actions = sup.handle(Input::Signal(libc::SIGTERM), 0);
    assert!(!actions.iter().any(|a| matches!(a, Action::Spawn { .. })));
    assert!(!sup
        .handle(Input::Tick, 0)
        .iter()
        .any(|a| matches!(a, Action::Spawn { .. })));

    // A ready worker that waits for its dependent to exit is not probed meanwhile.
    let mut sim = Sim::new(vec![api, spec("client", &["api"])]);
    sim.answer(0, true);
    assert_eq!(sim.started("client"), 1);
    sim.feed(Input::Signal(libc::SIGTERM));
    let probes = sim.probes.len();
    sim.advance(1000);
    assert_eq!(sim.probes.len(), probes, "no probe during the shutdown");
    assert_eq!(sim.count("health_failed"), 0);
    assert_eq!(
        sim.sup.next_deadline(),
        Some(8000),
        "only the shutdown's deadline"
    );
}

#[test]
fn ctl_ready_waits_for_readiness_and_a_dependency_stopped_by_ctl_holds_its_dependents() {
    let mut sim = Sim::new(vec![
        with_ready(spec("api", &[]), None),
        spec("client", &["api"]),
    ]);
    assert_eq!(
        sim.ctl(Verb::Ready, &[])["ready"],
        false,
        "api is running, not ready"
    );
    sim.answer(0, true);
    assert_eq!(sim.ctl(Verb::Ready, &[])["ready"], true);
    // The api stopped on request: the running client goes on; a client restart waits for it.
    sim.ctl(Verb::Stop, &["api"]);
    sim.exit(0, Exit::Signal(libc::SIGTERM));
    assert_eq!(sim.state(0), State::Stopped);
    assert_eq!(sim.state(1), State::Ready);
    sim.exit(1, Exit::Code(1));
    assert_eq!(
        sim.sup.next_deadline(),
        None,
        "nothing to wake up for while it waits"
    );
    sim.advance(1000);
    assert_eq!(
        sim.started("client"),
        1,
        "held back while the api is stopped"
    );
    assert_eq!(sim.state(1), State::Backoff);
    // Once per wait: the first start's, and this restart's.
    let waiting = sim.named("worker_waiting");
    assert_eq!(waiting.len(), 2);
    assert_eq!(field(waiting[1], "on"), serde_json::json!(["api"]));
    sim.ctl(Verb::Start, &["api"]);
    assert_eq!(sim.started("api"), 2);
    sim.answer(0, true);
    assert_eq!(
        sim.started("client"),
        2,
        "started once the api is ready again"
    );
}

#[test]
fn a_oneshot_ended_by_a_forwarded_signal_has_not_completed_and_runs_again() {
    // `docker kill -s HUP` for nginx reached the migration too: it died of the SIGHUP, was
    // `clean_exit` (a signal fleet-init sent), and counted as completed: the api started on
    // a half-migrated database.
    let mut sim = Sim::new(vec![oneshot("migrate"), spec("api", &["migrate"])]);
    sim.feed(Input::Signal(libc::SIGHUP));
    sim.exit(0, Exit::Signal(libc::SIGHUP));
    let exited = sim.named("worker_exited")[0].clone();
    assert_eq!(
        (
            field(&exited, "likely_cause"),
            field(&exited, "crash_count")
        ),
        ("clean_exit".into(), 0.into()),
        "not a crash"
    );
    assert_eq!(sim.started("api"), 0, "not completed");
    assert_eq!(field(sim.named("backoff")[0], "ms"), 0);
    assert_eq!(sim.started("migrate"), 2, "run again at once");
    sim.exit(0, Exit::Code(0));
    assert_eq!(sim.state(0), State::Completed);
    assert_eq!(sim.started("api"), 1);
}

#[test]
fn a_oneshot_with_restart_never_ended_by_a_forwarded_signal_fails_its_dependents() {
    let mut migrate = oneshot("migrate");
    migrate.restart = RestartPolicy::Never;
    let mut sim = Sim::new(vec![migrate, spec("api", &["migrate"])]);
    sim.feed(Input::Signal(libc::SIGHUP));
    sim.exit(0, Exit::Signal(libc::SIGHUP));
    assert_eq!((sim.state(0), sim.state(1)), (State::Failed, State::Failed));
    assert_eq!(
        field(sim.named("health_warn")[0], "reason"),
        "dependency_failed"
    );
    assert_eq!(sim.started("api"), 0);
}

#[test]
fn a_service_that_exits_cleanly_before_it_is_ready_is_no_dependency_s_ready() {
    // `db` with a readiness check that never passed exited 0 (`restart: never`): the api
    // started after it as if it had been ready, and `ctl ready` said ready.
    let mut db = with_ready(spec("db", &[]), None);
    db.restart = RestartPolicy::Never;
    let mut sim = Sim::new(vec![db, spec("api", &["db"])]);
    sim.advance(300);
    sim.exit(0, Exit::Code(0));
    assert_eq!(sim.state(0), State::Failed, "never ready: not completed");
    assert_eq!(sim.state(1), State::Failed);
    assert_eq!(field(sim.named("health_warn")[0], "dependency"), "db");
    assert_eq!(sim.started("api"), 0);
    // Once ready, a clean end satisfies what is after it, as before.
    let mut db = with_ready(spec("db", &[]), None);
    db.restart = RestartPolicy::Never;
    let mut sim = Sim::new(vec![db, spec("api", &["db"]), spec("late", &["db", "api"])]);
    sim.answer(0, true);
    assert_eq!(sim.started("api"), 1);
    sim.exit(0, Exit::Code(0));
    assert_eq!(sim.state(0), State::Completed);
}

#[test]
fn ctl_start_of_a_worker_held_by_after_says_so_and_of_one_whose_dependency_failed_refuses() {
    // It answered `starting` for a worker that stayed waiting, and for one whose dependency
    // had failed it answered `starting`, then failed it again with a second dependency_failed.
    let mut migrate = oneshot("migrate");
    migrate.restart = RestartPolicy::Never;
    // `other` keeps the container up once migrate and api are down.
    let mut sim = Sim::new(vec![migrate, spec("api", &["migrate"]), spec("other", &[])]);
    let reply = sim.ctl(Verb::Start, &["api"]);
    assert_eq!(
        (&reply["ok"], &reply["workers"][0]["result"]),
        (&true.into(), &"waiting for the workers it is after".into())
    );
    assert_eq!(sim.state(1), State::Waiting);
    assert_eq!(sim.count("worker_waiting"), 1);
    sim.exit(0, Exit::Code(1));
    assert_eq!(sim.state(1), State::Failed);
    let reply = sim.ctl(Verb::Start, &["api"]);
    assert_eq!(reply["ok"], false);
    assert_eq!(
        reply["workers"][0]["error"],
        "cannot start: \"migrate\", which it is after, failed"
    );
    assert_eq!(sim.count("health_warn"), 1, "no second dependency_failed");
    assert_eq!(sim.state(1), State::Failed);
    assert_eq!(sim.started("api"), 0);
}
