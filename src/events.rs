//! The JSON-lines event stream (stdout, stderr or off, as `--events` says): one object per
//! line, one `write` per line. Also the plain diagnostic lines that go to stderr whatever the
//! events do.

use crate::output::sink::Offer;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;
use serde_json::Value;
use std::cell::RefCell;
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One event: its name, level and fields in the order they were added.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub level: Level,
    pub name: &'static str,
    pub fields: Vec<(&'static str, Value)>,
}

impl Event {
    pub fn new(level: Level, name: &'static str) -> Event {
        Event {
            level,
            name,
            fields: Vec::new(),
        }
    }

    pub fn info(name: &'static str) -> Event {
        Event::new(Level::Info, name)
    }

    pub fn warn(name: &'static str) -> Event {
        Event::new(Level::Warn, name)
    }

    pub fn error(name: &'static str) -> Event {
        Event::new(Level::Error, name)
    }

    /// Adds a field; later fields with the same key are kept too, so add each key once.
    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Event {
        self.fields.push((key, value.into()));
        self
    }

    /// The value of a field, for tests and for the runtime's own decisions.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The line as written: `{"ts":…,"level":…,"event":…,<fields>}` and a newline. Built in
    /// one buffer, each value serialized straight into it: an event on the way out of a
    /// shutdown costs a few microseconds less than through a `String` per field.
    pub fn render(&self, at: SystemTime) -> String {
        let mut line = Vec::with_capacity(160);
        line.extend_from_slice(b"{\"ts\":\"");
        push_rfc3339_millis(&mut line, at);
        line.extend_from_slice(b"\",\"level\":\"");
        line.extend_from_slice(self.level.as_str().as_bytes());
        line.extend_from_slice(b"\",\"event\":");
        push_json(&mut line, self.name);
        for (key, value) in &self.fields {
            line.push(b',');
            push_json(&mut line, key);
            line.push(b':');
            push_json(&mut line, value);
        }
        line.extend_from_slice(b"}\n");
        // serde_json writes UTF-8 only; the lossy path is never taken.
        String::from_utf8(line)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
    }
}

/// Appends `value` as JSON. A string, a number or a `Value` (whose keys are strings) always
/// serializes, and a `Vec` always takes the bytes.
fn push_json<T: serde::Serialize + ?Sized>(line: &mut Vec<u8>, value: &T) {
    if let Err(error) = serde_json::to_writer(&mut *line, value) {
        log::debug!("an event field did not serialize: {error}");
        line.extend_from_slice(b"null");
    }
}

/// Events not written because their stream could not take them, reported on the next line
/// written.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The stream events go to (1, 2; negative: off), as `--events` chose.
static TARGET: AtomicI32 = AtomicI32::new(1);

/// The descriptor events are written through: the stream itself, or, when it is a pipe, a
/// private non-blocking descriptor for it (see `writer_of`).
static EVENTS_FD: AtomicI32 = AtomicI32::new(1);

/// A line longer than this is cut (`truncated: true`): it is also PIPE_BUF, so a line goes
/// into a pipe whole or not at all.
pub const MAX_LINE_BYTES: usize = 4096;

/// Whether a line may find the events' descriptor full: false for a regular file and for a
/// device that is not a terminal (`/dev/null`), which take every write, so that no `poll`
/// precedes each line there. True until `set_target` has looked.
static MAY_BE_FULL: AtomicBool = AtomicBool::new(true);

/// Where the events go from now on (`--events`).
pub fn set_target(target: crate::cli::EventsTarget) {
    let fd = match target {
        crate::cli::EventsTarget::Stdout => 1,
        crate::cli::EventsTarget::Stderr => 2,
        crate::cli::EventsTarget::Off => -1,
    };
    TARGET.store(fd, Ordering::Relaxed);
    let (events_fd, may_be_full) = if fd < 0 {
        (fd, false)
    } else {
        match writer_of(fd) {
            StreamWriter::Private(private) => (private, true),
            StreamWriter::NeverFull => (fd, false),
            StreamWriter::MayBeFull => (fd, true),
        }
    };
    MAY_BE_FULL.store(may_be_full, Ordering::Relaxed);
    EVENTS_FD.store(events_fd, Ordering::Relaxed);
}

