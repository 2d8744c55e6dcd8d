//! Readiness and health probes, the runtime side: carries out the core's `Action::Probe` and
//! answers with `Input::ProbeResult`, never blocking the loop. A command probe is a child
//! forked like a worker (its user, env and cwd; its own process group), reaped by the one
//! waiter and SIGKILLed at its timeout; a TCP probe is a non-blocking connect whose
//! completion is seen in the loop's `poll` (POLLOUT, then SO_ERROR); a file probe is an
//! existence check; a notify_fd is the read end of a pipe whose write end the worker holds as
//! fd N, read in the `poll`: a newline says ready.

use crate::config::probes::ProbeKind;
use crate::config::WorkerSpec;
use crate::exit::Exit;
use crate::signals;
use crate::spawn::{self, SpawnOptions};
use crate::supervisor::{Input, Millis};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// A command probe in flight: a child of fleet-init's, not a worker.
struct CommandProbe {
    worker: usize,
    worker_pid: i32,
    pid: i32,
    /// Its exec report pipe, read once it is gone: a failed exec is named as such. Held
    /// open so that the child's report never meets a closed pipe.
    started: Option<(spawn::Started, WorkerSpec)>,
    timeout_ms: Millis,
    deadline: Millis,
    is_killed: bool,
}

/// A TCP connect in flight.
struct ConnectProbe {
    worker: usize,
    worker_pid: i32,
    socket: OwnedFd,
    address: SocketAddr,
    timeout_ms: Millis,
    deadline: Millis,
    /// The last poll said POLLOUT (or an error): the connect finished one way or the other.
    is_done: bool,
}

/// The read end of a worker's notification pipe, until it says ready.
struct NotifyPipe {
    worker: usize,
    /// The run it belongs to; `None` between pipe creation and the spawn's outcome.
    worker_pid: Option<i32>,
    read: OwnedFd,
}

#[derive(Default)]
pub struct Probes {
    commands: Vec<CommandProbe>,
    connects: Vec<ConnectProbe>,
    notifies: Vec<NotifyPipe>,
    /// `/dev/null`, the stdout of command probes (opened once, close-on-exec here).
    dev_null: Option<OwnedFd>,
}

fn result(worker: usize, pid: i32, outcome: Result<(), String>) -> Input {
    let (ok, error) = match outcome {
        Ok(()) => (true, String::new()),
        Err(error) => (false, error),
    };
    Input::ProbeResult {
        worker,
        pid,
        ok,
        error,
    }
}

