//! Starting a worker: fork, then in the child only async-signal-safe calls (own process
//! group, terminal foreground, user, cwd, parent-death signal, default signal dispositions,
//! empty mask) and exec. Exec errors come back through a close-on-exec pipe.

use crate::config::{OutputMode, WorkerSpec};
use crate::handoff::Generation;
use crate::output::pipes::{ReadEnds, WorkerPipes};
use nix::errno::Errno;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// Why a worker could not be started, with the shell code it stands for.
#[derive(Debug, PartialEq, Eq)]
pub struct SpawnFailure {
    /// The forked child that failed before or at exec (already exited; the reaper collects it).
    pub pid: Option<i32>,
    pub error: String,
    /// The same for people, as the plain stderr line says it (without the `fleet-init: `).
    pub plain: String,
    /// 127: command not found; 126: found but cannot be executed (or set up).
    pub exit_code: i32,
    /// fork or its pipe failed (EAGAIN under a pids limit, ENOMEM): fleet-init's trouble, not
    /// the worker's; nothing ran.
    pub is_fork_failure: bool,
}

/// How the child is set up beyond its spec.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpawnOptions {
    /// Make the child the foreground process group of the terminal on stdin, if any, when
    /// fleet-init's own group is the foreground one (a job started with `&` takes nothing).
    pub foreground: bool,
    pub pdeathsig: Option<i32>,
    /// Goes into the environment as `FLEET_INIT_GENERATION`.
    pub generation: Generation,
}

/// What runs a program the kernel cannot exec (ENOEXEC), as execvp(3) runs it.
const SHELL: &std::ffi::CStr = c"/bin/sh";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the child reports through the pipe when it fails: which step and the errno.
#[derive(Clone, Copy)]
#[repr(i32)]
enum Step {
    SetGroups = 1,
    SetGid = 2,
    SetUid = 3,
    Chdir = 4,
    Exec = 5,
}

fn step_name(step: i32) -> &'static str {
    match step {
        1 => "setgroups",
        2 => "setgid",
        3 => "setuid",
        4 => "chdir",
        _ => "exec",
    }
}

/// The directory fleet-init was started in, where a worker without `cwd` starts: fleet-init
/// itself moves to `/` so that it holds no reference to it (as dumb-init and catatonit do).
static START_DIRECTORY: std::sync::OnceLock<CString> = std::sync::OnceLock::new();

/// Remembers `dir` as the workers' start directory; called once, before leaving it for `/`.
pub fn set_start_directory(dir: &std::path::Path) {
    if let Ok(dir) = c_string(dir.as_os_str().as_bytes()) {
        // Set once at start; a second call changes nothing.
        let _already_set = START_DIRECTORY.set(dir);
    }
}

/// Signals a child sets back to SIG_DFL before its exec: glibc's own 32 and 33, which its
/// wrappers cannot query, in case an ancestor left them ignored. Nothing of fleet-init changes
/// a disposition (it blocks what it takes and reads it from a signalfd, SIGTTIN and SIGTTOU
/// included), so every other inherited ignore passes to a worker untouched through fork and
/// exec (as with tini: `nohup fleet-init -- cmd` works). It starts without Rust's runtime
/// (`main.rs`), so no handler exists (its SIGSEGV/SIGBUS handlers and its ignored SIGPIPE are
/// gone), and exec itself resets a handler.
const CHILD_RESETS: [i32; 2] = [32, 33];

/// Everything the child needs, allocated before fork so the child allocates nothing.
struct Prepared {
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Environment,
    cwd: Option<CString>,
    /// Without `cwd`: fleet-init's start directory, entered before the user switch, as an
    /// inherited directory would have been.
    start_directory: Option<CString>,
    user: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    /// Where in `envp` a `LISTEN_PID` naming fleet-init sits: the child puts its own pid there.
    listen_pid_at: Option<usize>,
    /// With `output: "jsonl"`: the write ends the child makes its stdout and stderr.
    stdio: Option<(libc::c_int, libc::c_int)>,
    /// Descriptors dup'd to the given numbers in the child (a notify_fd's write end).
    fds: Vec<(RawFd, RawFd)>,
}

