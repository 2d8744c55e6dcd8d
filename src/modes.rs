//! From validated options to a running mode: single command, config, check-config, version.
//! Before the main loop an error may end the program (exit 2); after it starts, never.

use crate::cli::{self, Command, Options, SingleOptions};
use crate::config::{self, Config, OutputMode, RestartPolicy, SignalTarget, WorkerSpec};
use crate::events::{self, Event};
use crate::handoff::format::Owner;
use crate::handoff::{Generation, Identity, Registry};
use crate::orphans;
use crate::procscan;
use crate::runtime::Ending;
use crate::runtime::Runtime;
use crate::signals::SignalInbox;
use crate::spawn::SpawnOptions;
use crate::startup::{
    become_subreaper, exec_reap, exec_reap_on_panic, set_mask, set_own_parent_death_signal,
    set_signal_mask, AbnormalEnd, REAP_EXIT_CODE_VAR, REAP_GENERATION_VAR,
};
use crate::supervisor::{Mode, Supervisor};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs fleet-init with the given arguments (program name excluded); returns the exit code.
pub fn main(args: impl Iterator<Item = std::ffi::OsString>) -> i32 {
    let args: Vec<std::ffi::OsString> = args.collect();
    // `fleet-init ctl ...` is a client: none of PID 1's set-up (a command named `ctl` runs
    // with `fleet-init -- ctl`).
    if let Some(("ctl", rest)) = args
        .split_first()
        .map(|(first, rest)| (first.to_str().unwrap_or(""), rest))
    {
        return ctl_mode(rest);
    }
    // As PID 1 the kernel drops a default-action signal, but never a blocked one: a SIGTERM
    // sent before the handlers exist waits here instead of being lost.
    set_signal_mask(true, &[]);
    let options = match cli::parse(&args, &|key| std::env::var_os(key)) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("fleet-init: {error}");
            return 2;
        }
    };
    crate::logger::init(options.log_level);
    events::set_target(options.events_target());
    match &options.command {
        Command::Help => {
            print!("{}", cli::texts::HELP);
            0
        }
        Command::License => {
            print!("{}", cli::texts::LICENSE);
            0
        }
        Command::Version => {
            println!("fleet-init {VERSION}");
            0
        }
        Command::CheckConfig(path) => {
            let (code, report) = config::parse::check_config_report(path);
            if code == 0 {
                println!("{report}");
            } else {
                eprint!("{report}");
                if !report.ends_with('\n') {
                    eprintln!();
                }
            }
            code
        }
        Command::Reap => reap_mode(&options),
        Command::Single(single) => {
            let spec = single_worker(single, &options);
            let mode = Mode::Single {
                remap_exit: single.remap_exit.clone(),
            };
            let plan = Plan {
                mode,
                mode_name: "single",
                grace_ms: options.grace_ms_or_default(),
                workers: vec![spec],
                state_dir: options.state_dir.clone(),
                protected_pids: options.protected_pids.clone(),
                is_single: true,
            };
            supervise(plan, &options)
        }
        Command::Config(path) => {
            match config::parse::load_config_with_grace(path, options.grace_ms) {
                Ok(config) => run_config(config, &options),
                Err(errors) => {
                    // One line per error, whatever the path holds.
                    let path = cli::one_line(&path.display().to_string());
                    for error in &errors {
                        eprintln!("fleet-init: {path}: {}", cli::one_line(&error.to_string()));
                    }
                    2
                }
            }
        }
    }
}