impl Probes {
    /// Starts one probe of `worker`'s run `worker_pid`. A result known at once (a file
    /// check, a connect that failed or succeeded at once, a command that could not start)
    /// is returned; otherwise it comes from `on_exit`, `collect` or `expire`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        worker: usize,
        worker_pid: i32,
        kind: &ProbeKind,
        timeout_ms: Millis,
        spec: &WorkerSpec,
        options: SpawnOptions,
        now: Millis,
    ) -> Option<Input> {
        let deadline = now.saturating_add(timeout_ms);
        match kind {
            ProbeKind::File(path) => {
                // stat(2) on a local path: no network file system is expected under a probe.
                let outcome = match std::fs::symlink_metadata(path) {
                    Ok(_) => Ok(()),
                    Err(error) => Err(format!("{}: {error}", path.display())),
                };
                Some(result(worker, worker_pid, outcome))
            }
            ProbeKind::Tcp(address) => match connect(address) {
                Ok(Some(socket)) => {
                    self.connects.push(ConnectProbe {
                        worker,
                        worker_pid,
                        socket,
                        address: *address,
                        timeout_ms,
                        deadline,
                        is_done: false,
                    });
                    None
                }
                Ok(None) => Some(result(worker, worker_pid, Ok(()))),
                Err(errno) => Some(result(
                    worker,
                    worker_pid,
                    Err(format!("connect {}: {}", shown(address), errno.desc())),
                )),
            },
            ProbeKind::Command(argv) => {
                let mut probe_spec = spec.clone();
                probe_spec.command = argv.iter().map(OsString::from).collect();
                // No output pipes of its own (nobody would read them): see below.
                probe_spec.output = crate::config::OutputMode::Inherit;
                let options = SpawnOptions {
                    foreground: false,
                    ..options
                };
                // Its stdout goes nowhere: in config mode fleet-init's stdout is JSON lines only
                // (a `curl` check would print the page). Its stderr stays fleet-init's.
                let stdout: Vec<(i32, i32)> = self
                    .dev_null()
                    .map(|fd| (fd, libc::STDOUT_FILENO))
                    .into_iter()
                    .collect();
                match spawn::start_with_fds(&probe_spec, options, &stdout) {
                    Ok(started) => {
                        self.commands.push(CommandProbe {
                            worker,
                            worker_pid,
                            pid: started.pid,
                            started: Some((started, probe_spec)),
                            timeout_ms,
                            deadline,
                            is_killed: false,
                        });
                        None
                    }
                    // Nothing was forked (fork, a pipe or the preparation failed).
                    Err(failure) => Some(result(worker, worker_pid, Err(failure.error))),
                }
            }
            // Nothing to start: the pipe is read as the worker writes to it.
            ProbeKind::NotifyFd(_) => None,
        }
    }

    fn dev_null(&mut self) -> Option<i32> {
        if self.dev_null.is_none() {
            let opened = nix::fcntl::open(
                "/dev/null",
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            );
            match opened {
                Ok(fd) => self.dev_null = Some(fd),
                Err(errno) => log::warn!("cannot open /dev/null for probes: {errno}"),
            }
        }
        self.dev_null.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Whether `pid` is a probe's (its exit is not a worker's).
    pub fn is_probe(&self, pid: i32) -> bool {
        self.commands.iter().any(|probe| probe.pid == pid)
    }

    /// A reaped child that was a command probe: its result (`None` when already answered).
    pub fn on_exit(&mut self, pid: i32, exit: Exit) -> Option<Input> {
        let position = self.commands.iter().position(|probe| probe.pid == pid)?;
        let probe = self.commands.swap_remove(position);
        // Reaped, so its report pipe is closed: what it says is final.
        let exec_failure = probe
            .started
            .as_ref()
            .and_then(|(started, spec)| match spawn::outcome(spec, started) {
                spawn::Outcome::Failed(failure) => Some(failure.error),
                spawn::Outcome::Pending | spawn::Outcome::Execed => None,
            });
        let outcome = match (exit, exec_failure) {
            _ if probe.is_killed => Err(format!("timed out after {} ms", probe.timeout_ms)),
            (_, Some(error)) => Err(error),
            (Exit::Code(0), None) => Ok(()),
            (Exit::Code(code), None) => Err(format!("exited with code {code}")),
            (Exit::Signal(signal), None) => Err(format!("killed by {}", signals::name(signal))),
        };
        Some(result(probe.worker, probe.worker_pid, outcome))
    }

    /// Before the reap: a check is over when its main process is, and what it left in its
    /// group (`cmd &`) goes with it, as a worker's group goes with its exit. Its exited but
    /// unreaped leader holds its pid, so the group's id is still its own when signalled here
    /// (after the reap, an empty group's id could be a new process's). One waitid a check in
    /// flight; a check that exits between this look and the reap keeps its leftovers.
    pub fn kill_groups_of_ended(&self) {
        for probe in &self.commands {
            if has_ended(probe.pid) {
                kill_group(probe.pid);
            }
        }
    }

    /// The earliest probe timeout; `None` when nothing is in flight.
    pub fn next_deadline(&self) -> Option<Millis> {
        let commands = self
            .commands
            .iter()
            .filter(|probe| !probe.is_killed)
            .map(|probe| probe.deadline);
        let connects = self.connects.iter().map(|probe| probe.deadline);
        commands.chain(connects).min()
    }

    /// Probes past their timeout: commands get SIGKILL (their result comes with the reap),
    /// connects are abandoned.
    pub fn expire(&mut self, now: Millis) -> Vec<Input> {
        for probe in self
            .commands
            .iter_mut()
            .filter(|probe| !probe.is_killed && probe.deadline <= now)
        {
            probe.is_killed = true;
            // Our unreaped child leads its own group: neither the pid nor the group can have
            // been reused.
            kill_group(probe.pid);
        }
        let mut results = Vec::new();
        self.connects.retain(|probe| {
            if probe.deadline > now {
                return true;
            }
            let error = format!(
                "connect {}: timed out after {} ms",
                shown(&probe.address),
                probe.timeout_ms
            );
            results.push(result(probe.worker, probe.worker_pid, Err(error)));
            false
        });
        results
    }

    /// Whether `poll_fds` has anything to watch.
    pub fn has_poll_fds(&self) -> bool {
        !self.connects.is_empty() || !self.notifies.is_empty()
    }

    /// The descriptors the loop's `poll` must watch: connects in flight, then notify pipes.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let connects = self
            .connects
            .iter()
            .map(|probe| PollFd::new(probe.socket.as_fd(), PollFlags::POLLOUT));
        let notifies = self
            .notifies
            .iter()
            .map(|pipe| PollFd::new(pipe.read.as_fd(), PollFlags::POLLIN));
        connects.chain(notifies).collect()
    }

    /// What `poll` said about the descriptors of `poll_fds`, in the same order.
    pub fn note_events(&mut self, events: &[PollFlags]) {
        for (probe, flags) in self.connects.iter_mut().zip(events) {
            if !flags.is_empty() {
                probe.is_done = true;
            }
        }
    }

    /// Results of finished connects and of notify pipes that got a newline.
    pub fn collect(&mut self) -> Vec<Input> {
        let mut results = Vec::new();
        self.connects.retain(|probe| {
            if !probe.is_done {
                return true;
            }
            let outcome = match socket::getsockopt(&probe.socket, sockopt::SocketError) {
                Ok(0) => Ok(()),
                Ok(code) => Err(format!(
                    "connect {}: {}",
                    shown(&probe.address),
                    Errno::from_raw(code).desc()
                )),
                Err(errno) => Err(format!(
                    "connect {}: {}",
                    shown(&probe.address),
                    errno.desc()
                )),
            };
            results.push(result(probe.worker, probe.worker_pid, outcome));
            false
        });
        self.notifies.retain(|pipe| {
            let Some(pid) = pipe.worker_pid else {
                return true;
            };
            match read_notification(&pipe.read) {
                Notification::Nothing => true,
                Notification::Ready => {
                    results.push(result(pipe.worker, pid, Ok(())));
                    false
                }
                // The worker closed its end without a newline: it never says ready (its
                // `timeout_ms`, if any, decides).
                Notification::Closed => false,
            }
        });
        results
    }

    /// A pipe for `worker`'s notify_fd; returns the write end for the spawn (close-on-exec
    /// here, dup'd to fd N in the worker). The read end is non-blocking.
    pub fn prepare_notify(&mut self, worker: usize) -> Result<OwnedFd, Errno> {
        self.forget_notify(worker);
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        self.notifies.push(NotifyPipe {
            worker,
            worker_pid: None,
            read,
        });
        Ok(write)
    }

    /// The spawn's outcome: the pipe belongs to run `pid`, or (None) it is dropped.
    pub fn bind_notify(&mut self, worker: usize, pid: Option<i32>) {
        match pid {
            Some(pid) => {
                for pipe in self.notifies.iter_mut().filter(|p| p.worker == worker) {
                    pipe.worker_pid = Some(pid);
                }
            }
            None => self.forget_notify(worker),
        }
    }

    /// A worker's main process exited: its notify pipe has nothing more to say.
    pub fn forget_run(&mut self, worker_pid: i32) {
        self.notifies
            .retain(|pipe| pipe.worker_pid != Some(worker_pid));
    }

    fn forget_notify(&mut self, worker: usize) {
        self.notifies.retain(|pipe| pipe.worker != worker);
    }
}

