//! The handoff registry and `--reap` (issue 5) on real processes: no orphan survives a
//! restart, no wrong process is killed, and the registry survives crashes and full disks.

mod common;

use common::registry::*;
use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Two workers, each a tree of 4 processes, some of them setsid'd out of the group.
const TREES: &str = r#"{"workers": [
  {"name": "tree-a", "command": ["sh", "-c", "sleep 1000 & setsid sh -c 'sleep 1000 & wait' & echo ready-a; wait"]},
  {"name": "tree-b", "command": ["sh", "-c", "sh -c 'sleep 1000 & wait' & sleep 1000 & echo ready-b; wait"]}
]}"#;

/// Starts TREES as a subreaper with `state` as its state dir, the two workers renamed to unique
/// names (returned), with `env` added to fleet-init's environment.
fn start_trees(dir: &TempDir, state: &Path, env: &[(&str, &str)]) -> (Fleet, String, String) {
    let (a, b) = (unique("a"), unique("b"));
    let config = TREES.replace("tree-a", &a).replace("tree-b", &b);
    let file = dir.write("trees.json", &config);
    let mut start = subreaper(&[
        "--state-dir",
        state.to_str().unwrap(),
        "--config",
        file.to_str().unwrap(),
    ]);
    for (key, value) in env {
        start = start.env(key, value);
    }
    (start.spawn(), a, b)
}

/// Starts TREES under a unique worker prefix, waits until both trees run and are recorded by
/// pid, SIGKILLs fleet-init, and returns the orphaned processes.
fn orphan_trees(dir: &TempDir, state: &Path) -> Vec<i32> {
    let (mut fleet, a, b) = start_trees(dir, state, &[]);
    fleet.wait_output("ready-a", BOUND);
    fleet.wait_output("ready-b", BOUND);
    assert!(eventually(BOUND, || {
        processes_of(&a).len() == 4
            && processes_of(&b).len() == 4
            && recorded_pids(state).len() == 2
    }));
    fleet.signal(libc::SIGKILL);
    fleet.wait_exit(BOUND);
    let mut orphans = processes_of(&a);
    orphans.extend(processes_of(&b));
    assert_eq!(orphans.len(), 8, "the trees outlive their SIGKILLed init");
    orphans
}

#[test]
fn reap_after_a_sigkilled_init_leaves_zero_survivors() {
    let dir = TempDir::new();
    let state = dir.path("state");
    let orphans = orphan_trees(&dir, &state);
    let (code, fleet) = reap(&state);
    assert_eq!(code, 0);
    let complete = &fleet.named("reap_complete")[0];
    assert_eq!(complete["survivors"], 0);
    assert_eq!(complete["reaped"], 8);
    assert_eq!(fleet.named("reaped").len(), 8);
    assert!(eventually(BOUND, || orphans
        .iter()
        .all(|pid| !is_alive(*pid))));
    assert!(handoff_files(&state).is_empty(), "consumed");
    let (again, fleet) = reap(&state);
    assert_eq!(again, 0);
    assert_eq!(fleet.named("reap_complete")[0]["reaped"], 0);
}

#[test]
fn a_normal_start_reaps_the_previous_generation_before_spawning() {
    let dir = TempDir::new();
    let state = dir.path("state");
    let orphans = orphan_trees(&dir, &state);
    let mut next = subreaper(&[
        "--state-dir",
        state.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo next-ready; sleep 1000",
    ])
    .spawn();
    next.wait_output("next-ready", BOUND);
    next.wait_event("worker_started");
    let names: Vec<String> = next
        .events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    let first_reaped = names.iter().position(|n| n == "reaped").unwrap();
    let first_started = names.iter().position(|n| n == "worker_started").unwrap();
    assert!(first_reaped < first_started, "{names:?}");
    assert_eq!(next.named("reap_complete")[0]["reaped"], 8);
    assert!(orphans.iter().all(|pid| !is_alive(*pid)));
    next.signal(libc::SIGTERM);
    next.wait_exit(BOUND);
}

