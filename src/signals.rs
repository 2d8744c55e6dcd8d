//! Signal names and numbers, the handlers that only record (signal-hook), and the self-pipe the
//! main loop sleeps on. Nothing here acts on a signal: the loop drains and decides.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// Standard signals by name; real-time ones are spelled `SIGRTMIN+N`.
const NAMES: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGILL", libc::SIGILL),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGABRT", libc::SIGABRT),
    ("SIGBUS", libc::SIGBUS),
    ("SIGFPE", libc::SIGFPE),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGALRM", libc::SIGALRM),
    ("SIGTERM", libc::SIGTERM),
    ("SIGSTKFLT", libc::SIGSTKFLT),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGPROF", libc::SIGPROF),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGIO", libc::SIGIO),
    ("SIGPWR", libc::SIGPWR),
    ("SIGSYS", libc::SIGSYS),
];

/// Highest signal number on Linux (SIGRTMAX with glibc).
pub const MAX_SIGNAL: i32 = 64;

/// `SIGTERM`, or `SIGRTMIN+3` for real-time signals.
pub fn name(signal: i32) -> String {
    if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == signal) {
        return (*name).to_string();
    }
    let rtmin = libc::SIGRTMIN();
    if signal >= rtmin && signal <= MAX_SIGNAL {
        return format!("SIGRTMIN+{}", signal - rtmin);
    }
    format!("signal {signal}")
}

/// Parses `SIGTERM`, `TERM`, `term` or `15`. `None` for anything that is not a signal.
pub fn parse(text: &str) -> Option<i32> {
    if let Ok(number) = text.parse::<i32>() {
        return (1..=MAX_SIGNAL).contains(&number).then_some(number);
    }
    let upper = text.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(offset) = full.strip_prefix("SIGRTMIN+") {
        let offset: i32 = offset.parse().ok()?;
        let number = libc::SIGRTMIN().checked_add(offset)?;
        return (number <= MAX_SIGNAL).then_some(number);
    }
    NAMES
        .iter()
        .find(|(n, _)| *n == full)
        .map(|(_, number)| *number)
}

/// Signals fleet-init itself acts on or forwards, through signal-hook. The fault signals have a
/// handler of their own (`FAULTS`); SIGTTIN/SIGTTOU are ignored as tini does, or kept blocked
/// with job control, so a background fleet-init is never stopped by its terminal;
/// SIGKILL/SIGSTOP cannot be caught.
pub fn handled() -> Vec<i32> {
    let mut signals = vec![
        libc::SIGCHLD,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGWINCH,
        libc::SIGCONT,
        libc::SIGTSTP,
        libc::SIGURG,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGSTKFLT,
    ];
    signals.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    signals
}

/// Per-signal arrival counters, written only by the handlers (an atomic add is
/// async-signal-safe) and read by the main loop.
static COUNTS: [AtomicU32; 65] = [const { AtomicU32::new(0) }; 65];

/// The fault signals: about fleet-init itself when the kernel raises them (a real fault, which
/// must keep its default action), to be forwarded when another process sent them with kill(2).
/// SIGPIPE is also raised by fleet-init's own write to a closed pipe (with its own pid as the
/// sender): that one is ignored.
pub const FAULTS: [i32; 8] = [
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGSEGV,
    libc::SIGSYS,
    libc::SIGPIPE,
];

/// The wake-up pipe's write end, for the fault handler (signal-hook's closures hold their own).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Records a fault signal sent by another process; gives a real fault back its default action.
extern "C" fn on_fault_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _: *mut libc::c_void,
) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t; getpid, sigaction and
    // write are async-signal-safe; the handler allocates nothing and takes no lock.
    unsafe {
        let Some(info) = info.as_ref() else {
            return;
        };
        // SI_USER (0), SI_QUEUE, SI_TKILL... are <= 0: sent by a process, not by a fault.
        let is_sent = info.si_code <= 0 && info.si_pid() != libc::getpid();
        if is_sent {
            if let Some(count) = usize::try_from(signal).ok().and_then(|i| COUNTS.get(i)) {
                count.fetch_add(1, Ordering::SeqCst);
            }
            libc::write(WAKE_FD.load(Ordering::Relaxed), [0u8].as_ptr().cast(), 1);
        } else if signal != libc::SIGPIPE {
            // A real fault (or abort()): the default action, when the instruction runs again
            // or abort raises again.
            libc::signal(signal, libc::SIG_DFL);
        }
    }
}