enum Notification {
    Nothing,
    Ready,
    Closed,
}

/// Drains what the worker wrote; a newline anywhere says ready (s6's notification-fd).
fn read_notification(fd: &OwnedFd) -> Notification {
    let mut buffer = [0u8; 512];
    loop {
        match nix::unistd::read(fd, &mut buffer) {
            Ok(0) => return Notification::Closed,
            Ok(n) => {
                if buffer.get(..n).is_some_and(|bytes| bytes.contains(&b'\n')) {
                    return Notification::Ready;
                }
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Notification::Nothing,
            Err(errno) => {
                log::warn!("reading a notify_fd pipe failed: {errno}");
                return Notification::Closed;
            }
        }
    }
}

/// A non-blocking connect: `Some(socket)` in progress, `None` connected at once.
/// `127.0.0.1:8080`, `[::1]:8080`: what std's Display writes (RFC 5952's shortest form for
/// IPv6), by hand, which keeps std's address formatting (~2 KB) out of the binary.
fn shown(address: &SocketAddr) -> String {
    match address {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            format!("{a}.{b}.{c}.{d}:{}", v4.port())
        }
        SocketAddr::V6(v6) => {
            let groups = v6.ip().segments();
            // The longest run of two or more zero groups (the first of equals) becomes `::`.
            let (mut best, mut run) = ((0, 0), (0, 0));
            for (index, group) in groups.iter().enumerate() {
                if *group == 0 {
                    run = if run.1 == 0 {
                        (index, 1)
                    } else {
                        (run.0, run.1 + 1)
                    };
                    if run.1 > best.1 {
                        best = run;
                    }
                } else {
                    run = (0, 0);
                }
            }
            let hex = |part: &[u16]| {
                part.iter()
                    .map(|group| format!("{group:x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            };
            let text = if best.1 >= 2 {
                let (head, tail) = (
                    groups.get(..best.0).unwrap_or_default(),
                    groups.get(best.0 + best.1..).unwrap_or_default(),
                );
                format!("{}::{}", hex(head), hex(tail))
            } else {
                hex(&groups)
            };
            format!("[{text}]:{}", v6.port())
        }
    }
}

fn connect(address: &SocketAddr) -> Result<Option<OwnedFd>, Errno> {
    let family = match address {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let socket = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let target = SockaddrStorage::from(*address);
    match socket::connect(socket.as_raw_fd(), &target) {
        Ok(()) => Ok(None),
        Err(Errno::EINPROGRESS) | Err(Errno::EINTR) => Ok(Some(socket)),
        Err(errno) => Err(errno),
    }
}

/// SIGKILL to the group our unreaped child `leader` leads (the caller's guarantee).
fn kill_group(leader: i32) {
    let pid = nix::unistd::Pid::from_raw(leader);
    match nix::sys::signal::killpg(pid, nix::sys::signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => log::warn!("killpg({leader}, SIGKILL) failed: {errno}"),
    }
}

/// Whether our child `pid` has exited and waits to be reaped (not reaped here: WNOWAIT).
fn has_ended(pid: i32) -> bool {
    let Ok(id) = libc::id_t::try_from(pid) else {
        return false;
    };
    // SAFETY: an all-zero siginfo_t is a valid value for the kernel to fill in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a valid siginfo_t the kernel writes into; nothing else is touched.
    let result = unsafe { libc::waitid(libc::P_PID, id, &mut info, flags) };
    // SAFETY: waitid filled `info` (si_pid is 0 when nothing has exited).
    result == 0 && unsafe { info.si_pid() } == pid
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn addresses_are_shown_as_std_shows_them() {
        for text in [
            "127.0.0.1:80",
            "10.20.30.40:65535",
            "[::1]:8080",
            "[::]:1",
            "[1::]:2",
            "[2001:db8::1]:443",
            "[2001:db8:0:1:1:1:1:1]:1",
            "[1:0:0:2::3]:9",
            "[1::2:0:0:3:4]:9",
            "[fe80::abcd:ef01:2345:6789]:7",
        ] {
            let address: SocketAddr = text.parse().unwrap();
            assert_eq!(shown(&address), address.to_string(), "{text}");
            assert_eq!(shown(&address), text);
        }
    }

    fn spec() -> WorkerSpec {
        WorkerSpec::new("w", vec!["true".into()], 1000)
    }

    fn start(probes: &mut Probes, kind: ProbeKind) -> Option<Input> {
        probes.start(0, 42, &kind, 1000, &spec(), SpawnOptions::default(), 0)
    }

    fn is_ok(input: &Input) -> bool {
        matches!(
            input,
            Input::ProbeResult {
                ok: true,
                pid: 42,
                ..
            }
        )
    }

    #[test]
    fn a_file_probe_answers_at_once() {
        let mut probes = Probes::default();
        let found = start(&mut probes, ProbeKind::File("/".into())).expect("result");
        assert!(is_ok(&found));
        let missing = start(&mut probes, ProbeKind::File("/no/such/file".into()));
        assert!(!is_ok(&missing.expect("result")));
        assert_eq!(probes.next_deadline(), None);
    }

    #[test]
    fn a_tcp_probe_succeeds_on_a_listener_and_fails_on_a_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let open = listener.local_addr().expect("addr");
        let closed = {
            let other = TcpListener::bind("127.0.0.1:0").expect("bind");
            other.local_addr().expect("addr")
        };
        for (address, want) in [(open, true), (closed, false)] {
            let mut probes = Probes::default();
            let answer = match start(&mut probes, ProbeKind::Tcp(address)) {
                Some(answer) => answer,
                None => {
                    let mut fds = probes.poll_fds();
                    nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16)).expect("poll");
                    let events: Vec<PollFlags> = fds
                        .iter()
                        .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
                        .collect();
                    drop(fds);
                    probes.note_events(&events);
                    probes.collect().pop().expect("a result")
                }
            };
            assert_eq!(is_ok(&answer), want, "{address}: {answer:?}");
        }
    }

    #[test]
    fn a_notify_pipe_says_ready_on_a_newline_only() {
        let mut probes = Probes::default();
        let write = probes.prepare_notify(3).expect("pipe");
        probes.bind_notify(3, Some(7));
        assert!(probes.collect().is_empty());
        nix::unistd::write(&write, b"starting").expect("write");
        assert!(probes.collect().is_empty());
        nix::unistd::write(&write, b"\n").expect("write");
        let got = probes.collect();
        assert!(
            matches!(
                got.as_slice(),
                [Input::ProbeResult {
                    worker: 3,
                    pid: 7,
                    ok: true,
                    ..
                }]
            ),
            "{got:?}"
        );
        assert!(
            probes.poll_fds().is_empty(),
            "the pipe is closed once ready"
        );
    }
}
