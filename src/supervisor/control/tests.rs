//! `ctl` requests through `handle`, with a fake clock and a small simulated runtime.

#[cfg(test)]
use super::super::*;
use crate::config::WorkerSpec;
use crate::control::protocol::{Request, Verb};
use crate::procscan::{MemorySource, TreeMemory};
use serde_json::Value;

struct Sim {
    sup: Supervisor,
    now: Millis,
    next_pid: i32,
    events: Vec<Event>,
    actions: Vec<Action>,
    replies: Vec<Value>,
}

impl Sim {
    fn new(specs: Vec<WorkerSpec>) -> Sim {
        let mut sim = Sim {
            sup: Supervisor::new(Mode::Config, 8000, specs),
            now: 0,
            next_pid: 100,
            events: Vec::new(),
            actions: Vec::new(),
            replies: Vec::new(),
        };
        sim.feed(Input::Tick);
        sim
    }

    fn feed(&mut self, input: Input) {
        for action in self.sup.handle(input, self.now) {
            match &action {
                Action::Emit(event) => self.events.push(event.clone()),
                Action::Reply { reply, .. } => self.replies.push(reply.clone()),
                Action::Spawn { worker } => {
                    self.next_pid += 1;
                    let pid = self.next_pid;
                    self.feed(Input::Spawned {
                        worker: *worker,
                        pid,
                    });
                }
                _ => {}
            }
            self.actions.push(action);
        }
        for (worker, _) in self.sup.draining_groups() {
            self.feed(Input::GroupEmpty { worker });
        }
    }

    /// Sends a request; returns its reply.
    fn ctl(&mut self, verb: Verb, workers: &[&str], signal: Option<i32>) -> Value {
        let request = Request {
            verb,
            workers: workers.iter().map(|w| w.to_string()).collect(),
            signal,
        };
        self.feed(Input::Control {
            client: 7,
            peer_uid: 0,
            request,
        });
        self.replies.pop().expect("a reply")
    }

    fn pid(&self, worker: usize) -> i32 {
        self.sup.workers[worker].running_pid().expect("running")
    }

    fn exit(&mut self, worker: usize, exit: Exit) {
        let pid = self.pid(worker);
        self.feed(Input::Exited { pid, exit });
    }

    fn advance(&mut self, ms: Millis) {
        self.now += ms;
        self.feed(Input::Tick);
    }

    fn state(&self, worker: usize) -> &'static str {
        self.sup.workers[worker].state().as_str()
    }

    fn named(&self, name: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.name == name).collect()
    }

    fn field(event: &Event, key: &str) -> Value {
        event.field(key).cloned().unwrap_or(Value::Null)
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }
}

fn service(name: &str) -> WorkerSpec {
    let mut spec = WorkerSpec::new(name, vec!["serve".into()], 1000);
    spec.backoff_initial_ms = 1000;
    spec
}

#[test]
fn a_stop_is_stopped_not_a_crash_and_keeps_fleet_init_up() {
    let mut sim = Sim::new(vec![service("api")]);
    let pid = sim.pid(0);
    sim.take_actions();
    let reply = sim.ctl(Verb::Stop, &["api"], None);
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["workers"][0]["result"], "stopping");
    let signals: Vec<Action> = sim
        .take_actions()
        .into_iter()
        .filter(|a| matches!(a, Action::SignalGroup { .. }))
        .collect();
    assert_eq!(
        signals,
        [
            Action::SignalGroup {
                pgid: pid,
                signal: libc::SIGTERM
            },
            Action::SignalGroup {
                pgid: pid,
                signal: libc::SIGCONT
            }
        ]
    );
    assert_eq!(sim.state(0), "stopping");
    sim.exit(0, Exit::Signal(libc::SIGTERM));
    let exited = sim.named("worker_exited")[0];
    assert_eq!(Sim::field(exited, "likely_cause"), "stopped");
    assert_eq!(Sim::field(exited, "crash_count"), 0);
    assert_eq!(sim.state(0), "stopped");
    assert!(sim.named("backoff").is_empty());
    assert!(sim.named("shutdown_started").is_empty(), "stays up");
    assert_eq!(sim.sup.next_deadline(), None, "idle: nothing scheduled");
    let status = sim.ctl(Verb::Status, &[], None);
    let api = &status["workers"][0];
    assert_eq!(
        (&api["state"], &api["runs"], &api["crashes"]),
        (&Value::from("stopped"), &Value::from(1), &Value::from(0))
    );
    assert_eq!(api["last_exit"]["signal"], "SIGTERM");
    assert_eq!(api["likely_cause"], "stopped");
    assert_eq!(api["pid"], Value::Null);
}