/// A forked worker whose exec has not been confirmed yet.
#[derive(Debug)]
pub struct Started {
    pub pid: i32,
    /// The read end of the child's report pipe (non-blocking): EOF when exec succeeded, eight
    /// bytes (step, errno) when a step failed. Polled by the loop, never waited on: an exec
    /// that hangs (a binary on a stalled network filesystem) never blocks PID 1.
    report: OwnedFd,
    /// With `output: "jsonl"`: the read ends of the child's stdout and stderr pipes, for the
    /// loop's output table to take.
    pub output: Option<ReadEnds>,
    /// The child was made the terminal's foreground group: it goes back when the child exits.
    pub has_terminal: bool,
}

impl AsFd for Started {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.report.as_fd()
    }
}

/// What the report pipe says so far.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing yet: the child has not reached exec.
    Pending,
    /// The pipe closed with exec (or with the child's death, which the waiter reports).
    Execed,
    Failed(SpawnFailure),
}

/// Forks `spec`'s child; its pid is also its process group id. Whether it exec'd is told
/// later by [`outcome`]. A failure is also one plain line on stderr (`fleet-init: exec
/// /app/srv failed: No such file or directory`), as tini prints it, whatever `--events` says.
pub fn start(spec: &WorkerSpec, options: SpawnOptions) -> Result<Started, SpawnFailure> {
    start_with_fds(spec, options, &[])
}

/// `start`, with each `(fd, target)` of `fds` dup'd to descriptor `target` in the worker
/// (a notify_fd's write end).
pub fn start_with_fds(
    spec: &WorkerSpec,
    options: SpawnOptions,
    fds: &[(RawFd, RawFd)],
) -> Result<Started, SpawnFailure> {
    fork_child(spec, options, fds).inspect_err(tell)
}

/// Reads the report without blocking. Once the child is dead (reaped) the pipe is closed, so
/// the answer is never `Pending` then.
pub fn outcome(spec: &WorkerSpec, started: &Started) -> Outcome {
    match read_report(&started.report) {
        Report::Pending => Outcome::Pending,
        Report::Closed => Outcome::Execed,
        Report::Failed { step, errno } => {
            let failure = exec_failure(spec, started.pid, step, errno);
            tell(&failure);
            Outcome::Failed(failure)
        }
    }
}

fn tell(failure: &SpawnFailure) {
    // One line whatever the program's name holds.
    let line = crate::cli::one_line(&format!("fleet-init: {}", failure.plain));
    crate::events::diagnostic(&line);
}

impl SpawnFailure {
    /// fork or its pipe failed before any child existed: fleet-init's trouble (EAGAIN under a
    /// pids limit, ENOMEM), not the worker's. `what` is the step, `reason` why it failed.
    fn before_fork(program: &str, what: &str, reason: &str) -> SpawnFailure {
        SpawnFailure {
            pid: None,
            error: format!("{what}: {reason}"),
            plain: format!("cannot start {program}: {what}: {reason}"),
            exit_code: 126,
            is_fork_failure: true,
        }
    }
}

