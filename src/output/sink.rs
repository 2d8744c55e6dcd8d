//! fleet-init's own stdout and stderr as seen by worker output: a bounded pending buffer per
//! stream, written through a private non-blocking descriptor (see `events::writer_of`).
//!
//! Output lines are never dropped: when a stream is full, the lines wait here and the pipes
//! of that stream are no longer read (`has_room`), so the workers block instead. fleet-init's
//! own events on a stream with lines pending queue behind them, so that the order on the stream
//! is the order things happened and a line is never written into the middle of another; an
//! event that finds the queue over its bound is dropped and counted as the events rules say.

use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::cell::RefCell;
use std::os::fd::BorrowedFd;

/// Output lines stop being read into a stream's buffer once it holds this much.
pub const HIGH_WATER_BYTES: usize = 512 * 1024;
/// Room above the high water for fleet-init's own events (and for the lines of the one read
/// that crossed it: a read of `READ_BYTES` may render to several times its size).
const EVENT_ROOM_BYTES: usize = 256 * 1024;
/// A stream that is not a pipe and may still block (a socket, a terminal) is written in pieces
/// no larger than this after poll said it has room.
const POLLED_WRITE_BYTES: usize = 4096;
/// A stream stalled on a full disk is written again this often (the loop's deadline).
pub const STALLED_RETRY_MS: u64 = 1000;
/// fleet-init's own stdout or stderr, when it is a pipe, is enlarged to this (best effort).
const OUTPUT_PIPE_BYTES: i32 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub const ALL: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn fd(self) -> i32 {
        match self {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    /// The stream fd 1 or 2 is.
    pub fn of_fd(fd: i32) -> Option<Stream> {
        match fd {
            1 => Some(Stream::Stdout),
            2 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// How writes to a stream are made safe for PID 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    /// A pipe reopened non-blocking: a full pipe is EAGAIN.
    Private(i32),
    /// A regular file or a device that is not a terminal: never full.
    Direct(i32),
    /// Anything else (socket, terminal): poll, then small writes.
    Polled(i32),
}

#[derive(Debug, Default)]
struct Sink {
    writer: Option<Writer>,
    pending: Vec<u8>,
    /// Bytes of `pending` already written.
    written: usize,
    /// Nobody reads the stream any more (EPIPE, EBADF): what comes is discarded.
    is_broken: bool,
    /// The last write found the disk full (ENOSPC, EDQUOT): what waits is kept and written
    /// again on the loop's retry, never discarded.
    is_stalled: bool,
    /// A line of this stream was written in part (a full pipe or a terminal took part of a
    /// write, or an event's rest was queued): until its end is written, nothing of the other
    /// stream may go to the same pipe, file or terminal (`2>&1`, `docker run -t`), or it would
    /// land inside the line.
    is_mid_line: bool,
}

thread_local! {
    /// fleet-init is single-threaded: one pair of sinks, reached from the runtime and from
    /// `events::emit` alike.
    static SINKS: RefCell<[Sink; 2]> = RefCell::new([Sink::default(), Sink::default()]);
}

thread_local! {
    /// stdout and stderr are one pipe, file, terminal or socket (`2>&1`; `docker run -t`, both
    /// the pty), where a write may be cut anywhere: their lines must not interleave (see
    /// `Sink::is_mid_line`).
    static IS_SHARED_TARGET: std::cell::OnceCell<bool> = const { std::cell::OnceCell::new() };
}

/// Whether fd 1 and fd 2 are the same file (device and inode; a terminal's are its pty's).
fn is_shared_target() -> bool {
    IS_SHARED_TARGET.with(|shared| {
        *shared.get_or_init(|| {
            let id = |fd: i32| {
                // SAFETY: fstat fills the struct it is given; fd 1 and 2 are only looked at.
                let mut stat: libc::stat = unsafe { std::mem::zeroed() };
                let is_ok = unsafe { libc::fstat(fd, &mut stat) } == 0;
                is_ok.then_some((stat.st_dev, stat.st_ino))
            };
            matches!((id(1), id(2)), (Some(a), Some(b)) if a == b)
        })
    })
}

fn other(stream: Stream) -> Stream {
    match stream {
        Stream::Stdout => Stream::Stderr,
        Stream::Stderr => Stream::Stdout,
    }
}

/// The other stream holds a line cut in two on the target both share: `stream` must wait.
fn is_held_by_other(sinks: &[Sink; 2], stream: Stream) -> bool {
    sinks
        .get(other(stream).index())
        .is_some_and(|sink| sink.is_mid_line && !sink.is_broken)
        && is_shared_target()
}

fn with<T>(stream: Stream, f: impl FnOnce(&mut Sink) -> T) -> T {
    SINKS.with(|sinks| {
        let mut sinks = sinks.borrow_mut();
        let index = stream.index();
        // The array has both streams; the fallback is never taken.
        match sinks.get_mut(index) {
            Some(sink) => f(sink),
            None => f(&mut Sink::default()),
        }
    })
}

impl Sink {
    fn writer(&mut self, stream: Stream) -> Writer {
        *self.writer.get_or_insert_with(|| open_writer(stream.fd()))
    }

    fn pending_bytes(&self) -> usize {
        self.pending.len().saturating_sub(self.written)
    }

    /// Writes what waits, as much as the stream takes now. `is_held`: the other stream has a
    /// line cut in two on the target both share (nothing is written then).
    fn flush(&mut self, stream: Stream, is_held: bool) {
        if self.pending_bytes() == 0 || self.is_broken {
            self.clear();
            return;
        }
        if is_held {
            return;
        }
        let writer = self.writer(stream);
        while self.pending_bytes() > 0 {
            let rest = self.pending.get(self.written..).unwrap_or_default();
            let (fd, rest) = match writer {
                Writer::Private(fd) | Writer::Direct(fd) => (fd, rest),
                Writer::Polled(fd) => {
                    if !has_room(fd) {
                        return;
                    }
                    (
                        fd,
                        rest.get(..POLLED_WRITE_BYTES.min(rest.len()))
                            .unwrap_or(rest),
                    )
                }
            };
            // SAFETY: the pointer and length describe the live `rest` slice.
            let written = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if written >= 0 {
                self.written += usize::try_from(written).unwrap_or(0);
                self.is_stalled = false;
                if written > 0 {
                    let last = self
                        .written
                        .checked_sub(1)
                        .and_then(|at| self.pending.get(at));
                    self.is_mid_line = last != Some(&b'\n');
                }
                continue;
            }
            // EAGAIN below: keep the buffer from growing by what was already written.
            if self.written > HIGH_WATER_BYTES {
                self.pending.drain(..self.written);
                self.written = 0;
            }
            match nix::errno::Errno::last() {
                nix::errno::Errno::EINTR => continue,
                nix::errno::Errno::EAGAIN => return,
                // A full disk under a file: the lines wait (the workers block once the buffer
                // is over its high water, as for a full pipe) and are written when room comes
                // back. Nothing is lost (SPEC), and no line is cut in two.
                errno @ (nix::errno::Errno::ENOSPC | nix::errno::Errno::EDQUOT) => {
                    if !self.is_stalled {
                        log::warn!(
                            "{}: {errno}; its lines wait and are written again every \
                             {STALLED_RETRY_MS} ms",
                            stream.name()
                        );
                    }
                    self.is_stalled = true;
                    return;
                }
                errno => {
                    // EPIPE, EBADF: nobody will read this stream again. The workers must not
                    // block on it: their lines are discarded from now on.
                    log::debug!(
                        "{} is gone ({errno}): worker output to it is discarded",
                        stream.name()
                    );
                    self.is_broken = true;
                    self.clear();
                    return;
                }
            }
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.pending.clear();
        self.written = 0;
        self.is_mid_line = false;
    }
}

/// The descriptor worker output goes through: a pipe's private non-blocking one, else the
/// stream itself.
fn open_writer(fd: i32) -> Writer {
    use crate::events::StreamWriter;
    match crate::events::writer_of(fd) {
        StreamWriter::Private(private) => {
            // A larger pipe, best effort: fewer wake-ups of fleet-init and of the reader for
            // the same lines (a stream of output is about twice the workers' bytes).
            // SAFETY: fcntl on a descriptor of ours; failure is an errno, not UB.
            let resized = unsafe { libc::fcntl(private, libc::F_SETPIPE_SZ, OUTPUT_PIPE_BYTES) };
            if resized < 0 {
                log::debug!("F_SETPIPE_SZ on fd {fd}: {}", nix::errno::Errno::last());
            }
            Writer::Private(private)
        }
        StreamWriter::NeverFull => Writer::Direct(fd),
        StreamWriter::MayBeFull => Writer::Polled(fd),
    }
}

fn has_room(fd: i32) -> bool {
    // SAFETY: fd 1 or 2, borrowed only for this poll.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(borrowed, PollFlags::POLLOUT)];
    matches!(nix::poll::poll(&mut fds, PollTimeout::ZERO), Ok(ready) if ready > 0)
}

/// Moves rendered output lines into `stream`'s buffer (writes nothing yet); `lines` is left
/// empty. An empty buffer trades places with `lines` instead of copying them.
pub fn append(stream: Stream, lines: &mut Vec<u8>) {
    with(stream, |sink| {
        if sink.is_broken {
        } else if sink.pending_bytes() == 0 {
            sink.clear();
            std::mem::swap(&mut sink.pending, lines);
        } else {
            sink.pending.extend_from_slice(lines);
        }
    });
    lines.clear();
}

/// Writes what `stream` holds, as much as it takes now.
pub fn flush(stream: Stream) {
    SINKS.with(|sinks| {
        let mut sinks = sinks.borrow_mut();
        let is_held = is_held_by_other(&sinks, stream);
        if let Some(sink) = sinks.get_mut(stream.index()) {
            sink.flush(stream, is_held);
        }
    });
}

/// Whether the pipes of `stream` may be read into its buffer.
pub fn has_room_for_output(stream: Stream) -> bool {
    room_for_output(stream) > 0
}

/// How many bytes of worker lines `stream`'s buffer takes now (a line that starts within it
/// goes in whole). What is left for fleet-init's own events (`EVENT_ROOM_BYTES`) is never
/// taken by worker lines.
pub fn room_for_output(stream: Stream) -> usize {
    with(stream, |sink| {
        HIGH_WATER_BYTES.saturating_sub(sink.pending_bytes())
    })
}

/// Whether a stream waits for room on a full disk: the loop retries after `STALLED_RETRY_MS`.
pub fn is_stalled() -> bool {
    Stream::ALL
        .iter()
        .any(|stream| with(*stream, |sink| sink.is_stalled && sink.pending_bytes() > 0))
}

/// The rest of a line of fleet-init's own that stream fd `fd` took only part of (a full disk):
/// queued, then written with the stream's lines, so that the line is finished later instead of
/// cut off. False when `fd` is not a stream of ours or nobody reads it.
pub fn queue_rest(fd: i32, rest: &[u8]) -> bool {
    let Some(stream) = Stream::of_fd(fd) else {
        return false;
    };
    let is_queued = with(stream, |sink| {
        if sink.is_broken {
            return false;
        }
        // The start of the line went out directly: the line is open until its rest is
        // written.
        if sink.pending_bytes() == 0 {
            sink.is_mid_line = true;
        }
        sink.pending.extend_from_slice(rest);
        true
    });
    if is_queued {
        flush(stream);
    }
    is_queued
}

/// Whether `stream` has lines waiting.
pub fn is_pending(stream: Stream) -> bool {
    with(stream, |sink| sink.pending_bytes() > 0)
}

/// The descriptor to poll for POLLOUT while `stream` has lines waiting.
pub fn waiting_fd(stream: Stream) -> Option<i32> {
    with(stream, |sink| {
        if sink.pending_bytes() == 0 || sink.is_broken {
            return None;
        }
        match sink.writer(stream) {
            Writer::Private(fd) | Writer::Polled(fd) => Some(fd),
            // A file takes everything at once: nothing to wait for.
            Writer::Direct(_) => None,
        }
    })
}

/// Gives up what `stream` still holds (the shutdown's grace ended with the reader stalled);
/// returns how many lines that was, for the shutdown's summary and a diagnostic.
///
/// A line written in part stays: its end is what `finish_line_within` writes before the last
/// event, so that the stream does not end on a cut JSON line (nor the event follow it on the
/// same line). It is not counted: it is not lost yet.
pub fn abandon(stream: Stream) -> u64 {
    with(stream, |sink| {
        let rest = sink.pending.get(sink.written..).unwrap_or_default();
        let kept = match rest.iter().position(|b| *b == b'\n') {
            // Part-written by a flush, or by `events::write_line` (its rest queued, nothing of
            // the buffer written yet): its end is kept either way.
            Some(end) if sink.is_mid_line => end.saturating_add(1),
            _ => 0,
        };
        let lines = rest
            .get(kept..)
            .unwrap_or_default()
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        let end = sink.written.saturating_add(kept);
        sink.pending.truncate(end);
        if kept == 0 {
            sink.clear();
        }
        u64::try_from(lines).unwrap_or(u64::MAX)
    })
}

/// Writes the end of a line `abandon` kept, waiting for room until `deadline` at most.
pub fn finish_line_within(deadline: std::time::Instant) {
    for stream in Stream::ALL {
        loop {
            flush(stream);
            let Some(fd) = waiting_fd(stream) else {
                break;
            };
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let millis = u16::try_from(left.as_millis().min(60_000)).unwrap_or(60_000);
            let timeout = nix::poll::PollTimeout::from(millis);
            // SAFETY: the sink's descriptors live as long as the process.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let mut fds = [nix::poll::PollFd::new(
                borrowed,
                nix::poll::PollFlags::POLLOUT,
            )];
            if nix::poll::poll(&mut fds, timeout).is_err() {
                break;
            }
        }
    }
}

/// Writes one line of fleet-init's own (at most PIPE_BUF bytes) to stream fd `fd` at once,
/// through the stream's non-blocking writer: whole, or not at all when a pipe has no room or a
/// socket or terminal does not poll writable. False when it did not go.
pub fn write_line_now(fd: i32, line: &[u8]) -> bool {
    let Some(stream) = Stream::of_fd(fd) else {
        return false;
    };
    let fd = SINKS.with(|sinks| {
        let Ok(mut sinks) = sinks.try_borrow_mut() else {
            // Said from inside a sink (a diagnostic of its own): the stream itself, after a
            // poll for room (the line is at most PIPE_BUF: a pipe with room takes it whole).
            return has_room(fd).then_some(fd);
        };
        let sink = sinks.get_mut(stream.index())?;
        if sink.is_broken {
            return None;
        }
        match sink.writer(stream) {
            Writer::Private(fd) | Writer::Direct(fd) => Some(fd),
            Writer::Polled(fd) => has_room(fd).then_some(fd),
        }
    });
    let Some(fd) = fd else {
        return false;
    };
    loop {
        // SAFETY: the pointer and length describe the live `line` slice.
        let written = unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
        if written >= 0 {
            return true;
        }
        if nix::errno::Errno::last() != nix::errno::Errno::EINTR {
            // EAGAIN: no room; EPIPE and the like: nobody reads. Either way, not now.
            return false;
        }
    }
}

/// What `events::emit` does with a line of fleet-init's own for stream fd `fd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// No output waits on that stream: write it directly.
    Direct,
    /// Queued behind the output lines waiting on that stream.
    Queued,
    /// The queue is over its bound: drop and count it, as for a full stream.
    Full,
}

/// Queues an event line behind waiting output lines so that it neither overtakes them nor is
/// written into the middle of one.
pub fn offer_event(fd: i32, line: &[u8]) -> Offer {
    let Some(stream) = Stream::of_fd(fd) else {
        return Offer::Direct;
    };
    SINKS.with(|sinks| {
        // Already borrowed: the event is emitted from inside a sink (never happens): direct.
        let Ok(mut sinks) = sinks.try_borrow_mut() else {
            return Offer::Direct;
        };
        let is_held = is_held_by_other(&sinks, stream);
        let Some(sink) = sinks.get_mut(stream.index()) else {
            return Offer::Direct;
        };
        if sink.is_broken || (sink.pending_bytes() == 0 && !is_held) {
            Offer::Direct
        } else if sink.pending_bytes() < HIGH_WATER_BYTES + EVENT_ROOM_BYTES {
            sink.pending.extend_from_slice(line);
            Offer::Queued
        } else {
            Offer::Full
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test runs on its own thread: its own sinks. Nothing here writes to fd 1 or 2: the
    // sinks are given a pipe of the test's own.
    fn sink_on_pipe(stream: Stream) -> std::os::fd::OwnedFd {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(write);
        // SAFETY: fcntl on the pipe just made.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, 65536) }, 65536);
        with(stream, |sink| sink.writer = Some(Writer::Private(fd)));
        read
    }

    fn read_all(fd: &std::os::fd::OwnedFd) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buffer = [0u8; 65536];
        while let Ok(count) = nix::unistd::read(fd, &mut buffer) {
            if count == 0 {
                break;
            }
            all.extend_from_slice(&buffer[..count]);
        }
        all
    }

    #[test]
    fn events_go_direct_queue_behind_output_then_are_refused_over_the_bound() {
        let reader = sink_on_pipe(Stream::Stdout);
        assert_eq!(offer_event(1, b"e1\n"), Offer::Direct, "nothing waits");
        assert_eq!(
            offer_event(3, b"x\n"),
            Offer::Direct,
            "not a stream of ours"
        );
        // Fill the pipe and more: output waits in the buffer.
        let line = vec![b'o'; 999];
        let mut lines = Vec::new();
        // The pipe takes 64 KiB: the rest, over the high water, waits.
        while lines.len() < HIGH_WATER_BYTES + 100 * 1024 {
            lines.extend_from_slice(&line);
            lines.push(b'\n');
        }
        let total_output = lines.len();
        append(Stream::Stdout, &mut lines);
        flush(Stream::Stdout);
        assert!(is_pending(Stream::Stdout));
        assert!(!has_room_for_output(Stream::Stdout));
        assert!(waiting_fd(Stream::Stdout).is_some());
        assert_eq!(offer_event(1, b"e2\n"), Offer::Queued);
        // Over the bound, events are refused (the caller drops and counts them).
        let mut refused = 0;
        for _ in 0..1000 {
            if offer_event(1, &[b'e'; 1000]) == Offer::Full {
                refused += 1;
            }
        }
        assert!(refused > 0);
        // The reader resumes: everything comes out in order, e2 after all the output.
        let mut out = read_all(&reader);
        while is_pending(Stream::Stdout) {
            flush(Stream::Stdout);
            out.extend(read_all(&reader));
        }
        assert_eq!(&out[..total_output], &lines_of(total_output)[..]);
        assert_eq!(&out[total_output..total_output + 3], b"e2\n");
        assert_eq!(
            offer_event(1, b"e3\n"),
            Offer::Direct,
            "drained: direct again"
        );
    }

    fn lines_of(total: usize) -> Vec<u8> {
        let mut line = vec![b'o'; 999];
        line.push(b'\n');
        line.iter().copied().cycle().take(total).collect()
    }

    #[test]
    fn a_stream_nobody_reads_discards_instead_of_blocking() {
        let reader = sink_on_pipe(Stream::Stderr);
        drop(reader);
        let mut lines = b"lost\n".to_vec();
        append(Stream::Stderr, &mut lines);
        flush(Stream::Stderr);
        assert!(!is_pending(Stream::Stderr));
        assert!(has_room_for_output(Stream::Stderr));
        assert_eq!(offer_event(2, b"e\n"), Offer::Direct);
    }

    #[test]
    fn a_line_cut_by_a_full_shared_pipe_is_finished_before_the_other_stream_writes() {
        // `2>&1` into one pipe (or `docker run -t`, one pty): stdout's pending lines fill the
        // pipe and the write cuts a line; stderr, with room again, wrote into the middle of it
        // (a collector saw half an event, a whole other event, then the rest).
        IS_SHARED_TARGET.with(|shared| shared.set(true).unwrap());
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(write);
        // SAFETY: fcntl on the pipe just made.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, 65536) }, 65536);
        for stream in Stream::ALL {
            with(stream, |sink| sink.writer = Some(Writer::Private(fd)));
        }
        let line_of = |fill: u8| {
            let mut line = vec![fill; 999];
            line.push(b'\n');
            line
        };
        let mut out_lines: Vec<u8> = (0..100).flat_map(|_| line_of(b'o')).collect();
        append(Stream::Stdout, &mut out_lines);
        flush(Stream::Stdout);
        assert!(is_pending(Stream::Stdout), "the pipe took part of it");
        let mut err_lines: Vec<u8> = (0..10).flat_map(|_| line_of(b'e')).collect();
        append(Stream::Stderr, &mut err_lines);
        // An event of stderr queues behind as well.
        assert_eq!(offer_event(2, b"{\"event\":\"x\"}\n"), Offer::Queued);
        let mut out = Vec::new();
        for _ in 0..1000 {
            if !is_pending(Stream::Stdout) && !is_pending(Stream::Stderr) {
                break;
            }
            // Room for a bit more, then stderr first: the loop's order must not matter.
            let mut buffer = [0u8; 5000];
            if let Ok(count) = nix::unistd::read(&read, &mut buffer) {
                out.extend_from_slice(&buffer[..count]);
            }
            flush(Stream::Stderr);
            flush(Stream::Stdout);
        }
        out.extend(read_all(&read));
        let lines: Vec<&[u8]> = out.split_inclusive(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 111);
        for line in &lines {
            let is_whole = line.len() == 1000
                && (line[..999].iter().all(|b| *b == b'o')
                    || line[..999].iter().all(|b| *b == b'e'));
            assert!(
                is_whole || *line == b"{\"event\":\"x\"}\n",
                "a torn line: {:?}",
                String::from_utf8_lossy(line)
            );
        }
        // SAFETY: the write end made above, closed once.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn abandon_counts_the_lines_left() {
        let _reader = sink_on_pipe(Stream::Stdout);
        // No room at all: a pipe already full.
        let mut filler = vec![b'f'; 4 << 20];
        filler.push(b'\n');
        append(Stream::Stdout, &mut filler);
        flush(Stream::Stdout);
        let mut lines = b"a\nb\nc\n".to_vec();
        append(Stream::Stdout, &mut lines);
        // The filler went out in part: its end stays for `finish_line_within`, uncounted (the
        // stream must not end inside it); the three lines after it are given up.
        assert_eq!(abandon(Stream::Stdout), 3);
        assert!(is_pending(Stream::Stdout));
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(50);
        finish_line_within(deadline);
        assert!(
            is_pending(Stream::Stdout),
            "nobody reads: still there after the wait"
        );
        // An event written in part by `events::write_line`, its rest queued (nothing of the
        // buffer written yet): its end stays too, and it is no worker line lost.
        let _out_reader = sink_on_pipe(Stream::Stdout);
        with(Stream::Stdout, |sink| sink.clear());
        let mut filler = vec![b'f'; 4 << 20];
        filler.push(b'\n');
        append(Stream::Stdout, &mut filler);
        flush(Stream::Stdout);
        abandon(Stream::Stdout);
        with(Stream::Stdout, |sink| sink.clear());
        assert!(queue_rest(1, b"rest of an event\n"));
        let mut lines = b"x\n".to_vec();
        append(Stream::Stdout, &mut lines);
        assert_eq!(abandon(Stream::Stdout), 1);
        assert!(is_pending(Stream::Stdout), "the event's end stays");
        // Nothing of a line written (not flushed): every line is given up, nothing stays.
        let _err_reader = sink_on_pipe(Stream::Stderr);
        let mut lines = b"a\nb\n".to_vec();
        append(Stream::Stderr, &mut lines);
        assert_eq!(abandon(Stream::Stderr), 2);
        assert!(!is_pending(Stream::Stderr));
    }
}