/// How fleet-init writes to its stdout or stderr without ever blocking on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamWriter {
    /// A pipe, through this private non-blocking descriptor (`private_descriptor`).
    Private(i32),
    /// A regular file, or a device that is not a terminal: a write never waits for a reader.
    NeverFull,
    /// Anything else (a terminal, a socket, a pipe without /proc): poll before writing.
    MayBeFull,
}

/// The writer for stream `fd` (1 or 2), from one look at what it is.
pub(crate) fn writer_of(fd: i32) -> StreamWriter {
    // SAFETY: fd 1 or 2, borrowed only for this fstat.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let Ok(stat) = nix::sys::stat::fstat(borrowed) else {
        return StreamWriter::MayBeFull;
    };
    let kind = stat.st_mode & libc::S_IFMT;
    if kind == libc::S_IFIFO {
        return private_descriptor(fd).map_or(StreamWriter::MayBeFull, StreamWriter::Private);
    }
    // SAFETY: isatty only looks at the descriptor.
    if kind == libc::S_IFREG || (kind == libc::S_IFCHR && unsafe { libc::isatty(fd) } != 1) {
        StreamWriter::NeverFull
    } else {
        StreamWriter::MayBeFull
    }
}

/// A pipe's own open file description, reopened through /proc with O_NONBLOCK: a write that
/// would block fails with EAGAIN instead, and the workers, who share the stream's original
/// description, keep their blocking writes. `None` without /proc. Only for a pipe (a file or a
/// terminal does not fill up; a socket cannot be reopened).
fn private_descriptor(fd: i32) -> Option<i32> {
    let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    match nix::fcntl::open(format!("/proc/self/fd/{fd}").as_str(), flags, Mode::empty()) {
        // Kept for the life of the process: events are written until the very end.
        Ok(private) => Some(private.into_raw_fd()),
        Err(errno) => {
            log::debug!("cannot reopen fd {fd} non-blocking ({errno}): poll before each write");
            None
        }
    }
}

/// Where the events go now, for a re-exec of fleet-init to keep it.
pub fn target() -> crate::cli::EventsTarget {
    match TARGET.load(Ordering::Relaxed) {
        1 => crate::cli::EventsTarget::Stdout,
        2 => crate::cli::EventsTarget::Stderr,
        _ => crate::cli::EventsTarget::Off,
    }
}

thread_local! {
    /// The held first line and the time it is about (fleet-init is single-threaded).
    static HELD: RefCell<Option<(Event, SystemTime)>> = const { RefCell::new(None) };
}

/// Holds `init_started` (stamped now) until the first workers are forked: its formatting and
/// its write are then made while they exec, not before. Whatever fleet-init writes first
/// (`emit`, `diagnostic`) writes it first, so it stays the first line of fleet-init's own.
pub fn hold_first(event: Event) {
    let at = SystemTime::now();
    HELD.with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            *held = Some((event, at));
        }
    });
}

/// Writes the line `hold_first` holds, if it still does.
pub fn release_held() {
    let taken = HELD.with(|held| held.try_borrow_mut().ok().and_then(|mut held| held.take()));
    if let Some((event, at)) = taken {
        emit_at(&event, at);
    }
}

/// Writes the event to its stream in one `write(2)`.
///
/// PID 1 must never block on its log: a line goes whole into a pipe with room for it, or it is
/// dropped and counted, and the next line written carries `events_dropped` (a stalled log
/// driver, a reader that never reads). A line over `MAX_LINE_BYTES` is cut to fit. A closed or
/// broken stream is not fleet-init's problem to die of either.
pub fn emit(event: &Event) {
    release_held();
    emit_at(event, SystemTime::now());
}

