//! From validated options to a running mode: single command, config, check-config, version.
//! Before the main loop an error may end the program (exit 2); after it starts, never.

use crate::cli::{self, Command, Options, SingleOptions};
use crate::config::{self, Config, RestartPolicy, WorkerSpec};
use crate::events::{self, Event};
use crate::runtime::Runtime;
use crate::signals::SignalInbox;
use crate::spawn::SpawnOptions;
use crate::supervisor::{Mode, Supervisor};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs fleet-init with the given arguments (program name excluded); returns the exit code.
pub fn main(args: impl Iterator<Item = std::ffi::OsString>) -> i32 {
    let options = match cli::args_from_os(args)
        .and_then(|args| cli::parse(&args, &|key| std::env::var(key).ok()))
    {
        Ok(options) => options,
        Err(error) => {
            eprintln!("fleet-init: {error}");
            return 2;
        }
    };
    match &options.command {
        Command::Help(text) => {
            print!("{text}");
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
        Command::Reap => {
            eprintln!("fleet-init: --reap is not available in this version yet");
            2
        }
        Command::Single(single) => {
            let spec = single_worker(single, &options);
            let mode = Mode::Single {
                remap_exit: single.remap_exit.clone(),
            };
            supervise(
                mode,
                "single",
                options.grace_ms_or_default(),
                vec![spec],
                &options,
                true,
            )
        }
        Command::Config(path) => match config::parse::load_config(path) {
            Ok(config) => run_config(config, &options),
            Err(errors) => {
                for error in &errors {
                    eprintln!("fleet-init: {}: {error}", path.display());
                }
                2
            }
        },
    }
}

/// The single command as a one-worker config, so both modes share one supervisor.
fn single_worker(single: &SingleOptions, options: &Options) -> WorkerSpec {
    let name = single
        .command
        .first()
        .and_then(|program| program.rsplit('/').next())
        .filter(|name| !name.is_empty())
        .unwrap_or("main");
    let mut spec = WorkerSpec::new(name, single.command.clone(), options.grace_ms_or_default());
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
    // Flags and environment variables override the file's global options.
    if let Some(grace_ms) = options.grace_ms {
        config.grace_ms = grace_ms;
    }
    if options.is_state_dir_explicit {
        config.state_dir = options.state_dir.clone();
    }
    supervise(
        Mode::Config,
        "config",
        config.grace_ms,
        config.workers,
        options,
        false,
    )
}

fn supervise(
    mode: Mode,
    mode_name: &str,
    grace_ms: u64,
    workers: Vec<WorkerSpec>,
    options: &Options,
    is_single: bool,
) -> i32 {
    unblock_all_signals();
    let pid = std::process::id();
    if pid != 1 {
        become_subreaper();
    }
    let inbox = match SignalInbox::install() {
        Ok(inbox) => inbox,
        Err(error) => {
            eprintln!("fleet-init: cannot install signal handlers: {error}");
            return 2;
        }
    };
    events::emit(
        &Event::info("init_started")
            .with("pid", pid)
            .with("mode", mode_name)
            .with("version", VERSION),
    );
    let supervisor = Supervisor::new(mode, grace_ms, workers);
    let spawn_options = SpawnOptions {
        foreground: is_single,
        pdeathsig: options.pdeathsig,
    };
    Runtime::new(supervisor, inbox, spawn_options).run()
}

/// A mask inherited from whoever started fleet-init would keep SIGTERM from ever arriving.
fn unblock_all_signals() {
    // SAFETY: sigset_t is plain data; sigemptyset and pthread_sigmask write only those sets.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Not PID 1: orphans of our descendants reparent to us instead of the host's init, so we can
/// reap them and wait for them (prctl(2) PR_SET_CHILD_SUBREAPER).
fn become_subreaper() {
    // SAFETY: plain prctl with integer arguments.
    let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if result != 0 {
        log::warn!(
            "cannot become a child subreaper ({}): orphans will not be reaped by fleet-init",
            std::io::Error::last_os_error()
        );
    }
}
