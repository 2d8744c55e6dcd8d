//! Test harness: runs the real fleet-init binary, as PID 1 of a fresh PID namespace
//! (`unshare --pid --fork --mount-proc`) or as a plain child (subreaper), and reads its
//! stdout as events and worker output. Every wait has a bound; a dropped harness kills
//! whatever is left.
#![allow(dead_code)]

pub mod registry;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The fleet-init the tests run: this build's, or the one FLEET_INIT_BIN names (`make
/// test-static` runs them against the shipped static build, target/fleet-init-static).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("FLEET_INIT_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_fleet-init").to_string())
    })
}

/// A generous bound for things that take milliseconds when they work.
pub const BOUND: Duration = Duration::from_secs(10);

pub enum Line {
    Event(Value),
    Output(String),
    Closed,
}

/// A unique, empty temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("fleet-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Fleet {
    child: Option<Child>,
    /// fleet-init's pid as the host sees it.
    pub pid: i32,
    lines: Receiver<Line>,
    exits: Receiver<i32>,
    pub events: Vec<Value>,
    pub output: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    exit_code: Option<i32>,
    pub is_pid1: bool,
    /// The default state dir of this instance (`state_dir.path("state")`).
    pub state_dir: TempDir,
}

pub struct Start {
    args: Vec<String>,
    pid1: bool,
    /// A command that runs fleet-init (`setpriv ...`, `unshare ...`), bin() appended.
    prefix: Vec<String>,
    env: Vec<(String, String)>,
    env_removed: Vec<String>,
    stdin: Option<Stdio>,
    pre_exec: Option<Box<dyn FnMut() -> std::io::Result<()> + Send + Sync + 'static>>,
}

impl Start {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Leaves `key` unset (e.g. FLEET_INIT_EVENTS, to see the mode's default stream).
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env_removed.push(key.into());
        self
    }

    pub fn stdin(mut self, stdin: Stdio) -> Self {
        self.stdin = Some(stdin);
        self
    }

    /// Runs `f` in the forked child before exec (e.g. to block signals).
    pub fn pre_exec(
        mut self,
        f: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.pre_exec = Some(Box::new(f));
        self
    }

    pub fn spawn(self) -> Fleet {
        let mut command = if self.pid1 {
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc", bin()]);
            c
        } else if let Some((program, rest)) = self.prefix.split_first() {
            let mut c = Command::new(program);
            c.args(rest).arg(bin());
            c
        } else {
            Command::new(bin())
        };
        command
            .args(&self.args)
            .stdin(self.stdin.unwrap_or_else(Stdio::null))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Each instance its own registry, unless the test chose one: a normal start reaps
        // what a dead generation left in its state dir.
        let state_dir = TempDir::new();
        command.env("FLEET_INIT_STATE_DIR", state_dir.path("state"));
        // The harness reads events from stdout in every mode; a single command's default is
        // stderr (its stdout is the child's), which the tests of that default ask for.
        command.env("FLEET_INIT_EVENTS", "stdout");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        for key in &self.env_removed {
            command.env_remove(key);
        }
        if let Some(f) = self.pre_exec {
            use std::os::unix::process::CommandExt;
            // SAFETY: test-only; the closures used are async-signal-safe syscalls.
            unsafe { command.pre_exec(f) };
        }
        let mut child = command.spawn().expect("spawn fleet-init");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parsed = if line.starts_with("{\"ts\"") {
                    serde_json::from_str::<Value>(&line).ok()
                } else {
                    None
                };
                let item = match parsed {
                    Some(value) => Line::Event(value),
                    None => Line::Output(line),
                };
                if tx.send(item).is_err() {
                    return;
                }
            }
            let _ = tx.send(Line::Closed);
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let is_forked = self.pid1 || self.prefix.first().is_some_and(|p| p == "unshare");
        let pid = if is_forked {
            namespace_init_of(child.id() as i32)
        } else {
            child.id() as i32
        };
        let (exit_tx, exits) = channel();
        let wait_pid = child.id() as i32;
        // The child is waited for by pid in a thread so that waits can have a bound.
        std::thread::spawn(move || {
            let code = wait_pid_code(wait_pid);
            let _ = exit_tx.send(code);
        });
        Fleet {
            child: Some(child),
            pid,
            lines,
            exits,
            events: Vec::new(),
            output: Vec::new(),
            stderr: Some(stderr),
            exit_code: None,
            is_pid1: self.pid1,
            state_dir,
        }
    }
}