fn program_name(spec: &WorkerSpec) -> String {
    spec.command
        .first()
        .map(|program| program.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn fork_child(
    spec: &WorkerSpec,
    options: SpawnOptions,
    fds: &[(RawFd, RawFd)],
) -> Result<Started, SpawnFailure> {
    let program = program_name(spec);
    let mut prepared = prepare(spec, options.generation).map_err(|error| SpawnFailure {
        pid: None,
        plain: format!("cannot start {program}: {error}"),
        error,
        exit_code: 126,
        is_fork_failure: false,
    })?;
    prepared.fds = fds.to_vec();
    // Non-blocking on both ends: the loop polls the read end; the child's one 8-byte write into
    // the empty pipe cannot fail for want of room.
    let (report_read, report_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(|errno| SpawnFailure::before_fork(&program, "pipe", errno.desc()))?;
    let output_pipes = match spec.output {
        OutputMode::Jsonl => Some(
            WorkerPipes::create()
                .map_err(|errno| SpawnFailure::before_fork(&program, "pipe", errno.desc()))?,
        ),
        OutputMode::Inherit => None,
    };
    let prepared = Prepared {
        stdio: output_pipes.as_ref().map(WorkerPipes::child_fds),
        ..prepared
    };
    let argv_ptrs = null_terminated(&prepared.argv);
    // A program the kernel cannot exec (ENOEXEC: a script without `#!`) is run by /bin/sh, as
    // execvp(3) does (and so tini and dumb-init): `/bin/sh PROGRAM ARGS...`, the program's
    // slot filled in by the child with the candidate that failed.
    let mut shell_ptrs: Vec<*const libc::c_char> = vec![SHELL.as_ptr(), std::ptr::null()];
    shell_ptrs.extend(argv_ptrs.iter().skip(1));
    let mut envp_ptrs = prepared.env.pointers();
    // Socket activation (systemd, podman): LISTEN_PID names the process the sockets are for.
    // When it names fleet-init, the worker gets them and its own pid there, as catatonit does;
    // the child writes the digits into this buffer, allocated before the fork.
    let mut listen_pid = [0u8; LISTEN_PID_ENTRY];
    if let Some(slot) = prepared.listen_pid_at.and_then(|at| envp_ptrs.get_mut(at)) {
        if let Some(name) = listen_pid.get_mut(..LISTEN_PID.len()) {
            name.copy_from_slice(LISTEN_PID.as_bytes());
        }
        *slot = listen_pid.as_ptr().cast();
    }
    let listen_pid_buffer = prepared.listen_pid_at.map(|_| listen_pid.as_mut_ptr());
    let groups_ptr = prepared
        .user
        .as_ref()
        .map(|(_, _, groups)| groups.as_slice());

    // Decided here, not in the child: the parent's setpgid below may move the child into its
    // own group before it could compare groups.
    let options = SpawnOptions {
        foreground: options.foreground && is_terminal_foreground(),
        ..options
    };
    // Block every signal across fork so no handler of fleet-init's runs in the child before its
    // dispositions are reset (tini and catatonit do the same).
    let old_mask = block_all_signals();
    // SAFETY: fleet-init is single-threaded; the child below only makes async-signal-safe
    // calls on memory prepared before the fork, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; `child` never returns.
        unsafe {
            child(
                &prepared,
                Vectors {
                    argv: &argv_ptrs,
                    shell_argv: &mut shell_ptrs,
                    envp: &envp_ptrs,
                },
                groups_ptr,
                options,
                report_write.as_raw_fd(),
                listen_pid_buffer,
            )
        }
    }
    let fork_errno = Errno::last();
    restore_signal_mask(&old_mask);
    drop(report_write);
    // Only the read ends stay: EOF comes when the last of the worker's processes is gone (a run
    // that fails before exec ends them at once, and the loop closes them then).
    let output = output_pipes.map(WorkerPipes::into_read_ends);
    if pid < 0 {
        return Err(SpawnFailure::before_fork(
            &program,
            "fork",
            fork_errno.desc(),
        ));
    }
    // The child does this too; doing it here as well closes the race with anyone signalling
    // the group before the child ran (as shells do). EACCES: it already exec'd, fine.
    // SAFETY: plain syscall on a pid we own.
    unsafe { libc::setpgid(pid, pid) };
    Ok(Started {
        pid,
        report: report_read,
        output,
        has_terminal: options.foreground,
    })
}

/// Whether stdin is a terminal whose foreground process group is fleet-init's: only then is
/// there a terminal to hand to a child (a shell's background job `fleet-init -- cmd &` took the
/// terminal from the shell, which then quit).
pub fn is_terminal_foreground() -> bool {
    // SAFETY: plain calls on fd 0; without a terminal they fail, which answers no.
    unsafe {
        libc::isatty(libc::STDIN_FILENO) == 1
            && libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp()
    }
}

/// After a child that was given the terminal has exited: the terminal goes back to fleet-init's
/// group, whose foreground it was, so that the shell or script that started fleet-init reads
/// it again (it was left to the dead group, and the script's next `read` stopped it with
/// SIGTTIN). fleet-init blocks SIGTTOU, so this works from anywhere; it is done only while the
/// terminal still belongs to `pgid`.
pub fn take_back_terminal(pgid: i32) {
    // SAFETY: plain calls on fd 0; failures (another foreground) change nothing.
    unsafe {
        if libc::tcgetpgrp(libc::STDIN_FILENO) == pgid {
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
        }
    }
}

/// The child's report of a failed step, as an error naming what failed: the user for the
/// credential steps, the directory for chdir, the program for exec.
fn exec_failure(spec: &WorkerSpec, pid: i32, step: i32, errno: i32) -> SpawnFailure {
    let program = program_name(spec);
    let target = match step {
        1..=3 => spec
            .user
            .as_ref()
            .map(|user| format!("user {} (uid {}, gid {})", user.name, user.uid, user.gid))
            .unwrap_or_default(),
        4 => spec
            .cwd
            .as_ref()
            .map(|cwd| cwd.display().to_string())
            .or_else(|| {
                START_DIRECTORY
                    .get()
                    .map(|dir| dir.to_string_lossy().into_owned())
            })
            .unwrap_or_default(),
        _ => program,
    };
    let exit_code = if step == Step::Exec as i32 && is_not_found(errno) {
        127
    } else {
        126
    };
    let reason = Errno::from_raw(errno).desc();
    SpawnFailure {
        pid: Some(pid),
        error: format!("{} {}: {}", step_name(step), target, reason),
        plain: format!("{} {} failed: {}", step_name(step), target, reason),
        exit_code,
        is_fork_failure: false,
    }
}

const LISTEN_PID: &str = "LISTEN_PID";
/// `LISTEN_PID=`, up to 10 digits and the NUL.
const LISTEN_PID_ENTRY: usize = 32;

/// Writes `=<pid>\0` after the name in a `LISTEN_PID_ENTRY`-byte buffer; no allocation, for the
/// child between fork and exec.
///
/// # Safety
/// `buffer` points to `LISTEN_PID_ENTRY` writable bytes.
unsafe fn write_listen_pid(buffer: *mut u8, pid: libc::pid_t) {
    let mut digits = [0u8; 12];
    let mut count = 0;
    let mut rest = pid.unsigned_abs();
    loop {
        if let Some(digit) = digits.get_mut(count) {
            *digit = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        }
        count += 1;
        rest /= 10;
        if rest == 0 || count >= digits.len() {
            break;
        }
    }
    let mut at = LISTEN_PID.len();
    *buffer.add(at) = b'=';
    at += 1;
    while count > 0 && at < LISTEN_PID_ENTRY - 1 {
        count -= 1;
        *buffer.add(at) = digits.get(count).copied().unwrap_or(b'0');
        at += 1;
    }
    *buffer.add(at) = 0;
}

fn is_not_found(errno: i32) -> bool {
    errno == libc::ENOENT || errno == libc::ENOTDIR
}

enum Report {
    Pending,
    Closed,
    Failed { step: i32, errno: i32 },
}

/// The child writes its 8-byte report in one write (atomic: under PIPE_BUF), so a read sees
/// all of it, or EOF, or nothing yet.
fn read_report(fd: &OwnedFd) -> Report {
    let mut buffer = [0u8; 8];
    loop {
        match nix::unistd::read(fd, &mut buffer) {
            Ok(8) => break,
            Ok(_) => return Report::Closed,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Report::Pending,
            // Unreadable: nothing more will come through it.
            Err(_) => return Report::Closed,
        }
    }
    let (step, errno) = buffer.split_at(4);
    match (<[u8; 4]>::try_from(step), <[u8; 4]>::try_from(errno)) {
        (Ok(step), Ok(errno)) => Report::Failed {
            step: i32::from_ne_bytes(step),
            errno: i32::from_ne_bytes(errno),
        },
        _ => Report::Closed,
    }
}

fn prepare(spec: &WorkerSpec, generation: Generation) -> Result<Prepared, String> {
    let program = spec.command.first().ok_or("empty command")?;
    let argv = spec
        .command
        .iter()
        .map(|arg| c_string(arg.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let env = environment(spec, generation)?;
    let path = env
        .value(b"PATH")
        .map(|value| OsStr::from_bytes(value).to_os_string())
        .unwrap_or_else(|| OsString::from(DEFAULT_PATH));
    let candidates = candidates(program, &path)?;
    let cwd = match &spec.cwd {
        Some(cwd) => Some(c_string(cwd.as_os_str().as_bytes())?),
        None => None,
    };
    // fleet-init's own user needs no switch, and an unprivileged fleet-init could not make one
    // (setgroups is EPERM even to the same groups): `docker run --user nobody` with
    // `"user": "nobody"` just runs the worker.
    let user = spec
        .user
        .as_ref()
        .filter(|user| !is_own_user(user.uid, user.gid))
        .map(|user| (user.uid, user.gid, user.groups.clone()));
    let start_directory = match spec.cwd {
        Some(_) => None,
        None => START_DIRECTORY.get().cloned(),
    };
    let own_listen_pid = format!("{LISTEN_PID}={}", std::process::id());
    let listen_pid_at = env
        .entries()
        .position(|entry| entry == own_listen_pid.as_bytes());
    Ok(Prepared {
        candidates,
        argv,
        env,
        cwd,
        start_directory,
        user,
        listen_pid_at,
        stdio: None,
        fds: Vec::new(),
    })
}

fn is_own_user(uid: u32, gid: u32) -> bool {
    nix::unistd::getuid().as_raw() == uid && nix::unistd::getgid().as_raw() == gid
}

/// A worker's environment: fleet-init's own entries, but those the worker's settings override,
/// then the settings. The own entries are not copied: they are pointers into the process's
/// `environ`, which fleet-init never changes (nothing of it calls setenv, putenv or
/// unsetenv), so they stay valid for its whole life. Copying them into `CString`s took ~40% of
/// the instructions from exec to the first fork (callgrind: 25,000 for `vars_os` alone, with
/// 35 variables).
struct Environment {
    inherited: Vec<&'static std::ffi::CStr>,
    added: Vec<CString>,
}

impl Environment {
    /// Every entry, `KEY=VALUE`, in the order the worker gets them.
    fn entries(&self) -> impl Iterator<Item = &[u8]> {
        self.inherited
            .iter()
            .map(|entry| entry.to_bytes())
            .chain(self.added.iter().map(|entry| entry.as_bytes()))
    }

    /// The value of `key` the worker gets.
    fn value(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries()
            .filter_map(|entry| entry.strip_prefix(key)?.strip_prefix(b"="))
            .last()
    }

    /// execve's array: the entries, then NULL.
    fn pointers(&self) -> Vec<*const libc::c_char> {
        self.inherited
            .iter()
            .map(|entry| entry.as_ptr())
            .chain(self.added.iter().map(|entry| entry.as_ptr()))
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    }
}

extern "C" {
    /// The process's environment (environ(7)): a NULL-terminated array of `KEY=VALUE`.
    static environ: *const *const libc::c_char;
}

/// fleet-init's own environment entries, as `KEY=VALUE` C strings; those without `=` are left
/// out, as `std::env::vars_os` leaves them out.
fn own_environment() -> Vec<&'static std::ffi::CStr> {
    let mut entries = Vec::new();
    // SAFETY: `environ` is a NULL-terminated array of NUL-terminated strings that nothing of
    // fleet-init changes (see `Environment`), so each string lives as long as the process.
    unsafe {
        let mut at = environ;
        while !at.is_null() && !(*at).is_null() {
            let entry = std::ffi::CStr::from_ptr(*at);
            if entry.to_bytes().contains(&b'=') {
                entries.push(entry);
            }
            at = at.add(1);
        }
    }
    entries
}

/// fleet-init's environment, then the spec's `env`, then `FLEET_INIT_WORKER` and
/// `FLEET_INIT_GENERATION` (which nothing overrides: they are how the reap finds the worker's
/// processes); with a `user`, HOME, USER and LOGNAME follow that user unless `env` sets them
/// (as Docker's USER does). A key set twice keeps its last value, at its last place.
fn environment(spec: &WorkerSpec, generation: Generation) -> Result<Environment, String> {
    let mut settings: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut set = |key: &str, value: &[u8]| {
        settings.retain(|(k, _)| k.as_slice() != key.as_bytes());
        settings.push((key.as_bytes().to_vec(), value.to_vec()));
    };
    if let Some(user) = &spec.user {
        // A user without a home (a bare uid) gets `/`, as Docker gives it.
        let home = user.home.clone().unwrap_or_else(|| "/".into());
        set("HOME", home.as_os_str().as_bytes());
        set("USER", user.name.as_bytes());
        set("LOGNAME", user.name.as_bytes());
    }
    for (key, value) in &spec.env {
        set(key, value.as_bytes());
    }
    set("FLEET_INIT_WORKER", spec.name.as_bytes());
    set("FLEET_INIT_GENERATION", generation.to_string().as_bytes());
    let is_set = |entry: &[u8]| {
        settings.iter().any(|(key, _)| {
            entry
                .strip_prefix(key.as_slice())
                .is_some_and(|rest| rest.first() == Some(&b'='))
        })
    };
    let inherited = own_environment()
        .into_iter()
        .filter(|entry| !is_set(entry.to_bytes()))
        .collect();
    let added = settings
        .into_iter()
        .map(|(mut entry, value)| {
            entry.push(b'=');
            entry.extend_from_slice(&value);
            c_string(&entry)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Environment { inherited, added })
}

/// The paths exec tries, in order: the command itself when it has a slash, else each PATH entry.
fn candidates(program: &OsStr, path: &OsString) -> Result<Vec<CString>, String> {
    if program.as_bytes().contains(&b'/') {
        return Ok(vec![c_string(program.as_bytes())?]);
    }
    let mut found = Vec::new();
    for dir in path.as_bytes().split(|b| *b == b':') {
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        let mut full = dir.to_vec();
        full.push(b'/');
        full.extend_from_slice(program.as_bytes());
        found.push(c_string(&full)?);
    }
    Ok(found)
}

fn c_string(bytes: &[u8]) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| {
        format!(
            "argument or environment entry contains a NUL byte: {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigfillset/pthread_sigmask only write the sets given.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

fn restore_signal_mask(old: &libc::sigset_t) {
    // SAFETY: restores a mask obtained from pthread_sigmask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// The forked child. Only async-signal-safe calls; never returns.
///
/// # Safety
/// Must be called in the child right after fork, with pointers into memory that stays valid.
/// execve's arrays, made before the fork: the program's argv, the shell's for a program the
/// kernel cannot exec (its slot 1 filled in by the child), and the environment.
struct Vectors<'a> {
    argv: &'a [*const libc::c_char],
    shell_argv: &'a mut [*const libc::c_char],
    envp: &'a [*const libc::c_char],
}

unsafe fn child(
    prepared: &Prepared,
    vectors: Vectors<'_>,
    groups: Option<&[libc::gid_t]>,
    options: SpawnOptions,
    report_fd: libc::c_int,
    listen_pid: Option<*mut u8>,
) -> ! {
    let Vectors {
        argv,
        shell_argv,
        envp,
    } = vectors;
    // The output pipes become stdout and stderr (dup2 leaves the copies without
    // close-on-exec; the originals, above 2, close at exec). First: the promised descriptors
    // below are 3 and up, so they cannot undo this, while they may land on an original.
    if let Some((stdout, stderr)) = prepared.stdio {
        libc::dup2(stdout, libc::STDOUT_FILENO);
        libc::dup2(stderr, libc::STDERR_FILENO);
    }
    let fds = prepared.fds.as_slice();
    // A descriptor the worker is promised (notify_fd N) may be the number the report pipe
    // got here: the report pipe moves out of the way first.
    let report_fd = if fds.iter().any(|(_, target)| *target == report_fd) {
        // Above every promised number, so no dup2 below lands on it.
        let above = fds
            .iter()
            .map(|(_, target)| *target)
            .max()
            .unwrap_or(report_fd);
        libc::fcntl(report_fd, libc::F_DUPFD_CLOEXEC, above.saturating_add(1))
    } else {
        report_fd
    };
    for (fd, target) in fds {
        if fd == target {
            // Same number: only the close-on-exec flag goes.
            libc::fcntl(*fd, libc::F_SETFD, 0);
        } else {
            // dup2 leaves the new descriptor without close-on-exec.
            libc::dup2(*fd, *target);
        }
    }
    let fail = |step: Step, errno: i32| -> ! {
        let mut message = [0u8; 8];
        let (left, right) = message.split_at_mut(4);
        left.copy_from_slice(&(step as i32).to_ne_bytes());
        right.copy_from_slice(&errno.to_ne_bytes());
        libc::write(report_fd, message.as_ptr().cast(), message.len());
        let code = if is_not_found(errno) { 127 } else { 126 };
        libc::_exit(code)
    };
    let errno = || *libc::__errno_location();

    if let Some(buffer) = listen_pid {
        write_listen_pid(buffer, libc::getpid());
    }
    libc::setpgid(0, 0);
    // SIGTTOU is still blocked (the mask is emptied below), so this works from the
    // background: the kernel treats a blocked SIGTTOU as ignored (tcsetpgrp(3)).
    if options.foreground {
        libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
    }
    if let Some(dir) = &prepared.start_directory {
        if libc::chdir(dir.as_ptr()) != 0 {
            fail(Step::Chdir, errno());
        }
    }
    if let (Some((uid, gid, _)), Some(groups)) = (&prepared.user, groups) {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            fail(Step::SetGroups, errno());
        }
        if libc::setgid(*gid) != 0 {
            fail(Step::SetGid, errno());
        }
        if libc::setuid(*uid) != 0 {
            fail(Step::SetUid, errno());
        }
    }
    if let Some(cwd) = &prepared.cwd {
        if libc::chdir(cwd.as_ptr()) != 0 {
            fail(Step::Chdir, errno());
        }
    }
    // After setuid: changing credentials clears the parent-death signal (prctl(2)).
    if let Some(signal) = options.pdeathsig {
        libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong);
    }
    // `CHILD_RESETS` back to the default: the raw syscall, because glibc's wrappers refuse
    // signals 32 and 33 (its own). An all-zero kernel sigaction is SIG_DFL with no flags and
    // an empty mask, whichever of the kernel's layouts this architecture uses.
    let default_action = [0u64; 4];
    for signal in CHILD_RESETS {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            default_action.as_ptr(),
            std::ptr::null::<u64>(),
            8usize,
        );
    }
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());

    // Like execvp: keep looking past a missing file; report EACCES if any candidate had it.
    let mut last_errno = libc::ENOENT;
    let mut saw_eacces = false;
    for candidate in &prepared.candidates {
        libc::execve(candidate.as_ptr(), argv.as_ptr(), envp.as_ptr());
        last_errno = errno();
        if last_errno == libc::ENOEXEC {
            if let Some(slot) = shell_argv.get_mut(1) {
                *slot = candidate.as_ptr();
            }
            libc::execve(SHELL.as_ptr(), shell_argv.as_ptr(), envp.as_ptr());
            // No shell either: the program's own error is the one to report.
            break;
        }
        match last_errno {
            libc::EACCES => saw_eacces = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            _ => break,
        }
    }
    if saw_eacces && is_not_found(last_errno) {
        last_errno = libc::EACCES;
    }
    fail(Step::Exec, last_errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_search_path_unless_the_command_has_a_slash() {
        let path = OsString::from("/usr/bin::/bin");
        let got: Vec<String> = candidates(OsStr::new("sh"), &path)
            .unwrap()
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect();
        assert_eq!(got, ["/usr/bin/sh", "./sh", "/bin/sh"]);
        let got = candidates(OsStr::new("./run.sh"), &path).unwrap();
        assert_eq!(got, [CString::new("./run.sh").unwrap()]);
    }

    #[test]
    fn environment_adds_the_worker_name_and_overrides() {
        let mut spec = WorkerSpec::new("api", vec!["true".into()], 8000);
        spec.env = vec![
            ("FLEET_TEST_X".into(), "1".into()),
            ("FLEET_TEST_X".into(), "2".into()),
            ("FLEET_INIT_GENERATION".into(), "forged".into()),
            ("PATH".into(), "/opt/bin".into()),
        ];
        let env = environment(&spec, Generation([0xab; 16])).unwrap();
        let get = |key: &str| {
            env.entries()
                .filter_map(|entry| {
                    let value = entry.strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
                    Some(String::from_utf8_lossy(value).into_owned())
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(get("FLEET_INIT_WORKER"), ["api"]);
        assert_eq!(get("FLEET_TEST_X"), ["2"], "the last setting, once");
        assert_eq!(get("PATH"), ["/opt/bin"], "the inherited PATH is replaced");
        assert_eq!(env.value(b"PATH"), Some(b"/opt/bin".as_slice()));
        assert_eq!(
            get("FLEET_INIT_GENERATION"),
            ["ab".repeat(16)],
            "the config cannot forge the generation"
        );
        // What the test process has and nothing overrides is passed on, byte for byte.
        let inherited: Vec<(String, String)> = std::env::vars()
            .filter(|(key, _)| !key.starts_with("FLEET_") && key != "PATH")
            .collect();
        assert!(!inherited.is_empty(), "the test process has an environment");
        for (key, value) in &inherited {
            assert!(get(key).contains(value), "{key} passed on");
        }
        let pointers = env.pointers();
        assert_eq!(pointers.len(), env.entries().count() + 1);
        assert!(pointers.last().is_some_and(|p| p.is_null()));
    }
}
