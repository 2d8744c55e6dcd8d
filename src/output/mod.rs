//! Worker output as JSON lines (`output: "jsonl"`): the table of the workers' pipes, read from
//! the one loop in `runtime.rs` when `poll` says so, each line an `output` event on the stream
//! it came from. `lines` cuts and renders (pure), `clean` is its fast path for plain lines,
//! `pipes` makes the pipes of a run, `sink` holds what fleet-init's stdout and stderr cannot
//! take yet.
//!
//! Nothing is lost: a stream that is full stops the reading of the pipes that feed it (they
//! are left out of the poll set), so the workers block on their full pipes, as under Docker's
//! blocking log mode, while PID 1 goes on handling signals, exits and timers.

pub mod clean;
pub mod lines;
pub mod pipes;
pub mod sink;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};
use pipes::ReadEnds;
use sink::Stream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::SystemTime;

/// One read takes at most this much from a pipe.
const READ_BYTES: usize = 128 * 1024;
/// One turn of the loop renders at most about this much in all (or reads it, for bytes that
/// render to less), so that exits, timers and probes are looked at between the batches of a
/// worker that floods its output (a signal ends a batch at once). Counted in rendered bytes:
/// 4 MiB of short lines render to 200 MB, a turn of half a second.
const TURN_BYTES: usize = 8 * 1024 * 1024;
/// What an exit's drain reads at most: its two pipes' 1 MiB each, twice over.
const EXIT_DRAIN_BYTES: usize = 4 * 1024 * 1024;

/// One pipe of one worker run, kept until EOF: a daemonized child may write after the
/// worker's main process is gone, and a restart gets pipes of its own.
struct Pipe {
    worker: String,
    stream: Stream,
    fd: OwnedFd,
    splitter: lines::LineSplitter,
    /// The fixed middle of each rendered line (`lines::line_head`).
    head: String,
    /// EOF was read: the descriptor is closed at the end of this turn's reads.
    is_closed: bool,
    /// Bytes read and not rendered yet (the stream's buffer was full before the read's end):
    /// rendered first, and nothing more is read from the pipe until they are.
    backlog: Vec<u8>,
}

/// Every open worker pipe, and the buffers reads are made into.
#[derive(Default)]
pub struct Output {
    pipes: Vec<Pipe>,
    scratch: Vec<u8>,
    rendered: Vec<u8>,
    /// The start of the lines of the pipe being read (`lines::line_prefix`).
    prefix: Vec<u8>,
}

impl Output {
    /// Takes the read ends of a new run of `worker`.
    pub fn add(&mut self, worker: &str, ends: ReadEnds) {
        for (stream, fd) in [(Stream::Stdout, ends.stdout), (Stream::Stderr, ends.stderr)] {
            self.pipes.push(Pipe {
                worker: worker.to_string(),
                stream,
                fd,
                splitter: lines::LineSplitter::default(),
                head: lines::line_head(worker, stream.name()),
                is_closed: false,
                backlog: Vec::new(),
            });
        }
    }

    /// Reads what the pipes hold, while their streams have room, and writes it out: a bounded
    /// amount per call, and no more once `is_interrupted` (a signal or an exit is waiting) says
    /// so: the loop comes back at once when more is there, after the signals.
    pub fn service(&mut self, is_interrupted: &dyn Fn() -> bool) {
        self.service_within(is_interrupted, false);
    }

    /// After a worker's exit, before its `worker_exited`: what it wrote is read to the end
    /// (whatever signal waits), bounded by what its pipes hold (1 MiB each) and then some,
    /// counted in bytes read: short lines render to many times their size, and all of them
    /// must be in the stream's buffer, or in the pipe's backlog, before the event.
    pub fn drain_after_exit(&mut self) {
        self.service_within(&|| false, true);
    }

