//! Signal names and numbers, and the one signalfd the main loop sleeps on: every signal
//! fleet-init takes stays blocked and is read there. Nothing here acts on a signal: the loop
//! drains and decides.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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

/// Signals fleet-init itself acts on or forwards, read from one signalfd. The fault signals
/// (`FAULTS`) are read too, but only one another process sent is acted on; SIGTTIN/SIGTTOU are
/// ignored as tini does, or read with job control, so a background fleet-init is never stopped
/// by its terminal; SIGKILL/SIGSTOP cannot be caught.
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

/// The fault signals: about fleet-init itself when the kernel raises them (a real fault: being
/// blocked does not stop it, the kernel gives it its default action), to be forwarded when
/// another process sent them with kill(2). SIGPIPE is also raised by fleet-init's own write to a
/// closed pipe (with its own pid as the sender): that one is ignored.
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

/// A signalfd that is readable while one of `signals` (blocked already) is pending: polled to
/// notice them, never read, so they stay pending for whoever reads the main signalfd.
pub fn watch(signals: &[i32]) -> Option<OwnedFd> {
    // SAFETY: sigset_t is plain data; signalfd(2) with fd -1 creates a descriptor we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in signals {
            libc::sigaddset(&mut set, *signal);
        }
        let raw = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        (raw >= 0).then(|| OwnedFd::from_raw_fd(raw))
    }
}

/// One signal as received, and what it is to be acted on as (after `-r`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub received: i32,
    /// `None` when a `-r S:0` dropped it.
    pub acted_as: Option<i32>,
}

/// Every signal fleet-init takes, blocked and read from one signalfd in the loop's `poll`, as
/// catatonit does: no handler of ours ever runs, and the kernel keeps a blocked signal pending
/// instead of dropping it (PID 1 loses a default-action signal, never a blocked one).
pub struct SignalInbox {
    fd: OwnedFd,
    /// The blocked set, for the child to unblock and for `--reap`'s exec to inherit.
    set: libc::sigset_t,
    rewrite: Rewrite,
    self_pid: u32,
}

impl SignalInbox {
    /// Blocks every signal fleet-init takes and opens their signalfd. Called once, before
    /// anything is spawned; `is_job_control` reads SIGTTIN/SIGTTOU too (blocked, the kernel
    /// treats them as ignored for fleet-init's own terminal writes from the background, while
    /// one sent with kill(2) is still seen); otherwise they are ignored, as tini does.
    pub fn install(rewrite: Rewrite, is_job_control: bool) -> std::io::Result<SignalInbox> {
        let mut signals = handled();
        signals.extend(FAULTS);
        if is_job_control {
            signals.extend([libc::SIGTTIN, libc::SIGTTOU]);
        } else {
            for signal in [libc::SIGTTIN, libc::SIGTTOU] {
                // SAFETY: installing SIG_IGN has no handler to run.
                unsafe { libc::signal(signal, libc::SIG_IGN) };
            }
        }
        // SAFETY: sigset_t is plain data, written only by sigemptyset/sigaddset.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in &signals {
                // A signal this system (or valgrind, which keeps SIGRTMAX) does not let us have
                // is left out, not fatal.
                if libc::sigaddset(&mut set, *signal) != 0 {
                    log::debug!("signal {signal} cannot be taken: left out");
                }
            }
            set
        };
        // SAFETY: pthread_sigmask with a valid set; signalfd(2) with fd -1 creates a new
        // descriptor that we own from here on.
        let fd = unsafe {
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let raw = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if raw < 0 {
                return Err(std::io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(raw)
        };
        Ok(SignalInbox {
            fd,
            set,
            rewrite,
            self_pid: std::process::id(),
        })
    }

    /// The signals that stay blocked for good: all of them, read from the signalfd.
    pub fn blocked(&self) -> &libc::sigset_t {
        &self.set
    }

    /// The descriptor that becomes readable when a signal arrives.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads every pending signal: each once per arrival the kernel kept (a standard signal
    /// pending twice is one; that is enough to tell a "second SIGTERM" apart), in the order
    /// read, with what `-r` makes of it. A fault signal the kernel raised, or fleet-init's own
    /// SIGPIPE, is not an arrival.
    pub fn drain(&mut self) -> Vec<Arrival> {
        const SIZE: usize = std::mem::size_of::<libc::signalfd_siginfo>();
        let mut arrived = Vec::new();
        loop {
            let mut buffer = [0u8; SIZE * 16];
            // SAFETY: read(2) into a buffer we own, at most its length.
            let read = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                )
            };
            let Ok(read) = usize::try_from(read) else {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // EAGAIN: nothing more pending, the normal end.
                    _ => break,
                }
            };
            for chunk in buffer.get(..read).unwrap_or_default().chunks_exact(SIZE) {
                // SAFETY: the kernel wrote whole signalfd_siginfo structs; read_unaligned copes
                // with the byte buffer's alignment.
                let info: libc::signalfd_siginfo =
                    unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) };
                let Ok(signal) = i32::try_from(info.ssi_signo) else {
                    continue;
                };
                if FAULTS.contains(&signal) && !self.is_sent(&info) {
                    continue;
                }
                arrived.push(signal);
            }
            if read < buffer.len() {
                break;
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

    /// Sent by another process with kill(2), tkill(2) or sigqueue(3) (si_code <= 0), not raised
    /// by the kernel for fleet-init itself.
    fn is_sent(&self, info: &libc::signalfd_siginfo) -> bool {
        info.ssi_code <= 0 && info.ssi_pid != self.self_pid
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