/// `emit` of an event that happened `at`.
fn emit_at(event: &Event, at: SystemTime) {
    let fd = EVENTS_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // Without a private non-blocking descriptor, look before writing (a terminal, a socket).
    if fd == TARGET.load(Ordering::Relaxed)
        && MAY_BE_FULL.load(Ordering::Relaxed)
        && !is_writable(fd)
    {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    let line = if dropped > 0 {
        fit(&event.clone().with("events_dropped", dropped), at)
    } else {
        fit(event, at)
    };
    // Worker output waiting on this stream goes first: the event queues behind it.
    let offer = crate::output::sink::offer_event(TARGET.load(Ordering::Relaxed), line.as_bytes());
    let is_written = match offer {
        Offer::Queued => true,
        Offer::Full => false,
        Offer::Direct => write_line(fd, line.as_bytes()),
    };
    if !is_written {
        DROPPED.fetch_add(dropped.saturating_add(1), Ordering::Relaxed);
    }
}

/// The rendered line, cut to `MAX_LINE_BYTES`: the longest text field is shortened (at a
/// character boundary) until the line fits, and `truncated: true` says so.
pub fn fit(event: &Event, at: SystemTime) -> String {
    let line = event.render(at);
    if line.len() <= MAX_LINE_BYTES {
        return line;
    }
    let mut cut = event.clone().with("truncated", true);
    for _ in 0..8 {
        let line = cut.render(at);
        let excess = line.len().saturating_sub(MAX_LINE_BYTES);
        if excess == 0 {
            return line;
        }
        let longest = cut
            .fields
            .iter_mut()
            .map(|(_, value)| value)
            .max_by_key(|value| value.to_string().len());
        let Some(value) = longest else { break };
        // A list keeps its type (`signal_forwarded.workers` is an array to whoever parses it):
        // its last items go, in proportion to the excess.
        if let Value::Array(items) = value {
            let rendered = Value::Array(items.clone()).to_string().len().max(1);
            let keep = items
                .len()
                .saturating_mul(rendered.saturating_sub(excess.saturating_add(16)))
                / rendered;
            items.truncate(keep.min(items.len().saturating_sub(1)));
            continue;
        }
        let text = match &*value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        // Cut in proportion to what the text costs once escaped (1 to 6 bytes a byte), so this
        // fits in a round or two and keeps as much of the text as the line can hold.
        let rendered = Value::String(text.clone()).to_string().len().max(1);
        let raw_cut = excess
            .saturating_mul(text.len())
            .div_ceil(rendered)
            .saturating_add(8);
        let keep = text.len().saturating_sub(raw_cut);
        let mut end = keep.min(text.len());
        while end > 0 && !text.is_char_boundary(end) {
            end -= 1;
        }
        *value = Value::String(text.get(..end).unwrap_or_default().to_string());
    }
    // Nothing left to cut: the event's name and time alone.
    Event::new(event.level, event.name)
        .with("truncated", true)
        .render(at)
}

/// One plain line for people on stderr (a newline is added), under the same never-block rule
/// as the events: a stderr nobody drains loses the line, not PID 1.
pub fn diagnostic(line: &str) {
    release_held();
    // At most PIPE_BUF with its newline: a pipe takes it whole or not at all (a spawn failure
    // names the program, its cwd or its user, at whatever length they have).
    let mut end = line.len().min(MAX_LINE_BYTES - 1);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let mut text = String::with_capacity(end + 1);
    text.push_str(line.get(..end).unwrap_or_default());
    text.push('\n');
    // Behind worker output waiting on stderr, never into the middle of one of its lines; else
    // through stderr's own non-blocking writer: a full pipe loses the line, not PID 1's time
    // (a poll, then a blocking write, could still block when a worker filled it in between).
    if crate::output::sink::offer_event(2, text.as_bytes()) == Offer::Direct {
        crate::output::sink::write_line_now(2, text.as_bytes());
    }
}

/// One write of a whole line; false when it could not go (EAGAIN on the non-blocking
/// descriptor, a broken or closed stream). A line of at most PIPE_BUF bytes goes into a pipe
/// whole or not at all.
fn write_line(fd: i32, bytes: &[u8]) -> bool {
    loop {
        // SAFETY: the pointer and length describe the live `bytes` slice.
        let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if written >= 0 {
            let written = usize::try_from(written).unwrap_or(0);
            let rest = bytes.get(written..).unwrap_or_default();
            // A file on a full disk, or a terminal or socket, took part of it: the rest is
            // queued on the stream and written when it can be (never with a blocking write,
            // never dropped halfway, which left a line cut in two).
            if !rest.is_empty()
                && !crate::output::sink::queue_rest(TARGET.load(Ordering::Relaxed), rest)
            {
                write_all(fd, rest);
            }
            return true;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // EAGAIN: no room; EPIPE, EBADF, ENOSPC: nobody is listening. The loop goes on.
            _ => return false,
        }
    }
}

fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe the live `bytes` slice.
        let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if written < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // EPIPE, EBADF, ENOSPC, EAGAIN: nobody is listening; the supervisor goes on.
            return;
        }
        let written = usize::try_from(written).unwrap_or(bytes.len());
        bytes = bytes.get(written..).unwrap_or_default();
    }
}