fn wait_pid_code(pid: i32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return -1;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// The pid (host view) of the process `unshare --fork` started: its only child.
fn namespace_init_of(unshare_pid: i32) -> i32 {
    let path = format!("/proc/{unshare_pid}/task/{unshare_pid}/children");
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Some(pid) = text.split_whitespace().next() {
                return pid.parse().unwrap();
            }
        }
        // A fleet-init that was quicker than this look: unshare has exited after it (a
        // zombie until the harness waits for it). Its pid stands in; nothing is left to signal.
        if !is_alive(unshare_pid) {
            return unshare_pid;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("unshare {unshare_pid} started no child within {BOUND:?}");
}

pub fn pid1(args: &[&str]) -> Start {
    Start {
        args: args.iter().map(|s| s.to_string()).collect(),
        pid1: true,
        prefix: Vec::new(),
        env: Vec::new(),
        env_removed: Vec::new(),
        stdin: None,
        pre_exec: None,
    }
}

/// fleet-init run by another command: `wrapped(&["setpriv", "--bounding-set", "-sys_ptrace"],
/// args)`. With `unshare --fork`, the harness's pid is unshare's child.
pub fn wrapped(prefix: &[&str], args: &[&str]) -> Start {
    Start {
        pid1: false,
        prefix: prefix.iter().map(|s| s.to_string()).collect(),
        ..pid1(args)
    }
}

pub fn subreaper(args: &[&str]) -> Start {
    Start {
        pid1: false,
        ..pid1(args)
    }
}

impl Fleet {
    fn take_line(&mut self, deadline: Instant) -> Option<&Line> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(Line::Event(value)) => {
                // A `jsonl` worker's stdout line (the config-mode default) is worker output too.
                if value["event"] == "output" && value["stream"] == "stdout" {
                    if let Some(text) = value["line"].as_str() {
                        self.output.push(text.to_string());
                    } else if let Some(object) = value.get("json") {
                        self.output.push(object.to_string());
                    }
                }
                self.events.push(value);
                None
            }
            Ok(Line::Output(text)) => {
                self.output.push(text);
                None
            }
            Ok(Line::Closed) | Err(RecvTimeoutError::Disconnected) => Some(&Line::Closed),
            Err(RecvTimeoutError::Timeout) => Some(&Line::Closed),
        }
    }

    /// Waits for an event `name` (the `nth`, counting from 1, among those matching) and returns it.
    pub fn wait_event_where(
        &mut self,
        name: &str,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            while seen < self.events.len() {
                let event = &self.events[seen];
                seen += 1;
                if event["event"] == name && matches(event) {
                    return event.clone();
                }
            }
            if Instant::now() >= deadline {
                self.fail(&format!("no event {name} matching within {timeout:?}"));
            }
            if self.take_line(deadline).is_some() && Instant::now() < deadline {
                // Stream closed: nothing more will come.
                if seen == self.events.len() {
                    self.fail(&format!("stream closed without event {name}"));
                }
            }
        }
    }

    pub fn wait_event(&mut self, name: &str) -> Value {
        self.wait_event_where(name, |_| true, BOUND)
    }

    /// Waits for the n-th event with this name (1-based).
    pub fn wait_nth(&mut self, name: &str, n: usize, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<&Value> = self.events.iter().filter(|e| e["event"] == name).collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            if Instant::now() >= deadline {
                self.fail(&format!("fewer than {n} {name} events within {timeout:?}"));
            }
            if self.take_line(deadline).is_some() && Instant::now() < deadline {
                self.fail(&format!("stream closed before {n} {name} events"));
            }
        }
    }

    /// Waits until `n` lines of worker output start with `prefix`.
    pub fn wait_output_count(&mut self, prefix: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.output.iter().filter(|l| l.starts_with(prefix)).count() < n {
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "fewer than {n} output lines {prefix:?} within {timeout:?}"
                ));
            }
            if self.take_line(deadline).is_some() && Instant::now() < deadline {
                self.fail(&format!("stream closed before {n} output lines {prefix:?}"));
            }
        }
    }

    /// Waits for a line of worker output containing `text`.
    pub fn wait_output(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            if self.output[seen..].iter().any(|l| l.contains(text)) {
                return;
            }
            seen = self.output.len();
            if Instant::now() >= deadline {
                self.fail(&format!("no output {text:?} within {timeout:?}"));
            }
            if self.take_line(deadline).is_some() && Instant::now() < deadline {
                self.fail(&format!("stream closed before output {text:?}"));
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling the fleet-init this harness started.
        let r = unsafe { libc::kill(self.pid, signal) };
        assert_eq!(r, 0, "kill({}, {signal})", self.pid);
    }

    /// Waits for fleet-init (and unshare) to exit; reads the rest of its output.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        if let Some(code) = self.exit_code {
            return code;
        }
        match self.exits.recv_timeout(timeout) {
            Ok(code) => {
                self.exit_code = Some(code);
                self.child.take();
                // What fleet-init wrote is in the pipe already; the stream itself ends only when
                // the last writer is gone, and orphans left on purpose may hold it open.
                let deadline = Instant::now() + Duration::from_secs(1);
                while self.take_line(deadline).is_none() {}
                code
            }
            Err(_) => self.fail(&format!("did not exit within {timeout:?}")),
        }
    }

    pub fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn named(&self, name: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == name).collect()
    }

    fn fail(&mut self, message: &str) -> ! {
        self.kill_all();
        let events: Vec<String> = self.events.iter().map(|e| e.to_string()).collect();
        panic!(
            "{message}\nevents:\n{}\noutput:\n{}",
            events.join("\n"),
            self.output.join("\n")
        );
    }

    fn kill_all(&mut self) {
        // SAFETY: killing what this harness started; ESRCH is fine.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if self.exit_code.is_none() {
            self.kill_all();
        }
    }
}