/// The single command as a one-worker config, so both modes share one supervisor.
fn single_worker(single: &SingleOptions, options: &Options) -> WorkerSpec {
    let program = single
        .command
        .first()
        .map(|program| program.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = program
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or("main");
    let mut spec =
        WorkerSpec::with_os_command(name, single.command.clone(), options.grace_ms_or_default());
    if single.is_single_child {
        // dumb-init's -c / DUMB_INIT_SETSID=0: signals go to the child only.
        spec.signal_target = SignalTarget::Process;
    }
    // A terminal must keep working: a single command's output is never piped.
    spec.output = OutputMode::Inherit;
    spec.restart = single.restart;
    if let Some(max_crashes) = single.max_crashes {
        spec.max_crashes = max_crashes;
    }
    spec.max_rss_mb = single.max_rss_mb;
    if spec.restart == RestartPolicy::Never {
        // tini semantics: the child's exit ends fleet-init, whatever its code.
        spec.max_crashes = u32::MAX;
    }
    spec
}

fn run_config(mut config: Config, options: &Options) -> i32 {
    // Flags and environment variables override the file's global options (the grace already
    // while parsing, since it is the workers' default stop grace too).
    if options.is_state_dir_explicit {
        config.state_dir = options.state_dir.clone();
    }
    let plan = Plan {
        mode: Mode::Config,
        mode_name: "config",
        grace_ms: config.grace_ms,
        workers: config.workers,
        state_dir: config.state_dir,
        protected_pids: [config.protected_pids, options.protected_pids.clone()].concat(),
        is_single: false,
    };
    supervise(plan, options)
}

/// Everything a supervising run needs, from either mode.
struct Plan {
    mode: Mode,
    mode_name: &'static str,
    grace_ms: u64,
    workers: Vec<WorkerSpec>,
    state_dir: PathBuf,
    protected_pids: Vec<i32>,
    is_single: bool,
}

fn supervise(plan: Plan, options: &Options) -> i32 {
    // The start's locals live in its own frame, gone before the loop runs, and the runtime on
    // the heap: the stack under the loop (resident while PID 1 sleeps) stays a few pages.
    let Some((mut runtime, abnormal)) = start(plan, options) else {
        return 2;
    };
    match runtime.run() {
        Ending::Exit(code) => exit_now(code),
        Ending::Abnormal(code) => exec_reap(&abnormal, code),
    }
}

/// The end of a supervising run: the last line is out, the registry and the socket are gone.
/// What is left (the runtime's destructors, std's exit-time cleanup of the signal stack) would
/// only free memory and close descriptors the kernel reclaims anyway, and on the way out of a
/// shutdown it touched code for the first time (page faults, measured ~25 us with perf).
fn exit_now(code: i32) -> ! {
    // Nothing of fleet-init writes through std's buffered stdout; flushed all the same.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: _exit ends the process at once; nothing of ours runs after it.
    unsafe { libc::_exit(code) }
}

/// Everything before the loop: signals, the start-up reap, the registry, the runtime (on the
/// heap: the loop's frame stays small). None when the signals cannot be set up.
#[inline(never)]
fn start(mut plan: Plan, options: &Options) -> Option<(Box<Runtime>, AbnormalEnd)> {
    // The state dir is used again after the move to `/` (the --reap exec): made absolute.
    plan.state_dir = std::path::absolute(&plan.state_dir).unwrap_or(plan.state_dir);
    let pid = std::process::id();
    if pid != 1 {
        become_subreaper();
    }
    let job_control = crate::job_control::JobControl::new(plan.is_single && pid != 1);
    let rewrite = job_control.rewrite(options);
    let inbox = match SignalInbox::install(rewrite) {
        Ok(inbox) => inbox,
        Err(error) => {
            eprintln!("fleet-init: cannot install signal handlers: {error}");
            return None;
        }
    };
    // Whatever arrived meanwhile waits in the signalfd; a mask inherited from whoever started
    // fleet-init is gone, but for the signals the signalfd reads.
    set_mask(inbox.blocked());
    if let Some(signal) = options.self_pdeathsig {
        set_own_parent_death_signal(signal);
    }
    // Written by the first line that follows, at the latest once the first workers are forked.
    events::hold_first(
        Event::info("init_started")
            .with("pid", pid)
            .with("mode", plan.mode_name)
            .with("version", VERSION),
    );
    let generation = Generation::new_random();
    let is_proc_ours = procscan::is_own_namespace(Path::new("/proc"));
    let registry = open_registry(&plan, generation, is_proc_ours);
    let state_dir = plan.state_dir.clone();
    let is_last_start = plan.is_single
        && plan
            .workers
            .first()
            .is_some_and(|spec| spec.restart == RestartPolicy::Never);
    let supervisor = Supervisor::new(plan.mode, plan.grace_ms, plan.workers);
    let spawn_options = SpawnOptions {
        foreground: plan.is_single,
        pdeathsig: options.pdeathsig,
        generation,
    };
    let mut runtime = Box::new(Runtime::new(
        supervisor,
        inbox,
        spawn_options,
        registry,
        is_proc_ours,
    ));
    runtime.close_inherited_fds_after_start(is_last_start);
    runtime.set_dropin(job_control, options.is_warn_on_reap);
    runtime.set_control(plan.state_dir.clone());
    let abnormal = AbnormalEnd {
        state_dir,
        grace_ms: plan.grace_ms,
        generation,
    };
    exec_reap_on_panic(abnormal.clone());
    Some((runtime, abnormal))
}

/// `fleet-init ctl`: usage errors exit 2; the client says the rest.
fn ctl_mode(args: &[std::ffi::OsString]) -> i32 {
    // A server that closed the connection is an error reply (exit 3), not a death by SIGPIPE;
    // Rust's runtime, which fleet-init starts without, would have ignored it for every mode.
    // SAFETY: installing SIG_IGN has no handler to run.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let options = match cli::ctl::parse(args, &|key| std::env::var_os(key)) {
        Ok(options) => options,
        Err(error) => {
            // One line, as every usage error (SPEC): the hint rides on it.
            eprintln!("fleet-init: {error} (see fleet-init ctl --help)");
            return 2;
        }
    };
    if options.is_help {
        print!("{}", cli::ctl::HELP);
        return 0;
    }
    crate::control::client::run(&options)
}