fn install_fault_handlers() -> std::io::Result<()> {
    for signal in FAULTS {
        // SAFETY: sigaction with a zeroed struct, a full mask while it runs, and a handler
        // that is async-signal-safe (above).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fault_signal
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as usize;
            // SA_ONSTACK: on the alternate stack Rust sets up, so a stack overflow still gets
            // its default action back instead of dying in the handler.
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
            libc::sigfillset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The job-control signals dumb-init forwards and then stops itself for.
pub const JOB_CONTROL: [i32; 3] = [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// dumb-init's `-r S:T`: a received S is acted on as T; T 0 drops it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    pairs: Vec<(i32, i32)>,
}

impl Rewrite {
    /// The later of two rules for one signal wins, as in dumb-init.
    pub fn new(pairs: &[(i32, i32)]) -> Rewrite {
        let mut rewrite = Rewrite::default();
        for (from, to) in pairs {
            rewrite.pairs.retain(|(f, _)| f != from);
            rewrite.pairs.push((*from, *to));
        }
        rewrite
    }

    /// Adds `from -> to` unless the user rewrote `from` already.
    pub fn add_default(&mut self, from: i32, to: i32) {
        if !self.pairs.iter().any(|(f, _)| *f == from) {
            self.pairs.push((from, to));
        }
    }

    /// What `signal` is acted on as; `None`: dropped.
    pub fn apply(&self, signal: i32) -> Option<i32> {
        match self.pairs.iter().find(|(from, _)| *from == signal) {
            Some((_, 0)) => None,
            Some((_, to)) => Some(*to),
            None => Some(signal),
        }
    }
}

/// One signal as received, and what it is to be acted on as (after `-r`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub received: i32,
    /// `None` when a `-r S:0` dropped it.
    pub acted_as: Option<i32>,
}

/// The installed handlers and the read end of their wake-up pipe.
pub struct SignalInbox {
    wake_read: OwnedFd,
    seen: [u32; 65],
    rewrite: Rewrite,
    /// With job control: SIGTTIN/SIGTTOU stay blocked and are read here. Blocked, the kernel
    /// treats them as ignored for fleet-init's own terminal writes from the background (no
    /// SIGTTOU, no stop, no restart loop), while one sent with kill(2) is still seen.
    job_control: Option<SignalFd>,
}

impl SignalInbox {
    /// Installs the recording handlers. Called once, before anything is spawned, with every
    /// signal blocked; `is_job_control` keeps SIGTTIN/SIGTTOU blocked for good.
    pub fn install(rewrite: Rewrite, is_job_control: bool) -> std::io::Result<SignalInbox> {
        let (wake_read, wake_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        let wake_fd = std::os::fd::AsRawFd::as_raw_fd(&wake_write);
        // The write end lives as long as the process: the handlers use it until exit/exec.
        std::mem::forget(wake_write);
        WAKE_FD.store(wake_fd, Ordering::Relaxed);
        install_fault_handlers()?;
        for signal in handled() {
            let Ok(index) = usize::try_from(signal) else {
                continue;
            };
            if index >= COUNTS.len() {
                continue;
            }
            let action = move || {
                if let Some(count) = COUNTS.get(index) {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                // SAFETY: write(2) is async-signal-safe; the fd is never closed; a full pipe
                // (EAGAIN) already guarantees a wake-up, so the result is not needed.
                unsafe { libc::write(wake_fd, [0u8].as_ptr().cast(), 1) };
            };
            // SAFETY: the action only does an atomic add and a write(2), both
            // async-signal-safe; it allocates nothing and takes no lock.
            unsafe { signal_hook::low_level::register(signal, action) }?;
        }
        let job_control = if is_job_control {
            let mut set = SigSet::empty();
            set.add(Signal::SIGTTIN);
            set.add(Signal::SIGTTOU);
            Some(SignalFd::with_flags(
                &set,
                SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
            )?)
        } else {
            for signal in [libc::SIGTTIN, libc::SIGTTOU] {
                // SAFETY: installing SIG_IGN has no handler to run.
                unsafe { libc::signal(signal, libc::SIG_IGN) };
            }
            None
        };
        Ok(SignalInbox {
            wake_read,
            seen: [0; 65],
            rewrite,
            job_control,
        })
    }

    /// The signals that stay blocked once the handlers exist.
    pub fn kept_blocked(&self) -> &'static [i32] {
        match self.job_control {
            Some(_) => &[libc::SIGTTIN, libc::SIGTTOU],
            None => &[],
        }
    }

    /// The descriptor that becomes readable when a signal arrives.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_read.as_fd()
    }

    /// The descriptor of the blocked job-control signals, when there is one.
    pub fn job_control_fd(&self) -> Option<BorrowedFd<'_>> {
        self.job_control.as_ref().map(|fd| fd.as_fd())
    }

    /// Empties the pipe first, then reads the counters (signal-hook's order: no signal is lost).
    /// Returns each signal that arrived, once per arrival the counters saw, in signal order,
    /// with what `-r` makes of it.
    pub fn drain(&mut self) -> Vec<Arrival> {
        let mut buffer = [0u8; 256];
        loop {
            match nix::unistd::read(&self.wake_read, &mut buffer) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                // EAGAIN: empty, the normal end.
                Err(_) => break,
            }
        }
        let mut arrived = Vec::new();
        for (index, count) in COUNTS.iter().enumerate() {
            let now = count.load(Ordering::SeqCst);
            let Some(seen) = self.seen.get_mut(index) else {
                continue;
            };
            let new = now.wrapping_sub(*seen);
            *seen = now;
            let Ok(signal) = i32::try_from(index) else {
                continue;
            };
            // Standard signals coalesce in the kernel anyway; two are enough to tell
            // "second SIGTERM" apart, so a burst is not replayed in full.
            for _ in 0..new.min(2) {
                arrived.push(signal);
            }
        }
        if let Some(fd) = self.job_control.as_mut() {
            // EAGAIN (nothing pending) is Ok(None), the normal end.
            while let Ok(Some(info)) = fd.read_signal() {
                if let Ok(signal) = i32::try_from(info.ssi_signo) {
                    arrived.push(signal);
                }
            }
        }
        arrived
            .into_iter()
            .map(|received| Arrival {
                received,
                acted_as: self.rewrite.apply(received),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for (text, want) in [
            ("SIGTERM", Some(15)),
            ("TERM", Some(15)),
            ("term", Some(15)),
            ("9", Some(9)),
            ("SIGKILL", Some(9)),
            ("SIGRTMIN+2", Some(libc::SIGRTMIN() + 2)),
            ("BOGUS", None),
            ("0", None),
            ("65", None),
            ("-1", None),
            ("SIGRTMIN+99", None),
            ("", None),
        ] {
            assert_eq!(parse(text), want, "{text}");
        }
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(libc::SIGRTMIN() + 1), "SIGRTMIN+1");
        for signal in 1..=31 {
            assert_eq!(parse(&name(signal)), Some(signal));
        }
    }

    #[test]
    fn rewrites_map_drop_and_keep_the_last_rule() {
        let mut rewrite = Rewrite::new(&[(15, 3), (2, 0), (15, 2)]);
        rewrite.add_default(libc::SIGTSTP, libc::SIGSTOP);
        rewrite.add_default(15, 9);
        assert_eq!(
            rewrite.apply(15),
            Some(2),
            "the later rule and not the default"
        );
        assert_eq!(rewrite.apply(2), None, "T 0 drops it");
        assert_eq!(rewrite.apply(1), Some(1));
        assert_eq!(rewrite.apply(libc::SIGTSTP), Some(libc::SIGSTOP));
        assert_eq!(Rewrite::default().apply(10), Some(10));
    }
}