/// `/proc/PID/status` field, e.g. `voluntary_ctxt_switches`.
pub fn status_field(pid: i32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_string())
    })
}

/// Whether a process exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// Polls `condition` every millisecond until it holds or `timeout` passes.
/// For facts no event announces (a process gone from /proc); bounded.
pub fn eventually(timeout: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Writes `config` to `config.json` in `dir` and starts fleet-init on it.
pub fn start_config(dir: &TempDir, config: &Value, as_pid1: bool) -> Fleet {
    let path = dir.write("config.json", &config.to_string());
    start_config_file(path.to_str().unwrap(), as_pid1)
}

pub fn start_config_file(path: &str, as_pid1: bool) -> Fleet {
    let args = ["--config", path];
    if as_pid1 {
        pid1(&args).spawn()
    } else {
        subreaper(&args).spawn()
    }
}

/// `["sh", "-c", script]`.
pub fn sh(script: &str) -> Value {
    serde_json::json!(["sh", "-c", script])
}

/// How often the process has slept and been woken: `voluntary_ctxt_switches`.
pub fn wake_ups(pid: i32) -> u64 {
    status_field(pid, "voluntary_ctxt_switches")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no voluntary_ctxt_switches for {pid}"))
}

pub fn read_to_string(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Reports `test` as skipped: its premise cannot be set up here, so it asserts nothing and
/// must not read as passed. Writes `SKIPPED: test: reason` to the real stdout (libtest's capture
/// only holds back `print!`) and appends it to the file named by FLEET_TEST_SKIPS, whose lines
/// `make test` counts into its summary. The caller returns right after.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    let line = format!("SKIPPED: {test}: {reason}\n");
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os("FLEET_TEST_SKIPS") {
        // One write to an O_APPEND file: lines of tests running in parallel never mix.
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(error) = appended {
            panic!("cannot record the skip of {test} in {path:?}: {error}");
        }
    }
}

/// Whether `pid` is blocked waiting for events: /proc/PID/syscall (proc(5)) names poll(2),
/// ppoll(2), an epoll wait, or rt_sigtimedwait(2) (the loop's wait when only signals can wake
/// it), the places the loop of an idle fleet-init sleeps.
pub fn is_waiting_for_events(pid: i32) -> bool {
    let waits = [
        #[cfg(target_arch = "x86_64")]
        libc::SYS_poll,
        libc::SYS_ppoll,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_rt_sigtimedwait,
    ];
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let number = text.split_whitespace().next().and_then(|n| n.parse().ok());
    number.is_some_and(|n: libc::c_long| waits.contains(&n))
}

/// Whether `pid` sleeps in rt_sigtimedwait(2): the loop's one-syscall wait, taken when nothing
/// but a signal can wake it (no pipe, pidfd, probe or control client to poll).
pub fn is_waiting_for_signals_only(pid: i32) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let number = text.split_whitespace().next().and_then(|n| n.parse().ok());
    number == Some(libc::SYS_rt_sigtimedwait)
}

/// Asleep in its loop with nothing scheduled: `poll` with an infinite timeout (-1 in the third
/// argument's low 32 bits), or `ppoll` or `rt_sigtimedwait` with no timespec (a null third
/// argument). A finite timeout means a deadline is still pending (a recheck, a retry) and a
/// wake-up is due.
pub fn is_asleep_with_nothing_scheduled(pid: i32) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let number = fields.first().and_then(|n| n.parse::<libc::c_long>().ok());
    let timeout = fields
        .get(3)
        .and_then(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok());
    match (number, timeout) {
        #[cfg(target_arch = "x86_64")]
        (Some(libc::SYS_poll), Some(t)) => t & 0xffff_ffff == 0xffff_ffff,
        (Some(libc::SYS_ppoll | libc::SYS_rt_sigtimedwait), Some(t)) => t == 0,
        _ => false,
    }
}