/// The last line before an exit (`reap_complete`, `shutdown_complete`): worth a wait of up to
/// a second for room in a slow reader's pipe, so that the summary is not the line that gets
/// dropped, and so that what was dropped before is reported on it.
pub fn emit_final(event: &Event) {
    emit_final_within(event, 1000);
}

/// `emit_final` with a wait for room of at most `wait_ms` (what is left of the shutdown's
/// bound; 0 offers the line at once).
pub fn emit_final_within(event: &Event, wait_ms: u16) {
    // A worker line cut by the end of the output's time is finished first, out of the same
    // wait: the event must not end up inside it, nor the stream end on half a line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait_ms.into());
    crate::output::sink::finish_line_within(deadline);
    let wait_ms = u16::try_from(
        deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_millis(),
    )
    .unwrap_or(0);
    let fd = EVENTS_FD.load(Ordering::Relaxed);
    if fd >= 0 && MAY_BE_FULL.load(Ordering::Relaxed) {
        // SAFETY: a descriptor of ours that lives as long as the process, borrowed for a poll.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut fds = [PollFd::new(borrowed, PollFlags::POLLOUT)];
        // Ready or not after the wait, the line is offered: `emit` drops it if there is no room.
        if let Err(errno) = nix::poll::poll(&mut fds, PollTimeout::from(wait_ms)) {
            log::debug!("poll on the events stream: {errno}");
        }
    }
    emit(event);
}

/// A pipe with room for a line (poll says POLLOUT: a free page) takes a write of up to
/// PIPE_BUF bytes without blocking; files and terminals are always writable unless stopped.
fn is_writable(fd: i32) -> bool {
    // SAFETY: fd 1 or 2, borrowed only for this poll; a closed one is POLLNVAL, not UB.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(borrowed, PollFlags::POLLOUT)];
    match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
        Ok(ready) => ready > 0,
        // Not pollable for some reason: writing is the best guess.
        Err(_) => true,
    }
}

/// RFC 3339 UTC with milliseconds: `2026-11-22T02:28:10.123Z`.
pub fn rfc3339_millis(at: SystemTime) -> String {
    let mut text = Vec::with_capacity(24);
    push_rfc3339_millis(&mut text, at);
    String::from_utf8(text).unwrap_or_default()
}

/// `rfc3339_millis`, appended to `out` (digits only: no formatting machinery on the way).
fn push_rfc3339_millis(out: &mut Vec<u8>, at: SystemTime) {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    push_digits(out, year, 4);
    out.push(b'-');
    push_digits(out, month, 2);
    out.push(b'-');
    push_digits(out, day, 2);
    out.push(b'T');
    push_digits(out, rem / 3600, 2);
    out.push(b':');
    push_digits(out, (rem % 3600) / 60, 2);
    out.push(b':');
    push_digits(out, rem % 60, 2);
    out.push(b'.');
    push_digits(out, u64::from(since_epoch.subsec_millis()), 3);
    out.push(b'Z');
}