#[test]
fn a_stop_in_backoff_cancels_the_restart_until_start() {
    let mut sim = Sim::new(vec![service("api")]);
    sim.exit(0, Exit::Code(3));
    assert_eq!(sim.state(0), "backoff");
    assert_eq!(
        sim.ctl(Verb::Stop, &["api"], None)["workers"][0]["result"],
        "stopped"
    );
    sim.advance(60_000);
    assert_eq!(sim.named("worker_started").len(), 1, "no restart");
    assert_eq!(sim.state(0), "stopped");
    assert_eq!(sim.sup.next_deadline(), None);
    // start: a new run, history kept.
    let reply = sim.ctl(Verb::Start, &["api"], None);
    assert_eq!(reply["workers"][0]["result"], "starting");
    let started = sim.named("worker_started");
    assert_eq!(started.len(), 2);
    assert_eq!(Sim::field(started[1], "run"), 2);
    let status = sim.ctl(Verb::Status, &["api"], None);
    assert_eq!(status["workers"][0]["crashes"], 1, "history kept");
    assert_eq!(status["workers"][0]["last_exit"]["code"], 3);
    assert_eq!(status["workers"][0]["state"], "ready");
    assert_eq!(status["workers"][0]["uptime_ms"], 0);
}

#[test]
fn a_stop_while_draining_keeps_it_down_and_start_brings_it_back() {
    let mut sim = Sim::new(vec![service("api"), service("db")]);
    sim.exit(0, Exit::Code(0));
    // Exit 0 restarts at once.
    assert_eq!(sim.named("worker_started").len(), 3);
    sim.ctl(Verb::Stop, &["api", "db"], None);
    sim.exit(0, Exit::Code(0));
    sim.exit(1, Exit::Signal(libc::SIGKILL));
    assert_eq!((sim.state(0), sim.state(1)), ("stopped", "stopped"));
    let causes: Vec<Value> = sim
        .named("worker_exited")
        .iter()
        .map(|e| Sim::field(e, "likely_cause"))
        .collect();
    assert_eq!(causes, ["clean_exit", "stopped", "stopped"]);
    assert!(
        sim.named("shutdown_started").is_empty(),
        "all stopped: still up"
    );
    let again = sim.ctl(Verb::Stop, &["api"], None);
    assert_eq!(again["workers"][0]["result"], "stopped", "idempotent");
    sim.ctl(Verb::Start, &["api", "db"], None);
    assert_eq!((sim.state(0), sim.state(1)), ("ready", "ready"));
}

#[test]
fn restart_is_a_clean_class_stop_and_start() {
    let mut sim = Sim::new(vec![service("api")]);
    let reply = sim.ctl(Verb::Restart, &["api"], None);
    assert_eq!(reply["workers"][0]["result"], "restarting");
    sim.exit(0, Exit::Signal(libc::SIGTERM));
    let started = sim.named("worker_started");
    assert_eq!(started.len(), 2, "started again at once");
    assert_eq!(Sim::field(started[1], "run"), 2);
    assert_eq!(Sim::field(sim.named("backoff")[0], "ms"), 0);
    assert_eq!(sim.sup.workers[0].crash_count, 0);
    // Budgeted like clean exits: the 11th in a window warns.
    for _ in 0..10 {
        sim.ctl(Verb::Restart, &["api"], None);
        sim.exit(0, Exit::Code(0));
    }
    assert_eq!(sim.named("health_warn").len(), 1);
    // restart of a stopped worker starts it.
    sim.advance(60_000);
    sim.ctl(Verb::Stop, &["api"], None);
    sim.exit(0, Exit::Code(0));
    assert_eq!(sim.state(0), "stopped");
    sim.ctl(Verb::Restart, &["api"], None);
    assert_eq!(sim.state(0), "ready");
}

#[test]
fn a_start_during_the_stop_restarts_after_the_exit() {
    let mut sim = Sim::new(vec![service("api")]);
    sim.ctl(Verb::Stop, &["api"], None);
    let reply = sim.ctl(Verb::Start, &["api"], None);
    assert_eq!(reply["workers"][0]["result"], "starting");
    sim.exit(0, Exit::Signal(libc::SIGTERM));
    assert_eq!(sim.named("worker_started").len(), 2);
    let running = sim.ctl(Verb::Start, &["api"], None);
    assert_eq!(running["workers"][0]["result"], "already running");
}

#[test]
fn signal_goes_by_signal_target_and_only_to_running_workers() {
    let mut group = service("api");
    group.signal_target = crate::config::SignalTarget::Group;
    let mut process = service("celery");
    process.signal_target = crate::config::SignalTarget::Process;
    let mut sim = Sim::new(vec![group, process, service("db")]);
    let (api, celery) = (sim.pid(0), sim.pid(1));
    sim.ctl(Verb::Stop, &["db"], None);
    sim.exit(2, Exit::Code(0));
    sim.take_actions();
    let reply = sim.ctl(Verb::Signal, &["api", "celery"], Some(libc::SIGHUP));
    assert_eq!(reply["ok"], true);
    let actions = sim.take_actions();
    assert!(actions.contains(&Action::SignalGroup {
        pgid: api,
        signal: libc::SIGHUP
    }));
    assert!(actions.contains(&Action::SignalProcess {
        pid: celery,
        signal: libc::SIGHUP
    }));
    let refused = sim.ctl(Verb::Signal, &["db"], Some(libc::SIGHUP));
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("not running (stopped)"),
        "{refused}"
    );
}

