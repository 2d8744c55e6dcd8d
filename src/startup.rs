//! What happens once at start and once at an abnormal end: the signal mask, the subreaper bit,
//! fleet-init's own working directory and parent-death signal, and the `--reap` exec (from the
//! panic hook too) that stops this generation's processes before the container's init exits.

use crate::events;
use crate::handoff::Generation;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Descriptors 0, 1 and 2 are open before fleet-init opens anything: one that is closed gets
/// /dev/null, as Rust's runtime would have done (`main.rs` says why fleet-init starts without
/// it). Otherwise the first descriptor fleet-init opens would take its number, and the events
/// meant for stderr would go into, say, the state dir's descriptor or a worker's pipe.
pub fn open_standard_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        // SAFETY: open of constant C strings. The lower standard descriptors are open by now,
        // so the lowest free number is `fd`; dup2 makes sure of it.
        unsafe {
            let mut opened = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if opened < 0 {
                // No /dev/null (a bare chroot): a descriptor nothing can be written through.
                opened = libc::open(c"/".as_ptr(), libc::O_PATH);
            }
            if opened >= 0 && opened != fd {
                libc::dup2(opened, fd);
                libc::close(opened);
            }
        }
    }
}

/// Closes fleet-init's copies of the descriptors above 2 it was started with (`docker run`
/// leaks, `podman --preserve-fds`, socket activation's LISTEN_FDS), as catatonit does once its
/// child runs: the worker has them, and fleet-init no longer keeps a pipe's write end, a lock
/// or a socket open for the container's lifetime. Only done when no worker will start again (a
/// single command that is never restarted); otherwise every new run gets them too.
///
/// They are told from fleet-init's own by the close-on-exec flag: an inherited descriptor
/// cannot have it (it would not have survived the exec into fleet-init), and every descriptor
/// fleet-init opens has it (`every_descriptor_fleet_init_opens_is_close_on_exec`). So nothing
/// needs recording before the first open: listing /proc/self/fd at start cost ~60 µs of a
/// start as PID 1 under `perf`; here it runs after the worker's exec, beside it. Without /proc
/// nothing is closed.
pub fn close_inherited_fds() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let listed: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    let mut closed = Vec::new();
    for fd in listed {
        // SAFETY: F_GETFD only reads the flags; a closed descriptor (the listing's own, closed
        // by now) is EBADF.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            // SAFETY: an inherited descriptor, not opened by fleet-init: nothing of
            // fleet-init's holds it as an OwnedFd.
            unsafe { libc::close(fd) };
            closed.push(fd);
        }
    }
    if !closed.is_empty() {
        log::debug!("closed the inherited descriptors {closed:?}: the worker has them");
    }
}

/// Workers still start where fleet-init was started; fleet-init itself moves to `/`, so that it
/// keeps no directory (a volume, a build tree) busy for the container's lifetime.
pub fn leave_start_directory() {
    let Ok(start) = std::env::current_dir() else {
        return;
    };
    crate::spawn::set_start_directory(&start);
    if let Err(error) = std::env::set_current_dir("/") {
        log::warn!("cannot move to /: {error}; staying in {}", start.display());
    }
}

/// tini's `-p`: the signal fleet-init itself gets when its parent dies (prctl(2)
/// PR_SET_PDEATHSIG), set once the handlers exist so that it is acted on like any other.
pub fn set_own_parent_death_signal(signal: i32) {
    let Ok(signal_arg) = libc::c_ulong::try_from(signal) else {
        return;
    };
    // SAFETY: plain prctl with integer arguments.
    let result = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal_arg, 0, 0, 0) };
    if result != 0 {
        log::warn!(
            "cannot set the parent-death signal {} ({})",
            crate::signals::name(signal),
            std::io::Error::last_os_error()
        );
    }
}

pub const REAP_EXIT_CODE_VAR: &str = "FLEET_INIT_REAP_EXIT_CODE";
/// The generation that ended abnormally: the exec'd `--reap` stops its processes (and every
/// descendant of this process) even when its registry could not be written.
pub const REAP_GENERATION_VAR: &str = "FLEET_INIT_REAP_GENERATION";

/// What the `--reap` exec after an abnormal end needs to know.
#[derive(Clone)]
pub struct AbnormalEnd {
    pub state_dir: PathBuf,
    pub grace_ms: u64,
    pub generation: Generation,
}