#[test]
fn the_registry_survives_a_sigkill_at_any_moment_and_the_reap_leaves_nothing() {
    // Long-lived workers with a child each, killed with their init at a random moment of the
    // start: whatever had started by then is this generation's, and the reap finds all of it.
    let dir = TempDir::new();
    let state = dir.path("state");
    let worker = unique("loop");
    let config = json!({"workers": [
        // Their output goes elsewhere: the harness would wait for orphans holding its pipe.
        {"name": worker, "command": ["sh", "-c", "exec >/dev/null 2>&1; sleep 1000 & exec sleep 1000"]},
        {"name": format!("{worker}-b"), "command": ["sh", "-c", "exec sleep 1000 >/dev/null 2>&1"]}
    ]});
    let file = dir.write("loop.json", &config.to_string());
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut had_processes = 0;
    for round in 0..200 {
        let mut fleet = subreaper(&[
            "--state-dir",
            state.to_str().unwrap(),
            "--config",
            file.to_str().unwrap(),
        ])
        .spawn();
        fleet.wait_event("init_started");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 20_000));
        fleet.signal(libc::SIGKILL);
        fleet.wait_exit(BOUND);
        for path in handoff_files(&state) {
            let text = read_to_string(&path);
            let _: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("round {round}: torn registry {path:?}: {e}\n{text}"));
        }
        let before = processes_of(&worker).len() + processes_of(&format!("{worker}-b")).len();
        had_processes += usize::from(before > 0);
        let (code, reaper) = reap(&state);
        assert_eq!(code, 0, "round {round}");
        assert_eq!(
            reaper.named("reap_complete")[0]["survivors"],
            0,
            "round {round}"
        );
        let left = processes_of(&worker).len() + processes_of(&format!("{worker}-b")).len();
        assert_eq!(left, 0, "round {round}: {before} before the reap");
        assert!(handoff_files(&state).is_empty(), "round {round}: consumed");
    }
    assert!(
        had_processes > 100,
        "the kill mostly lands after a spawn: {had_processes}"
    );
}