#[test]
fn unknown_names_refuse_the_whole_request() {
    let mut sim = Sim::new(vec![service("api")]);
    let reply = sim.ctl(Verb::Stop, &["api", "nope"], None);
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"], "no worker named \"nope\"");
    assert_eq!(sim.state(0), "ready", "nothing done");
    let event = sim.named("control")[0];
    assert_eq!(Sim::field(event, "ok"), false);
    assert_eq!(Sim::field(event, "peer_uid"), 0);
}

#[test]
fn ready_needs_every_worker_ready_or_completed() {
    let mut oneshot = service("migrate");
    oneshot.restart = crate::config::RestartPolicy::Never;
    let mut sim = Sim::new(vec![service("api"), oneshot]);
    sim.exit(0, Exit::Code(1));
    let backoff = sim.ctl(Verb::Ready, &[], None);
    assert_eq!(backoff["ready"], false, "api in backoff");
    assert_eq!(backoff["not_ready"][0]["state"], "backoff");
    sim.advance(1000);
    sim.exit(1, Exit::Code(0));
    assert_eq!(sim.state(1), "completed");
    assert_eq!(sim.ctl(Verb::Ready, &[], None)["ready"], true);
    sim.ctl(Verb::Stop, &["api"], None);
    sim.exit(0, Exit::Code(0));
    let reply = sim.ctl(Verb::Ready, &[], None);
    assert_eq!(reply["ready"], false, "a stopped service is not ready");
    assert_eq!(reply["not_ready"][0]["state"], "stopped");
}

#[test]
fn shutdown_is_like_sigterm_and_refuses_later_changes() {
    let mut sim = Sim::new(vec![service("api")]);
    assert_eq!(sim.ctl(Verb::Shutdown, &[], None)["ok"], true);
    let started = sim.named("shutdown_started");
    assert_eq!(Sim::field(started[0], "reason"), "ctl_shutdown");
    let refused = sim.ctl(Verb::Start, &["api"], None);
    assert_eq!(refused["ok"], false);
    assert!(refused["error"].as_str().unwrap().contains("shutting down"));
    assert_eq!(sim.ctl(Verb::Ready, &[], None)["ready"], false);
    sim.exit(0, Exit::Signal(libc::SIGTERM));
    sim.feed(Input::ChildrenGone);
    let complete = sim.named("shutdown_complete");
    assert_eq!(Sim::field(complete[0], "exit_code"), 0);
}

#[test]
fn status_shows_the_last_memory_reading() {
    let mut spec = service("api");
    spec.max_rss_mb = Some(100);
    let mut sim = Sim::new(vec![spec, service("db")]);
    let pid = sim.pid(0);
    sim.feed(Input::MemorySample {
        worker: 0,
        pid,
        memory: TreeMemory {
            total_bytes: 5 << 20,
            source: Some(MemorySource::RssAnonShmem),
            top: vec![(pid, 5 << 20)],
            processes: 1,
        },
    });
    sim.advance(1500);
    let status = sim.ctl(Verb::Status, &[], None);
    assert_eq!(status["workers"][0]["memory_bytes"], 5 << 20);
    assert_eq!(status["workers"][0]["uptime_ms"], 1500);
    assert_eq!(status["workers"][0]["pid"], pid);
    assert_eq!(status["workers"][1]["memory_bytes"], Value::Null);
    assert_eq!(status["workers"].as_array().unwrap().len(), 2);
}

#[test]
fn a_stop_while_starting_stops_the_run_the_moment_it_is_confirmed() {
    let mut sup = Supervisor::new(Mode::Config, 8000, vec![service("api")]);
    let spawn = sup.handle(Input::Tick, 0);
    assert!(spawn.contains(&Action::Spawn { worker: 0 }));
    sup.handle(Input::Forked { worker: 0, pid: 50 }, 1);
    let request = Request {
        verb: Verb::Stop,
        workers: vec!["api".into()],
        signal: None,
    };
    let actions = sup.handle(
        Input::Control {
            client: 1,
            peer_uid: 0,
            request,
        },
        2,
    );
    let reply = actions.iter().find_map(|a| match a {
        Action::Reply { reply, .. } => Some(reply.clone()),
        _ => None,
    });
    assert_eq!(reply.unwrap()["workers"][0]["result"], "stopping");
    let confirmed = sup.handle(Input::Spawned { worker: 0, pid: 50 }, 3);
    assert!(
        confirmed.contains(&Action::SignalGroup {
            pgid: 50,
            signal: libc::SIGTERM
        }),
        "{confirmed:?}"
    );
    let exited = sup.handle(
        Input::Exited {
            pid: 50,
            exit: Exit::Signal(libc::SIGTERM),
        },
        4,
    );
    let cause = exited.iter().find_map(|a| match a {
        Action::Emit(e) if e.name == "worker_exited" => e.field("likely_cause").cloned(),
        _ => None,
    });
    assert_eq!(cause, Some(Value::from("stopped")));
    sup.handle(Input::GroupEmpty { worker: 0 }, 5);
    assert_eq!(sup.workers[0].state().as_str(), "stopped");
    assert_eq!(sup.next_deadline(), None);
}