/// A panic must not take the container's init down with orphans still running: it ends like
/// any abnormal end, through --reap, exit code 1. Done in the panic hook, which runs before the
/// release build's abort (panic = "abort") as well as before any unwinding, on any thread.
pub fn exec_reap_on_panic(abnormal: AbnormalEnd) {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        exec_reap(&abnormal, 1);
    }));
}

/// Replaces this process (same PID, so the container keeps its init) with `fleet-init --reap`,
/// which stops every process of this generation (its descendants included, so nothing is left
/// even when the registry could not be written) and then exits with `code`.
pub fn exec_reap(abnormal: &AbnormalEnd, code: i32) -> i32 {
    // An end before the first fork: this run's `init_started` still goes out, before the reap's.
    events::release_held();
    log::error!("ending abnormally: reaping this generation's processes before exiting {code}");
    let code_text = code.to_string();
    let grace_text = abnormal.grace_ms.to_string();
    let generation_text = abnormal.generation.to_string();
    let events_target = events::target();
    let args: [&[u8]; 8] = [
        SELF_EXE.as_bytes(),
        b"--reap",
        b"--state-dir",
        abnormal.state_dir.as_os_str().as_bytes(),
        b"--grace-ms",
        grace_text.as_bytes(),
        b"--events",
        events_target.as_str().as_bytes(),
    ];
    // The environment as it is, with this end's two variables set (replaced if inherited).
    let ours = [
        (REAP_EXIT_CODE_VAR, code_text.as_str()),
        (REAP_GENERATION_VAR, generation_text.as_str()),
    ];
    let inherited = std::env::vars_os()
        .filter(|(key, _)| {
            !ours
                .iter()
                .any(|(name, _)| key.as_bytes() == name.as_bytes())
        })
        .map(|(key, value)| [key.as_bytes(), b"=", value.as_bytes()].concat());
    let set = ours
        .iter()
        .map(|(name, value)| format!("{name}={value}").into_bytes());
    let argv: Result<Vec<CString>, _> = args.iter().map(|arg| CString::new(*arg)).collect();
    let envp: Result<Vec<CString>, _> = inherited.chain(set).map(CString::new).collect();
    let error = match (CString::new(SELF_EXE), argv, envp) {
        (Ok(path), Ok(argv), Ok(envp)) => match nix::unistd::execve(&path, &argv, &envp) {
            Err(errno) => errno.desc().to_string(),
            Ok(never) => match never {},
        },
        // Only a NUL inside the state dir's path: it came from our own command line, where
        // the kernel cannot put one.
        _ => "an argument holds a NUL byte".to_string(),
    };
    // Only reached when exec failed: at least exit with the intended code.
    log::error!("cannot exec fleet-init --reap: {error}");
    code
}

/// This very binary, whatever its path (deleted or replaced since, it is still the one running).
const SELF_EXE: &str = "/proc/self/exe";

/// Blocks every signal, or unblocks every signal but `kept`.
pub fn set_signal_mask(is_blocked: bool, kept: &[i32]) {
    // SAFETY: sigset_t is plain data; sigfillset/sigemptyset/sigaddset and pthread_sigmask
    // write only those sets.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if is_blocked {
            libc::sigfillset(&mut set);
        } else {
            libc::sigemptyset(&mut set);
            for signal in kept {
                libc::sigaddset(&mut set, *signal);
            }
        }
        set_mask(&set);
    }
}

/// Exactly `set` blocked.
pub fn set_mask(set: &libc::sigset_t) {
    // SAFETY: pthread_sigmask with a valid set and no old set wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, set, std::ptr::null_mut()) };
}

/// Not PID 1: orphans of our descendants reparent to us instead of the host's init, so we can
/// reap them and wait for them (prctl(2) PR_SET_CHILD_SUBREAPER).
pub fn become_subreaper() {
    // SAFETY: plain prctl with integer arguments.
    let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if result != 0 {
        log::warn!(
            "cannot become a child subreaper ({}): orphans will not be reaped by fleet-init",
            std::io::Error::last_os_error()
        );
    }
}

/// The heap's free pages (the config's parse, the start-up reap's listings: memory the loop
/// does not use again) go back to the kernel, once, before the first sleep. An idle PID 1
/// keeps what its loop uses. Measured on the static build, idle: RssAnon 92 → 84 KiB.
pub fn release_start_memory() {
    // SAFETY: malloc_trim only gives free heap pages back; no allocation is moved.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}