#[test]
fn a_reused_pid_is_left_alone() {
    // In a private PID namespace: record a worker, kill it and its init, make an unrelated
    // process take the same pid through ns_last_pid, then --reap.
    let dir = TempDir::new();
    let state = dir.path("state");
    let script = r#"
        S=$1; B=$2
        $B --state-dir $S -- sleep 1000 >/dev/null 2>&1 &
        F=$!
        W=""; i=0
        while [ -z "$W" ] && [ $i -lt 500 ]; do
          W=$(python3 -c "import json,glob; d=json.load(open(glob.glob('$S/handoff-*.json')[0])); print(d['entries'][0]['pid'])" 2>/dev/null)
          i=$((i+1)); [ -z "$W" ] && sleep 0.01
        done
        kill -9 $F; wait $F; kill -9 $W
        i=0; while [ -e /proc/$W ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
        echo $((W - 1)) > /proc/sys/kernel/ns_last_pid
        sleep 1000 &
        N=$!
        [ "$N" = "$W" ] && echo reused=yes || echo "reused=no $N $W"
        $B --reap --state-dir $S
        echo reap_rc=$?
        [ -e /proc/$N ] && echo alive=yes
        kill $N
    "#;
    let mut fleet = pid1(&[
        "--",
        "sh",
        "-c",
        script,
        "sh",
        state.to_str().unwrap(),
        bin(),
    ])
    .spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    for line in ["reused=yes", "reap_rc=0", "alive=yes"] {
        assert!(
            fleet.output.iter().any(|l| l == line),
            "{line}: {:?}",
            fleet.output
        );
    }
    // The newcomer has the recorded pid but another start time, and does not carry the
    // generation's id: it is nobody's target.
    assert!(fleet.named("reaped").is_empty(), "{:?}", fleet.events);
}

#[test]
fn entries_of_another_boot_are_never_signalled() {
    let dir = TempDir::new();
    let state = dir.path("state");
    let mut victim = sleeper(&[]);
    let pid = victim.id() as i32;
    let entry = json!([{"worker": "old", "run": 1, "pid": pid, "start_time": start_time(pid), "cmdline": ["sleep", "1000"]}]);
    write_handoff(
        &state,
        &format!("handoff-{DEAD_GENERATION}.json"),
        &handoff_of(entry, "another-boot"),
    );
    let (code, fleet) = reap(&state);
    assert_eq!(code, 0);
    assert!(is_alive(pid));
    let reason = fleet.named("reap_skipped")[0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.starts_with("written under another boot"), "{reason}");
    assert!(handoff_files(&state).is_empty());
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn protected_pids_are_skipped_with_a_reason() {
    let dir = TempDir::new();
    let state = dir.path("state");
    // The test process itself is an ancestor of the reaper: protected.
    let me = std::process::id() as i32;
    let cmdline: Vec<String> = read_to_string(Path::new("/proc/self/cmdline"))
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let entry = json!([{"worker": "me", "run": 1, "pid": me, "start_time": start_time(me), "cmdline": cmdline}]);
    write_handoff(
        &state,
        &format!("handoff-{DEAD_GENERATION}.json"),
        &handoff_of(entry, &boot_id()),
    );
    let (code, fleet) = reap(&state);
    assert_eq!(code, 0);
    let skipped = &fleet.named("reap_skipped")[0];
    assert_eq!(skipped["reason"], "protected pid");
    assert_eq!(skipped["pid"], me);
    assert_eq!(skipped["worker"], "me");
}

#[test]
fn a_worker_name_alone_never_makes_a_target() {
    // The dead generation had a worker of this name; processes that carry the name but
    // another generation's id, or none, are someone else's.
    let dir = TempDir::new();
    let state = dir.path("state");
    let name = unique("ghost");
    let mut carrier = sleeper(&[
        ("FLEET_INIT_WORKER", &name),
        ("FLEET_INIT_GENERATION", "0123456789abcdef0123456789abcdef"),
    ]);
    let mut bare = sleeper(&[("FLEET_INIT_WORKER", &name)]);
    let mut ours = sleeper(&[
        ("FLEET_INIT_WORKER", &name),
        ("FLEET_INIT_GENERATION", DEAD_GENERATION),
    ]);
    write_handoff(
        &state,
        &format!("handoff-{DEAD_GENERATION}.json"),
        &handoff_of(json!([]), &boot_id()),
    );
    let (code, fleet) = reap(&state);
    assert_eq!(code, 0);
    let reaped = fleet.named("reaped");
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(reaped[0]["pid"], ours.id());
    assert_eq!(reaped[0]["worker"], name.as_str());
    assert!(ours.wait().unwrap().signal().is_some());
    for other in [&mut carrier, &mut bare] {
        assert!(is_alive(other.id() as i32));
        other.kill().unwrap();
        other.wait().unwrap();
    }
}

use std::os::unix::process::ExitStatusExt;

#[test]
fn a_corrupt_file_is_moved_aside_and_the_exit_is_1() {
    let dir = TempDir::new();
    let state = dir.path("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(state.join("handoff-5-5.json"), b"{\"version\": 2, \"entr").unwrap();
    let (code, fleet) = reap(&state);
    assert_eq!(code, 1);
    let corrupt = &fleet.named("handoff_corrupt")[0];
    let moved = corrupt["moved_to"].as_str().unwrap();
    assert!(moved.contains("handoff-5-5.json.corrupt-"));
    assert_eq!(
        std::fs::read(moved).unwrap(),
        b"{\"version\": 2, \"entr",
        "kept, never deleted"
    );
    assert!(!state.join("handoff-5-5.json").exists());
}

#[test]
fn files_someone_else_could_have_planted_are_refused() {
    let dir = TempDir::new();
    let mut victim = sleeper(&[]);
    let pid = victim.id() as i32;
    let entry = json!([{"worker": "x", "run": 1, "pid": pid, "start_time": start_time(pid), "cmdline": ["sleep", "1000"]}]);
    let handoff = handoff_of(entry, &boot_id());
    for (case, want) in [
        ("symlink", "refused: a symlink"),
        (
            "world-writable",
            "refused: writable by group or others (mode 666)",
        ),
        ("foreign", "refused: owned by uid 65534"),
    ] {
        let state = dir.path(case);
        let real = write_handoff(&dir.0, &format!("{case}.json"), &handoff);
        let name = format!("handoff-{DEAD_GENERATION}.json");
        let path = state.join(&name);
        std::fs::create_dir_all(&state).unwrap();
        match case {
            "symlink" => std::os::unix::fs::symlink(&real, &path).unwrap(),
            "world-writable" => {
                write_handoff(&state, &name, &handoff);
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
            }
            _ => {
                write_handoff(&state, &name, &handoff);
                std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            }
        }
        let (code, fleet) = reap(&state);
        assert_eq!(code, 1, "{case}");
        let reason = fleet.named("reap_skipped")[0]["reason"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(reason.starts_with(want), "{case}: {reason}");
        assert!(is_alive(pid), "{case}: nothing killed");
        assert!(
            std::fs::symlink_metadata(&path).is_ok(),
            "{case}: left in place"
        );
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn a_full_filesystem_keeps_the_old_entries_and_reports_the_failure() {
    let dir = TempDir::new();
    let disk = Tmpfs::mount(dir.path("tmpfs"), "size=64k,mode=0700");
    let state = disk.0.clone();
    let config = json!({"workers": [
        {"name": "steady", "command": ["sleep", "1000"]},
        {"name": "bouncer", "command": ["sh", "-c", "read line; exit 0"], "restart": "always"}
    ]});
    let mut fleet = config_start(&dir, &state, &config)
        .stdin(Stdio::piped())
        .spawn();
    fleet.wait_event("handoff_persisted");
    assert!(eventually(BOUND, || recorded_pids(&state).len() == 2));
    let before = recorded_pids(&state);
    // Fill the filesystem.
    disk.fill();
    // A restart of "bouncer" changes the registry: its write must fail and lose nothing.
    let bouncer = fleet.wait_event_where("worker_started", |e| e["worker"] == "bouncer", BOUND)
        ["pid"]
        .as_i64()
        .unwrap() as i32;
    // SAFETY: killing the worker this test started.
    unsafe { libc::kill(bouncer, libc::SIGKILL) };
    let failed = fleet.wait_event("handoff_persist_failed");
    assert!(
        failed["error"].as_str().unwrap().contains("No space left"),
        "{failed}"
    );
    assert_eq!(
        recorded_pids(&state),
        before,
        "the old durable entries survive"
    );
    std::fs::remove_file(state.join("filler")).unwrap();
    // The next change is written again.
    let bouncer = fleet.wait_nth("worker_started", 3, BOUND)["pid"]
        .as_i64()
        .unwrap() as i32;
    unsafe { libc::kill(bouncer, libc::SIGKILL) };
    fleet.wait_nth("handoff_persisted", 2, BOUND);
    // The recovery may land while "bouncer" waits out its crash backoff: wait for its restart.
    assert!(eventually(BOUND, || recorded_pids(&state).len() == 2));
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert!(
        handoff_files(&state).is_empty(),
        "nothing left, nothing recorded"
    );
}

#[test]
fn a_state_dir_that_cannot_exist_is_reported_once_and_the_container_runs() {
    let mut fleet = subreaper(&[
        "--state-dir",
        "/proc/fleet-init-cannot-exist/state",
        "--",
        "sh",
        "-c",
        "exit 3",
    ])
    .spawn();
    assert_eq!(fleet.wait_exit(BOUND), 3);
    let failed = fleet.named("handoff_persist_failed");
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["error"]
        .as_str()
        .unwrap()
        .contains("running without a registry"));
    assert_eq!(fleet.named("worker_exited")[0]["code"], 3);
}

/// The default build is the one shipped: it has no fault switch, so FLEET_INIT_FAULT changes
/// nothing (the fault build would end abnormally, 42, as soon as the worker is recorded).
#[cfg(not(feature = "fault-injection"))]
#[test]
fn the_shipped_build_ignores_the_fault_switch() {
    let dir = TempDir::new();
    let config = json!({"workers": [{"name": unique("plain"), "restart": "never",
        "command": ["sh", "-c", "exec >/dev/null 2>&1; sleep 0.05"]}]});
    let file = dir.write("plain.json", &config.to_string());
    let mut fleet = subreaper(&["--config", file.to_str().unwrap()])
        .env("FLEET_INIT_FAULT", "abend:42")
        .spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0, "{:?}", fleet.events);
    assert_eq!(fleet.named("init_started").len(), 1, "no exec of --reap");
    assert_eq!(
        fleet.named("worker_exited")[0]["likely_cause"],
        "clean_exit"
    );
}

/// Tests of the fault switch, which only the `fault-injection` build has: `make test` runs
/// `abnormal_end::` from that build, everything else from the shipped one.
#[cfg(feature = "fault-injection")]
mod abnormal_end {
    use super::*;

    #[test]
    fn an_abnormal_end_execs_reap_and_exits_with_the_intended_code() {
        for (fault, want) in [("abend:42", 42), ("panic", 1)] {
            let dir = TempDir::new();
            let state = dir.path("state");
            let (mut fleet, a, b) = start_trees(&dir, &state, &[("FLEET_INIT_FAULT", fault)]);
            assert_eq!(fleet.wait_exit(BOUND), want, "{fault}");
            let modes: Vec<&Value> = fleet
                .named("init_started")
                .iter()
                .map(|e| &e["mode"])
                .collect();
            assert_eq!(
                modes,
                [&json!("config"), &json!("reap")],
                "{fault}: same process execs --reap"
            );
            let pids: Vec<&Value> = fleet
                .named("init_started")
                .iter()
                .map(|e| &e["pid"])
                .collect();
            assert_eq!(pids[0], pids[1], "{fault}: same PID");
            assert_eq!(fleet.named("reap_complete")[0]["survivors"], 0);
            assert!(
                processes_of(&a).is_empty() && processes_of(&b).is_empty(),
                "{fault}: orphans gone"
            );
        }
    }
}

#[test]
fn an_escapee_being_drained_when_the_init_died_is_found_by_name() {
    // The main process exits; its setsid'd child ignores SIGTERM, so fleet-init is still
    // draining it (30 s grace) when it is SIGKILLed. The recorded main pid is gone by then.
    let dir = TempDir::new();
    let state = dir.path("state");
    let escapee_file = dir.path("escapee.pid");
    let worker = unique("drained");
    // The main process exits only once the escapee ignores SIGTERM (else the drain's stop
    // signal could land before its trap and end the test's premise).
    let ready = dir.path("escapee.ready");
    let script = format!(
        "setsid sh -c 'trap \"\" TERM; touch {ready}; sleep 1000' & echo $! > {pid}; \
         i=0; while [ ! -e {ready} ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; exit 0",
        ready = ready.display(),
        pid = escapee_file.display()
    );
    let config = json!({"workers": [{"name": worker, "command": ["sh", "-c", script],
        "stop_grace_ms": 30_000}]});
    let mut fleet = config_start(&dir, &state, &config).spawn();
    fleet.wait_event("worker_exited");
    let escapee: i32 = read_to_string(&escapee_file).trim().parse().unwrap();
    assert!(is_alive(escapee));
    assert_eq!(
        fleet.named("worker_started").len(),
        1,
        "not restarted while draining"
    );
    fleet.signal(libc::SIGKILL);
    fleet.wait_exit(BOUND);
    let (code, reaper) = reap(&state);
    assert_eq!(code, 0);
    assert!(
        reaper.named("reaped").iter().any(|e| e["pid"] == escapee),
        "{:?}",
        reaper.events
    );
    assert!(eventually(BOUND, || !is_alive(escapee)));
}

#[test]
fn a_copy_of_a_live_generation_s_file_under_another_name_is_refused() {
    // A copy of a live fleet-init's file under another name, its owner changed to a dead pid:
    // the reap judged the same generation alive by one file and dead by the other, and killed
    // the live generation's processes.
    let dir = TempDir::new();
    let state = dir.path("state");
    let live = "0123456789abcdef0123456789abcdef";
    let mut victim = sleeper(&[("FLEET_INIT_GENERATION", live)]);
    let pid = victim.id() as i32;
    let me = std::process::id() as i32;
    let mut own = handoff_of(json!([]), &boot_id());
    own["generation"] = json!(live);
    own["owner"] = json!({"pid": me, "start_time": start_time(me)});
    write_handoff(&state, &format!("handoff-{live}.json"), &own);
    let mut copy = handoff_of(json!([]), &boot_id());
    copy["generation"] = json!(live);
    write_handoff(&state, &format!("handoff-{DEAD_GENERATION}.json"), &copy);
    let (code, fleet) = reap(&state);
    assert!(is_alive(pid), "{:?}", fleet.events);
    assert!(fleet.named("reaped").is_empty());
    assert_eq!(code, 1, "a refused file");
    let reasons: Vec<&str> = fleet
        .named("reap_skipped")
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&format!("refused: its name is not its generation's ({live})").as_str()),
        "{reasons:?}"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
}

fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_protected_process_is_skipped_with_its_subtree_and_reported_once_reparented() {
    // 3 carries the dead id, 5 (its child, protected) does not, nor do 5's two sleeps. The
    // walk from 3 went through 5 and signalled the sleeps; 5 itself, reparented away once 3
    // was gone, was not in the last scan's tree and was never reported.
    let dir = TempDir::new();
    let state = dir.path("state");
    let generation = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
    let mut tree = Command::new("sh")
        .args([
            "-c",
            "env -u FLEET_INIT_GENERATION sh -c 'sleep 1001 & sleep 1002 & wait' & wait",
        ])
        .env("FLEET_INIT_GENERATION", generation)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let outer = tree.id() as i32;
    let inner = || {
        children_of(outer)
            .into_iter()
            .find(|pid| children_of(*pid).len() == 2)
    };
    assert!(eventually(BOUND, || inner().is_some()), "the tree is up");
    let inner = inner().unwrap();
    let sleeps = children_of(inner);
    let mut handoff = handoff_of(json!([]), &boot_id());
    handoff["generation"] = json!(generation);
    write_handoff(&state, &format!("handoff-{generation}.json"), &handoff);
    let protect = inner.to_string();
    let args = [
        "--reap",
        "--state-dir",
        state.to_str().unwrap(),
        "--grace-ms",
        "2000",
        "--protect",
        &protect,
    ];
    let mut fleet = subreaper(&args).spawn();
    let code = fleet.wait_exit(BOUND);
    let alive: Vec<bool> = sleeps.iter().map(|pid| is_alive(*pid)).collect();
    let skipped: Vec<(Value, Value)> = fleet
        .named("reap_skipped")
        .iter()
        .map(|e| (e["pid"].clone(), e["reason"].clone()))
        .collect();
    for pid in sleeps.iter().chain([&inner]) {
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let _ = tree.wait();
    assert_eq!(alive, [true, true], "the protected process's children");
    assert_eq!(skipped, [(json!(inner), json!("protected pid"))]);
    assert_eq!(fleet.named("reaped").len(), 1, "the outer sh alone");
    assert_eq!(code, 0);
}