/// Waits (bounded) until fleet-init `pid` has done what its last wake-up brought and sleeps
/// in its loop with nothing scheduled: the state in which an idle measurement can start,
/// instead of a settle sleep. (Merely being in `poll` is not enough: under load the test can
/// catch it in a poll whose short deadline, a drain's second look, is still to come.)
pub fn wait_until_idle(pid: i32, timeout: Duration) -> bool {
    eventually(timeout, || {
        is_waiting_for_events(pid) && is_asleep_with_nothing_scheduled(pid)
    })
}

/// `unshare --pid --fork --kill-child --mount-proc fleet-init ARGS...`: fleet-init as PID 1
/// for a test that sets its descriptors itself (a file as stdout, a stderr nobody reads)
/// instead of `pid1`'s harness pipes. Killing the unshare kills the namespace.
pub fn pid1_command(args: &[&str]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", bin()])
        .args(args)
        .stdin(Stdio::null());
    command
}

/// A spawned `pid1_command`: killed when dropped (and with its unshare, through
/// `--kill-child`, fleet-init and its whole PID namespace), so that a test that fails midway
/// leaves nothing running.
pub struct Guarded(pub Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Guarded {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guarded {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Waits (bounded) for `child` to exit; `None` when it is still running at `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process held frozen by a cgroup freezer (v1 `freezer`, else v2 `cgroup.freeze`): it
/// runs no instruction, while signals sent to it stay pending, until `thaw` or drop, which also
/// move it back to its own cgroup. What a test needs to have several signals arrive in one
/// wake-up, deterministically.
pub struct Frozen {
    pid: i32,
    dir: PathBuf,
    home: PathBuf,
    is_v1: bool,
}

impl Frozen {
    /// Freezes `pid`; `Err` with the reason when this host has no freezer to use.
    pub fn freeze(pid: i32) -> Result<Frozen, String> {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
        let path_in = |wanted: &dyn Fn(&str) -> bool| {
            cgroups.lines().find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                wanted(controllers).then(|| path.trim_start_matches('/').to_string())
            })
        };
        let name = format!("fleet-test-freeze-{}-{pid}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/freezer");
        let (root, path, is_v1) = if v1.join("freezer.state").exists() || v1.join("tasks").exists()
        {
            let path = path_in(&|c: &str| c.split(',').any(|c| c == "freezer"))
                .ok_or("no freezer line in /proc/PID/cgroup")?;
            (v1.to_path_buf(), path, true)
        } else {
            let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
                .into_iter()
                .map(Path::new)
                .find(|root| {
                    root.join("cgroup.procs").exists() && root.join("cgroup.controllers").exists()
                })
                .ok_or("no cgroup v1 freezer and no cgroup v2 hierarchy")?;
            let path = path_in(&|c: &str| c.is_empty()).ok_or("no cgroup v2 line")?;
            (root.to_path_buf(), path, false)
        };
        let home = root.join(&path);
        let dir = home.join(&name);
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {dir:?}: {e}"))?;
        let frozen = Frozen {
            pid,
            dir,
            home,
            is_v1,
        };
        let write = |file: &str, text: &str| {
            std::fs::write(frozen.dir.join(file), text)
                .map_err(|e| format!("{:?}: {e}", frozen.dir.join(file)))
        };
        write("cgroup.procs", &pid.to_string())?;
        if is_v1 {
            write("freezer.state", "FROZEN")?;
        } else {
            write("cgroup.freeze", "1")?;
        }
        let is_frozen = || {
            if frozen.is_v1 {
                read_to_string(&frozen.dir.join("freezer.state")).trim() == "FROZEN"
            } else {
                read_to_string(&frozen.dir.join("cgroup.events")).contains("frozen 1")
            }
        };
        if !eventually(Duration::from_secs(10), is_frozen) {
            return Err(format!("{pid} did not freeze"));
        }
        Ok(frozen)
    }

    pub fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let (file, text) = if self.is_v1 {
            ("freezer.state", "THAWED")
        } else {
            ("cgroup.freeze", "0")
        };
        let _ = std::fs::write(self.dir.join(file), text);
        let _ = std::fs::write(self.home.join("cgroup.procs"), self.pid.to_string());
        // Empty once the process is back home (or gone).
        let _ = eventually(Duration::from_secs(5), || {
            std::fs::remove_dir(&self.dir).is_ok()
        });
    }
}

/// The live processes whose command line is exactly `words`.
pub fn pids_running(words: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = words
        .iter()
        .flat_map(|w| [w.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok() == Some(wanted.clone()))
        .filter(|pid| is_alive(*pid))
        .collect()
}

/// How many live processes have exactly `words` as their command line.
pub fn processes_running(words: &[&str]) -> usize {
    pids_running(words).len()
}