    fn service_within(&mut self, is_interrupted: &dyn Fn() -> bool, is_exit_drain: bool) {
        for stream in Stream::ALL {
            sink::flush(stream);
        }
        if self.pipes.is_empty() {
            return;
        }
        if self.scratch.len() < READ_BYTES {
            self.scratch.resize(READ_BYTES, 0);
        }
        // One timestamp per batch: a batch is read within a millisecond or so.
        let ts = crate::events::rfc3339_millis(SystemTime::now());
        let mut is_done = vec![false; self.pipes.len()];
        let mut budget = if is_exit_drain {
            EXIT_DRAIN_BYTES
        } else {
            TURN_BYTES
        };
        // The turn's budget counts what is rendered; an exit's drain, what is read.
        let cost = |read: usize, rendered: usize| {
            if is_exit_drain {
                read
            } else {
                read.max(rendered)
            }
        };
        while budget > 0 {
            let mut has_read = false;
            for (pipe, is_done) in self.pipes.iter_mut().zip(is_done.iter_mut()) {
                let room = sink::room_for_output(pipe.stream);
                if *is_done || room == 0 {
                    continue;
                }
                lines::line_prefix(&mut self.prefix, &ts, &pipe.head);
                let prefix = &self.prefix;
                let splitter = &mut pipe.splitter;
                if !pipe.backlog.is_empty() {
                    let taken = splitter.push_rendered_within(
                        &pipe.backlog,
                        prefix,
                        &mut self.rendered,
                        room,
                    );
                    pipe.backlog.drain(..taken);
                    budget = budget.saturating_sub(cost(taken, self.rendered.len()));
                    has_read = true;
                } else {
                    match read_into(&pipe.fd, &mut self.scratch, &pipe.worker, pipe.stream) {
                        Read::Bytes(count) => {
                            let data = self.scratch.get(..count).unwrap_or_default();
                            let taken = splitter.push_rendered_within(
                                data,
                                prefix,
                                &mut self.rendered,
                                room,
                            );
                            pipe.backlog
                                .extend_from_slice(data.get(taken..).unwrap_or_default());
                            budget = budget.saturating_sub(cost(count, self.rendered.len()));
                            has_read = true;
                        }
                        Read::Empty => *is_done = true,
                        Read::End => {
                            splitter.finish(&mut |bytes: &[u8], piece: lines::Piece| {
                                lines::render(&mut self.rendered, prefix, bytes, piece);
                            });
                            pipe.is_closed = true;
                            *is_done = true;
                        }
                    }
                }
                if !self.rendered.is_empty() {
                    sink::append(pipe.stream, &mut self.rendered);
                    sink::flush(pipe.stream);
                }
            }
            if !has_read || is_interrupted() {
                break;
            }
        }
        self.pipes.retain(|pipe| !pipe.is_closed);
    }

    /// Writes what is waiting, reading nothing: a turn whose poll saw no pipe and no stream.
    pub fn flush(&self) {
        for stream in Stream::ALL {
            sink::flush(stream);
        }
    }