/// `value` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut rest = value;
    for slot in digits.iter_mut().rev() {
        if rest == 0 {
            break;
        }
        *slot = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
        start -= 1;
    }
    let start = start.min(digits.len().saturating_sub(width));
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's `civil_from_days`
/// restricted to dates after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_over_pipe_buf_is_cut_and_stays_valid_json() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        for filler in ["x", "é", "\"", "\u{1}"] {
            let huge = filler.repeat(400_000);
            let event = Event::warn("reap_skipped")
                .with("pid", 7)
                .with("reason", huge);
            let line = fit(&event, at);
            assert!(line.len() <= MAX_LINE_BYTES, "{filler:?}: {}", line.len());
            assert!(line.ends_with('\n'));
            let value: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(value["truncated"], true);
            assert_eq!(value["pid"], 7, "short fields are kept");
            assert_eq!(value["event"], "reap_skipped");
            assert!(
                line.len() > MAX_LINE_BYTES - 200,
                "{filler:?}: as much as fits ({})",
                line.len()
            );
        }
        let small = Event::info("reaped").with("pid", 1);
        assert_eq!(
            fit(&small, at),
            small.render(at),
            "a short line is untouched"
        );
    }

    #[test]
    fn a_cut_list_stays_a_list_of_its_first_items() {
        // `signal_forwarded` to 1,000 workers: `workers` once became a string holding cut-off
        // JSON, which a consumer reading it as an array could not.
        let at = UNIX_EPOCH;
        let names: Vec<String> = (0..1000).map(|i| format!("worker-{i}")).collect();
        let event = Event::info("signal_forwarded")
            .with("signal", "SIGHUP")
            .with("workers", names.clone());
        let line = fit(&event, at);
        assert!(line.len() <= MAX_LINE_BYTES, "{}", line.len());
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["truncated"], true);
        assert_eq!(value["signal"], "SIGHUP");
        let kept: Vec<&str> = value["workers"]
            .as_array()
            .expect("still an array")
            .iter()
            .map(|name| name.as_str().unwrap())
            .collect();
        assert!(kept.len() > 200, "as many as fit: {}", kept.len());
        assert_eq!(kept, names[..kept.len()]);
    }

    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        for (secs, millis, want) in [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.005Z"),
            (1_795_314_490, 123, "2026-11-22T02:28:10.123Z"),
            (4_107_542_399, 999, "2100-02-28T23:59:59.999Z"),
        ] {
            let at = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
            assert_eq!(rfc3339_millis(at), want);
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_fields_in_order() {
        let event = Event::warn("worker_exited")
            .with("worker", "api \"x\"")
            .with("pid", 42)
            .with("code", Value::Null);
        let line = event.render(UNIX_EPOCH);
        assert!(line.ends_with("}\n"));
        assert_eq!(line.matches('\n').count(), 1);
        let parsed: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(parsed["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(parsed["level"], "warn");
        assert_eq!(parsed["event"], "worker_exited");
        assert_eq!(parsed["worker"], "api \"x\"");
        assert_eq!(parsed["pid"], 42);
        let keys: Vec<&str> = line
            .split(",\"")
            .map(|s| s.split('"').next().unwrap())
            .collect();
        assert_eq!(&keys[1..], ["level", "event", "worker", "pid", "code"]);
    }

    #[test]
    fn a_line_is_what_serde_json_writes_for_each_field_byte_for_byte() {
        let event = Event::error("odd \"name\"")
            .with("text", "tab\tnewline\nquote\"back\\slash\u{1}é😀")
            .with("negative", -17)
            .with("big", u64::MAX)
            .with("ratio", 0.25)
            .with("flag", false)
            .with("none", Value::Null)
            .with("list", serde_json::json!([1, "two", {"three": [3]}]))
            .with("object", serde_json::json!({"b": 1, "a": {"c": null}}));
        let at = UNIX_EPOCH + Duration::from_millis(1_795_314_490_007);
        let mut want = format!(
            "{{\"ts\":\"2026-11-22T02:28:10.007Z\",\"level\":\"error\",\"event\":{}",
            Value::from(event.name)
        );
        for (key, value) in &event.fields {
            want.push_str(&format!(",{}:{}", Value::from(*key), value));
        }
        want.push_str("}\n");
        assert_eq!(event.render(at), want);
    }

    #[test]
    fn digits_are_zero_padded_to_their_width_and_never_cut() {
        for (value, width, want) in [
            (0, 3, "000"),
            (7, 2, "07"),
            (59, 2, "59"),
            (2026, 4, "2026"),
            (12_345, 4, "12345"),
            (u64::MAX, 2, "18446744073709551615"),
        ] {
            let mut out = Vec::new();
            push_digits(&mut out, value, width);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
