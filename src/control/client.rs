//! `fleet-init ctl`: one request to a running fleet-init's control socket, its reply shown to
//! people (or as JSON), and the exit code a script or a Kubernetes probe acts on: 0 done,
//! 1 refused or failed, 3 when no fleet-init answers. Blocking, with a deadline on every step:
//! this is a client, not PID 1.

use super::protocol::{Request, Verb};
use super::SOCKET_NAME;
use crate::cli::ctl::CtlOptions;
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A reply larger than this is not fleet-init's.
const MAX_REPLY_BYTES: u64 = 64 * 1024 * 1024;

pub const EXIT_REFUSED: i32 = 1;
pub const EXIT_NO_ANSWER: i32 = 3;

/// Why there is no reply.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

/// Runs the request of `options`; returns the exit code.
pub fn run(options: &CtlOptions) -> i32 {
    let path = options.state_dir.join(SOCKET_NAME);
    let reply = match exchange(&path, &options.request, options.timeout_ms) {
        Ok(reply) => reply,
        Err(failure) => {
            eprintln!("fleet-init ctl: {}", failure.message);
            return failure.code;
        }
    };
    show(options, &reply)
}

/// Sends one request and reads its reply; a `busy` server is tried again until the deadline.
pub fn exchange(path: &Path, request: &Request, timeout_ms: u64) -> Result<Value, Failure> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let mut pause = Duration::from_millis(5);
    loop {
        let reply = exchange_once(path, request, deadline)?;
        let is_busy = reply["ok"] == false
            && reply["error"]
                .as_str()
                .is_some_and(|error| error.starts_with("busy"));
        if !is_busy || Instant::now() + pause >= deadline {
            return Ok(reply);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

fn exchange_once(path: &Path, request: &Request, deadline: Instant) -> Result<Value, Failure> {
    let mut stream = connect(path, deadline)?;
    let shown = path.display();
    let timed_out = || Failure {
        code: EXIT_NO_ANSWER,
        message: format!("no answer from fleet-init on {shown} in time"),
    };
    let left = deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or_else(timed_out)?;
    let set = stream
        .set_write_timeout(Some(left))
        .and_then(|()| stream.set_read_timeout(Some(left)));
    if let Err(error) = set {
        return Err(no_answer(&format!("{shown}: {error}")));
    }
    if let Err(error) = stream.write_all(request.encode().as_bytes()) {
        // A refusal (another uid) may already be waiting to be read: read it before giving up.
        log::debug!("request not sent: {error}");
    }
    let mut bytes = Vec::new();
    let read = (&mut stream).take(MAX_REPLY_BYTES).read_to_end(&mut bytes);
    match read {
        Ok(_) => {}
        Err(error) if is_timeout(&error) => return Err(timed_out()),
        // Reset after a complete reply (we had unread data on its side): the reply counts.
        Err(_) if bytes.contains(&b'\n') => {}
        Err(error) => return Err(no_answer(&format!("{shown}: {error}"))),
    }
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    if line.is_empty() {
        return Err(no_answer(&format!(
            "{shown}: the connection closed without a reply"
        )));
    }
    serde_json::from_slice(line).map_err(|error| Failure {
        code: EXIT_REFUSED,
        message: format!("{shown}: not a reply: {error}"),
    })
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn no_answer(message: &str) -> Failure {
    Failure {
        code: EXIT_NO_ANSWER,
        message: message.to_string(),
    }
}

/// A connect bounded by the deadline (a full backlog would otherwise block it).
fn connect(path: &Path, deadline: Instant) -> Result<UnixStream, Failure> {
    let shown = path.display();
    // A path longer than sun_path (108 bytes) is reached through its directory, as the server
    // binds it: /proc/self/fd/N/control.sock, N a descriptor of that directory held meanwhile.
    let mut _directory = None;
    let address = match UnixAddr::new(path) {
        Err(Errno::ENAMETOOLONG) => {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return Err(no_answer(&format!(
                    "{shown}: {}",
                    Errno::ENAMETOOLONG.desc()
                )));
            };
            let directory = nix::fcntl::open(
                parent,
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|errno| match errno {
                Errno::ENOENT => no_answer(&format!(
                    "no control socket at {shown}: is fleet-init running with this state dir?"
                )),
                errno => no_answer(&format!("{}: {}", parent.display(), errno.desc())),
            })?;
            let through = Path::new("/proc/self/fd")
                .join(directory.as_raw_fd().to_string())
                .join(name);
            _directory = Some(directory);
            UnixAddr::new(&through)
        }
        other => other,
    }
    .map_err(|errno| no_answer(&format!("{shown}: {}", errno.desc())))?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|errno| no_answer(&format!("socket: {}", errno.desc())))?;
    let left = deadline.saturating_duration_since(Instant::now());
    // libc marks `time_t` and `suseconds_t` deprecated on musl (their width changed in musl
    // 1.2); `try_from` and `from` fit either width.
    #[allow(deprecated)]
    let timeval = nix::sys::time::TimeVal::new(
        libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
        libc::suseconds_t::from(left.subsec_micros()),
    );
    if let Err(errno) = socket::setsockopt(&fd, socket::sockopt::SendTimeout, &timeval) {
        log::debug!("SO_SNDTIMEO: {errno}");
    }
    match socket::connect(fd.as_raw_fd(), &address) {
        Ok(()) => Ok(UnixStream::from(fd)),
        Err(Errno::ENOENT) => Err(no_answer(&format!(
            "no control socket at {shown}: is fleet-init running with this state dir?"
        ))),
        Err(Errno::ECONNREFUSED) => Err(no_answer(&format!(
            "connection refused on {shown}: no fleet-init is listening (a stale socket)"
        ))),
        Err(Errno::EAGAIN | Errno::EINPROGRESS) => Err(no_answer(&format!(
            "fleet-init on {shown} did not accept the connection in time"
        ))),
        Err(Errno::EACCES | Errno::EPERM) => Err(Failure {
            code: EXIT_REFUSED,
            message: format!(
                "permission denied on {shown}: the control socket is for root and fleet-init's own user"
            ),
        }),
        Err(errno) => Err(no_answer(&format!("{shown}: {}", errno.desc()))),
    }
}

/// Prints the reply for people (stdout) or the reason it failed (stderr); the exit code.
fn show(options: &CtlOptions, reply: &Value) -> i32 {
    let is_ok = reply["ok"] == true;
    if !is_ok {
        // A per-worker request done for some workers and refused for others: what was done
        // is said as well.
        for item in reply["workers"].as_array().into_iter().flatten() {
            if item.get("result").is_some() {
                println!("{}: {}", text(&item["name"]), text(&item["result"]));
            }
        }
        let error = reply["error"].as_str().unwrap_or("refused");
        eprintln!("fleet-init ctl: {}", crate::cli::one_line(error));
        return EXIT_REFUSED;
    }
    match options.request.verb {
        Verb::Status if options.is_json => println!("{reply}"),
        Verb::Status => print!("{}", status_table(reply)),
        Verb::Ready => {
            if reply["ready"] == true {
                println!("ready");
                return 0;
            }
            let waiting: Vec<String> = reply["not_ready"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|item| format!("{} ({})", text(&item["name"]), text(&item["state"])))
                        .collect()
                })
                .unwrap_or_default();
            if reply["shutting_down"] == true {
                eprintln!("fleet-init ctl: not ready: shutting down");
            } else {
                eprintln!("fleet-init ctl: not ready: {}", waiting.join(", "));
            }
            return EXIT_REFUSED;
        }
        Verb::Shutdown => println!("shutting down"),
        Verb::Stop | Verb::Start | Verb::Restart | Verb::Signal => {
            for item in reply["workers"].as_array().into_iter().flatten() {
                println!("{}: {}", text(&item["name"]), text(&item["result"]));
            }
        }
    }
    0
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => crate::cli::one_line(text),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// The status as an aligned table: NAME STATE PID UPTIME RUNS CRASHES LAST-EXIT MEMORY.
pub fn status_table(reply: &Value) -> String {
    let header = [
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RUNS",
        "CRASHES",
        "LAST EXIT",
        "MEMORY",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for worker in reply["workers"].as_array().into_iter().flatten() {
        let last_exit = match (&worker["last_exit"], &worker["likely_cause"]) {
            (Value::Object(exit), cause) => {
                let how = exit
                    .get("code")
                    .map(|code| code.to_string())
                    .or_else(|| exit.get("signal").map(text))
                    .unwrap_or_else(|| "-".into());
                format!("{how} ({})", text(cause))
            }
            _ => "-".to_string(),
        };
        rows.push(vec![
            text(&worker["name"]),
            text(&worker["state"]),
            text(&worker["pid"]),
            worker["uptime_ms"]
                .as_u64()
                .map(human_duration)
                .unwrap_or_else(|| "-".into()),
            text(&worker["runs"]),
            text(&worker["crashes"]),
            last_exit,
            worker["memory_bytes"]
                .as_u64()
                .map(human_bytes)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        table.push_str(cells.join("  ").trim_end());
        table.push('\n');
    }
    table
}

/// `45s`, `3m05s`, `2h07m`, `3d04h`.
pub fn human_duration(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        3600..=86_399 => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{:02}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

/// `512B`, `12.0KiB`, `3.4MiB`, `1.2GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    // In integers (tenths of the unit, rounded half up): no float formatting in the binary.
    let mut divisor: u64 = 1024;
    let mut unit = 0;
    while bytes / divisor >= 1024 && unit + 1 < UNITS.len() {
        divisor *= 1024;
        unit += 1;
    }
    // The remainder is below 2^40, so ten times it fits.
    let tenths = (bytes % divisor * 10 + divisor / 2) / divisor;
    let (whole, tenths) = (bytes / divisor + tenths / 10, tenths % 10);
    format!("{whole}.{tenths}{}", UNITS.get(unit).unwrap_or(&"TiB"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_for_people() {
        assert_eq!(human_duration(999), "0s");
        assert_eq!(human_duration(185_000), "3m05s");
        assert_eq!(human_duration(2 * 3_600_000 + 7 * 60_000), "2h07m");
        assert_eq!(human_duration(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 400 * 1024), "3.4MiB");
        assert_eq!(human_bytes(1024), "1.0KiB");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_bytes(12 * 1024 + 51), "12.0KiB");
        assert_eq!(human_bytes(12 * 1024 + 52), "12.1KiB");
        assert_eq!(human_bytes(5 << 40), "5.0TiB");
        assert_eq!(human_bytes(u64::MAX), "16777216.0TiB");
    }

    #[test]
    fn the_table_is_aligned() {
        let reply = json!({"ok": true, "workers": [
            {"name": "api", "state": "ready", "pid": 12, "uptime_ms": 65_000, "runs": 1,
             "crashes": 0, "last_exit": null, "likely_cause": null, "memory_bytes": 2_097_152},
            {"name": "long-worker", "state": "stopped", "pid": null, "uptime_ms": null,
             "runs": 3, "crashes": 1, "last_exit": {"signal": "SIGTERM"},
             "likely_cause": "stopped", "memory_bytes": null},
        ]});
        let table = status_table(&reply);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        let state_at = lines[0].find("STATE").unwrap();
        assert_eq!(lines[1].find("ready"), Some(state_at));
        assert_eq!(lines[2].find("stopped"), Some(state_at));
        assert!(
            lines[1].contains("1m05s") && lines[1].contains("2.0MiB"),
            "{table}"
        );
        assert!(lines[2].contains("SIGTERM (stopped)"), "{table}");
    }
}