    /// What the loop's poll waits for: the pipes whose stream has room (POLLIN), and the
    /// streams with lines waiting (POLLOUT). A pipe of a full stream is left out, not just
    /// given no events: poll would report its hang-up whatever was asked, and spin.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut fds: Vec<PollFd<'_>> = self
            .pipes
            .iter()
            .filter(|pipe| pipe.backlog.is_empty() && sink::has_room_for_output(pipe.stream))
            .map(|pipe| PollFd::new(pipe.fd.as_fd(), PollFlags::POLLIN))
            .collect();
        for stream in Stream::ALL {
            if let Some(fd) = sink::waiting_fd(stream) {
                // SAFETY: the sink's descriptors live as long as the process.
                let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
                fds.push(PollFd::new(borrowed, PollFlags::POLLOUT));
            }
        }
        fds
    }

    /// Lines read and not rendered yet, with room for them now: the loop must not sleep (no
    /// poll would say so: the bytes are out of the pipe already).
    pub fn has_backlog_with_room(&self) -> bool {
        self.pipes
            .iter()
            .any(|pipe| !pipe.backlog.is_empty() && sink::has_room_for_output(pipe.stream))
    }

    /// How soon the loop must come back to write lines waiting for room on a full disk;
    /// `None` (the usual case) costs the loop no clock read.
    pub fn stall_retry_ms(&self) -> Option<u64> {
        sink::is_stalled().then_some(sink::STALLED_RETRY_MS)
    }

    /// Nothing for the loop's poll: no pipe to read, no stream waiting for room.
    pub fn is_quiet(&self) -> bool {
        self.pipes.is_empty()
            && Stream::ALL
                .iter()
                .all(|stream| sink::waiting_fd(*stream).is_none())
    }

    /// Every pipe reached EOF and every line went out.
    pub fn is_drained(&self) -> bool {
        self.pipes.is_empty() && Stream::ALL.iter().all(|stream| !sink::is_pending(*stream))
    }

    /// The end: what could not be written in time is given up. Returns how many lines were
    /// waiting: in the streams' buffers, read and not rendered, and still in the pipes (read
    /// now to count them, up to `UNREAD_COUNT_BYTES` a pipe).
    pub fn abandon(&mut self) -> u64 {
        let open: Vec<&str> = self.pipes.iter().map(|pipe| pipe.worker.as_str()).collect();
        if !open.is_empty() {
            log::warn!(
                "worker output pipes still open at exit: {}",
                open.join(", ")
            );
        }
        let mut unread = 0u64;
        for pipe in &self.pipes {
            unread = unread.saturating_add(pipe.unwritten_lines(&mut self.scratch));
        }
        self.pipes.clear();
        Stream::ALL
            .iter()
            .map(|stream| sink::abandon(*stream))
            .fold(unread, u64::saturating_add)
    }
}

/// At the end, how much of a pipe is read to count the lines given up: what a pipe holds (1
/// MiB) and then some, but bounded against a writer that keeps going.
const UNREAD_COUNT_BYTES: usize = 16 * 1024 * 1024;

impl Pipe {
    /// The lines of this pipe that were never written: its carried line, its backlog, and
    /// what is still in the pipe.
    fn unwritten_lines(&self, scratch: &mut Vec<u8>) -> u64 {
        let newlines = |bytes: &[u8]| bytes.iter().filter(|b| **b == b'\n').count();
        let mut lines = newlines(&self.backlog);
        let mut ends_mid_line = self.splitter.carried_bytes() > 0 && self.backlog.is_empty()
            || self.backlog.last().is_some_and(|b| *b != b'\n');
        if scratch.len() < READ_BYTES {
            scratch.resize(READ_BYTES, 0);
        }
        let mut budget = UNREAD_COUNT_BYTES;
        while budget > 0 {
            let Read::Bytes(count) = read_into(&self.fd, scratch, &self.worker, self.stream) else {
                break;
            };
            let data = scratch.get(..count).unwrap_or_default();
            lines += newlines(data);
            ends_mid_line = data.last().is_some_and(|b| *b != b'\n');
            budget = budget.saturating_sub(count);
        }
        let lines = lines.saturating_add(usize::from(ends_mid_line));
        u64::try_from(lines).unwrap_or(u64::MAX)
    }
}

enum Read {
    Bytes(usize),
    /// Nothing there now (EAGAIN).
    Empty,
    /// Every writer is gone (or the pipe failed): the last line goes out.
    End,
}

fn read_into(fd: &OwnedFd, buffer: &mut [u8], worker: &str, stream: Stream) -> Read {
    loop {
        match nix::unistd::read(fd, buffer) {
            Ok(0) => return Read::End,
            Ok(count) => return Read::Bytes(count),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Read::Empty,
            Err(errno) => {
                log::warn!("reading the {} of worker {worker}: {errno}", stream.name());
                return Read::End;
            }
        }
    }
}
