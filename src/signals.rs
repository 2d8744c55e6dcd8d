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

/// Parses `SIGTERM`, `TERM`, `term` or `15`, the real-time names as `kill -l` gives them
/// (`RTMIN`, `RTMIN+3`, `RTMAX-2`, `RTMAX`), and whatever `name` gives (`signal 32`: the two
/// signals glibc keeps for itself have no name). `None` for anything that is not a signal.
pub fn parse(text: &str) -> Option<i32> {
    let number = text.strip_prefix("signal ").unwrap_or(text);
    if let Ok(number) = number.parse::<i32>() {
        return (1..=MAX_SIGNAL).contains(&number).then_some(number);
    }
    let upper = text.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let real_time = match full.as_str() {
        "SIGRTMIN" => Some(rtmin),
        "SIGRTMAX" => Some(rtmax),
        _ => {
            let offset = |rest: &str| rest.parse::<u8>().ok().map(i32::from);
            if let Some(rest) = full.strip_prefix("SIGRTMIN+") {
                Some(rtmin.checked_add(offset(rest)?)?)
            } else if let Some(rest) = full.strip_prefix("SIGRTMAX-") {
                Some(rtmax.checked_sub(offset(rest)?)?)
            } else {
                None
            }
        }
    };
    if let Some(number) = real_time {
        return (rtmin..=rtmax.min(MAX_SIGNAL))
            .contains(&number)
            .then_some(number);
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
/// si_code of a signal the kernel sent, such as a terminal's Ctrl-Z to its foreground group.
const SI_KERNEL: i32 = 0x80;

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
    /// The signal `wait` took off the pending set, for the next `drain`.
    waited: Option<Received>,
    /// A SIGIO the kernel raised (the control socket's O_ASYNC): a wake-up, not an arrival.
    is_io_due: bool,
}

/// What `drain` needs of one pending signal, from signalfd or from sigtimedwait.
#[derive(Clone, Copy, Debug)]
struct Received {
    signal: u32,
    code: i32,
    pid: u32,
}

impl SignalInbox {
    /// Blocks every signal fleet-init takes and opens their signalfd. Called once, before
    /// anything is spawned. SIGTTIN and SIGTTOU are taken too: blocked, the kernel treats them
    /// as ignored for fleet-init's own terminal writes from the background (no stop), while
    /// one sent with kill(2) is read like any other and forwarded (SPEC: every other signal
    /// is forwarded; tini ignores them instead), or acted on by dumb-init's job control.
    pub fn install(rewrite: Rewrite) -> std::io::Result<SignalInbox> {
        // A SIGCHLD ignored by whoever started fleet-init (Python's subprocess with SIG_IGN,
        // a shell's `trap '' CHLD`) is inherited, and with it the kernel reaps every child at
        // once: no exit status, no `worker_exited`, fleet-init waiting for ever. Blocking does
        // not undo that; the default disposition (without SA_NOCLDWAIT) does.
        // SAFETY: SIG_DFL installs no handler; the sigaction is plain data.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let mut signals = handled();
        signals.extend(FAULTS);
        signals.extend([libc::SIGTTIN, libc::SIGTTOU]);
        SignalInbox::taking(&signals, rewrite)
    }

    /// Blocks `signals` in the calling thread and opens their signalfd.
    fn taking(signals: &[i32], rewrite: Rewrite) -> std::io::Result<SignalInbox> {
        // SAFETY: sigset_t is plain data, written only by sigemptyset/sigaddset.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in signals {
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
            waited: None,
            is_io_due: false,
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

    /// Sleeps until a signal is pending, or for `timeout` (`None`: for as long as it takes), in
    /// one sigtimedwait(2), which takes the signal off the pending set for the next `drain`.
    /// The loop's wait when nothing but signals can wake it (no pipe, no pidfd, no client):
    /// one system call, as catatonit's read of its signalfd, where `poll` and then `read` are
    /// two, and the poll's wake-up is the slower.
    pub fn wait(&mut self, timeout: Option<std::time::Duration>) {
        // libc marks `time_t` deprecated on musl (its width changed in musl 1.2); `try_from`
        // saturates whatever the width.
        #[allow(deprecated)]
        let limit = timeout.map(|timeout| libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
        });
        let limit_ptr = limit.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
        // SAFETY: siginfo_t is plain data the kernel fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid set, a siginfo_t we own, and a timespec that outlives the call (or
        // null: no limit).
        let signal = unsafe { libc::sigtimedwait(&self.set, &mut info, limit_ptr) };
        // EAGAIN (the time is up) or EINTR: nothing taken; the loop looks at its deadlines.
        let Ok(signal) = u32::try_from(signal) else {
            return;
        };
        // SAFETY: si_pid is the sender's pid for kill(2)-sent signals and zero otherwise (the
        // union's first word past the header is read either way, never out of bounds).
        let pid = unsafe { info.si_pid() };
        self.waited = Some(Received {
            signal,
            code: info.si_code,
            pid: u32::try_from(pid).unwrap_or(0),
        });
    }

    /// Whether a SIGIO the kernel raised came since the last call: the control socket has a
    /// connection waiting.
    pub fn take_io_due(&mut self) -> bool {
        std::mem::take(&mut self.is_io_due)
    }

    /// Reads every pending signal: each once per arrival the kernel kept (a standard signal
    /// pending twice is one; that is enough to tell a "second SIGTERM" apart), in the order
    /// read, with what `-r` makes of it. A fault signal the kernel raised, or fleet-init's own
    /// SIGPIPE, is not an arrival. After a `wait` that took one, only that one: the rest are
    /// still pending, and the next `wait` or `poll` returns at once for them.
    pub fn drain(&mut self) -> Vec<Arrival> {
        const SIZE: usize = std::mem::size_of::<libc::signalfd_siginfo>();
        let mut arrived = Vec::new();
        if let Some(received) = self.waited.take() {
            self.accept(received, &mut arrived);
            return self.acted_as(arrived);
        }
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
                let received = Received {
                    signal: info.ssi_signo,
                    code: info.ssi_code,
                    pid: info.ssi_pid,
                };
                self.accept(received, &mut arrived);
            }
            if read < buffer.len() {
                break;
            }
        }
        self.acted_as(arrived)
    }

    /// What the signal `wait` took will arrive as in the next `drain`, known before it: `None`
    /// when it took none, or one that is no arrival or that `-r S:0` drops.
    pub fn waited_acted_as(&self) -> Option<i32> {
        let received = self.waited.as_ref()?;
        let signal = i32::try_from(received.signal).ok()?;
        if self.is_raised(signal, received) {
            return None;
        }
        self.rewrite.apply(signal)
    }

    fn accept(&mut self, received: Received, arrived: &mut Vec<i32>) {
        let Ok(signal) = i32::try_from(received.signal) else {
            return;
        };
        if self.is_raised(signal, &received) {
            // The kernel's SIGIO: the control socket has a connection waiting.
            self.is_io_due |= signal == libc::SIGIO;
            if JOB_CONTROL.contains(&signal) {
                log::debug!(
                    "{} from the terminal: nothing to stop as PID 1",
                    name(signal)
                );
            }
            return;
        }
        arrived.push(signal);
    }

    /// A fault signal or a SIGIO the kernel raised for fleet-init itself, not an arrival; and,
    /// as PID 1, a job-control signal from its terminal (Ctrl-Z under `docker run -it`): with
    /// no shell above to resume a job, forwarded it froze every worker for good, where tini,
    /// supervisord and s6 as PID 1 ignore it. One sent with kill(2) (`docker kill -s TSTP`) is
    /// an arrival and forwarded.
    fn is_raised(&self, signal: i32, received: &Received) -> bool {
        let is_terminal_stop =
            self.self_pid == 1 && JOB_CONTROL.contains(&signal) && received.code == SI_KERNEL;
        ((FAULTS.contains(&signal) || signal == libc::SIGIO) && !self.is_sent(received))
            || is_terminal_stop
    }

    fn acted_as(&self, arrived: Vec<i32>) -> Vec<Arrival> {
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
    fn is_sent(&self, received: &Received) -> bool {
        received.code <= 0 && received.pid != self.self_pid
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
            ("RTMIN", Some(libc::SIGRTMIN())),
            ("rtmin+3", Some(libc::SIGRTMIN() + 3)),
            ("SIGRTMAX", Some(libc::SIGRTMAX())),
            ("RTMAX-2", Some(libc::SIGRTMAX() - 2)),
            ("SIGRTMAX-99", None),
            ("SIGRTMIN+-1", None),
            ("signal 32", Some(32)),
            ("signal 99", None),
        ] {
            assert_eq!(parse(text), want, "{text}");
        }
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(libc::SIGRTMIN() + 1), "SIGRTMIN+1");
        // Every name given (in events, and by `ctl signal` to PID 1) reads back: 32 and 33
        // were refused by the server as "signal 32".
        for signal in 1..=MAX_SIGNAL {
            assert_eq!(parse(&name(signal)), Some(signal), "{}", name(signal));
        }
    }

    /// `wait` sleeps until its limit with nothing pending, and takes a pending signal off the
    /// set for `drain`, which hands it over once (signalfd then has nothing left).
    #[test]
    fn wait_times_out_or_takes_one_signal_for_drain() {
        let mut inbox = SignalInbox::taking(&[libc::SIGUSR2], Rewrite::default()).unwrap();
        let started = std::time::Instant::now();
        inbox.wait(Some(std::time::Duration::from_millis(30)));
        assert!(started.elapsed() >= std::time::Duration::from_millis(29));
        assert!(inbox.drain().is_empty());
        // SAFETY: SIGUSR2 to this thread, which blocks it: it stays pending for the wait.
        assert_eq!(
            unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGUSR2) },
            0
        );
        inbox.wait(None);
        let want = Arrival {
            received: libc::SIGUSR2,
            acted_as: Some(libc::SIGUSR2),
        };
        assert_eq!(inbox.drain(), [want]);
        assert!(inbox.drain().is_empty(), "taken once");
        assert!(!inbox.take_io_due());
    }

    /// The kernel's SIGIO (the control socket's O_ASYNC, si_code SI_KERNEL) is a wake-up for
    /// the control socket; one sent with kill(2) is an arrival to forward.
    #[test]
    fn the_kernel_s_sigio_is_a_wake_up_and_a_sent_one_an_arrival() {
        let mut inbox = SignalInbox::taking(&[libc::SIGUSR2], Rewrite::default()).unwrap();
        let mut arrived = Vec::new();
        let from_kernel = Received {
            signal: libc::SIGIO as u32,
            code: libc::SI_KERNEL,
            pid: 0,
        };
        inbox.accept(from_kernel, &mut arrived);
        assert!(arrived.is_empty());
        assert!(inbox.take_io_due());
        assert!(!inbox.take_io_due(), "taken once");
        let sent = Received {
            signal: libc::SIGIO as u32,
            code: libc::SI_USER,
            pid: inbox.self_pid.wrapping_add(1),
        };
        inbox.accept(sent, &mut arrived);
        assert_eq!(arrived, [libc::SIGIO]);
        assert!(!inbox.take_io_due());
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