/// Consumes what previous generations left (before anything of ours runs), then opens this
/// generation's registry. Not PID 1, it writes the header now: from then on every process this
/// generation starts is findable by its id, even if fleet-init is killed before the next write.
/// As PID 1 there is nothing to find after such a death (the kernel kills the whole namespace
/// with its init, and an abnormal end's `--reap` looks for its own generation without a file),
/// so the first write is the one after the first fork, made while the worker execs.
#[inline(never)]
fn open_registry(plan: &Plan, generation: Generation, is_proc_ours: bool) -> Registry {
    let proc_root = Path::new("/proc");
    let self_pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    // PID 1 has no ancestor in its namespace to protect, and its registry reads its own stat
    // after the first fork (`Registry::deferred`): nothing to read here.
    let own = (self_pid != 1)
        .then(|| procscan::read_stat(proc_root, self_pid).found())
        .flatten();
    let protected = orphans::protected_pids_above(&plan.protected_pids, proc_root, own.as_ref());
    if !is_proc_ours {
        warn_foreign_proc();
    } else if orphans::has_leftovers(&plan.state_dir) {
        // The reap may take its grace: fleet-init says it is there before it waits.
        events::release_held();
        // The shutdown signals end the reap's grace; they stay pending for the loop, which then
        // starts nothing.
        let interrupt = crate::signals::watch(&[libc::SIGTERM, libc::SIGINT, libc::SIGQUIT]);
        let request = orphans::Request {
            grace: Duration::from_millis(plan.grace_ms),
            protected: &protected,
            is_quiet_when_empty: true,
            own_generation: None,
            interrupt: interrupt.as_ref().map(AsFd::as_fd),
        };
        orphans::reap(&plan.state_dir, &request);
    }
    if self_pid == 1 {
        return Registry::deferred(&plan.state_dir, generation, protected, read_identity);
    }
    let identity = identity_of(generation, own.as_ref());
    let (mut registry, event) = Registry::open(&plan.state_dir, identity, protected);
    if let Some(event) = event {
        events::emit(&event);
    }
    if let Some(event) = registry.persist(0) {
        events::emit(&event);
    }
    registry
}

/// Who fleet-init is, for its handoff file: this boot, this PID namespace, its pid and start
/// time.
fn read_identity(generation: Generation) -> Identity {
    let self_pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let own = procscan::read_stat(Path::new("/proc"), self_pid).found();
    identity_of(generation, own.as_ref())
}

/// `read_identity` with fleet-init's own stat already read.
fn identity_of(generation: Generation, own: Option<&procscan::ProcStat>) -> Identity {
    let proc_root = Path::new("/proc");
    Identity {
        generation,
        boot_id: procscan::read_boot_id(proc_root).unwrap_or_default(),
        pid_ns: procscan::read_pid_ns(proc_root).unwrap_or_default(),
        owner: Owner {
            pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
            start_time: own.map(|stat| stat.start_time).unwrap_or_default(),
        },
    }
}

/// `--reap`: consume the handoff files, stop the orphans, exit 0 when nothing recorded is left.
/// After an abnormal end, FLEET_INIT_REAP_EXIT_CODE carries the code fleet-init meant to exit
/// with.
fn reap_mode(options: &Options) -> i32 {
    // Every signal stays blocked (as `main` left them): SIGTERM, SIGINT and SIGQUIT cut the
    // grace short through the watch below, as in the start-up reap, instead of killing the
    // reaper (not PID 1) or being dropped by the kernel (PID 1) halfway through.
    let pid = std::process::id();
    if pid != 1 {
        become_subreaper();
    }
    events::emit(
        &Event::info("init_started")
            .with("pid", pid)
            .with("mode", "reap")
            .with("version", VERSION),
    );
    if !procscan::is_own_namespace(Path::new("/proc")) {
        warn_foreign_proc();
        return 1;
    }
    let protected = orphans::protected_pids(&options.protected_pids, Path::new("/proc"));
    let own_generation = std::env::var(REAP_GENERATION_VAR)
        .ok()
        .and_then(|text| Generation::parse(&text));
    let interrupt = crate::signals::watch(&[libc::SIGTERM, libc::SIGINT, libc::SIGQUIT]);
    let request = orphans::Request {
        grace: Duration::from_millis(options.grace_ms_or_default()),
        protected: &protected,
        is_quiet_when_empty: false,
        own_generation,
        interrupt: interrupt.as_ref().map(AsFd::as_fd),
    };
    let report = orphans::reap(&options.state_dir, &request);
    match std::env::var(REAP_EXIT_CODE_VAR)
        .ok()
        .and_then(|code| code.parse::<i32>().ok())
    {
        Some(code) => code,
        None => report.exit_code(),
    }
}

/// Without its own /proc, no recorded pid can be checked: nothing is reaped, the watchdog does
/// not sample, and only kill(-1) reaches the rest of the namespace.
fn warn_foreign_proc() {
    events::emit(
        &Event::error("reap_skipped")
            .with("reason", "/proc is not this PID namespace's (mount a fresh proc): nothing can be verified, nothing is reaped"),
    );
}
