//! The control socket `<state_dir>/control.sock`, served from the one loop: a non-blocking
//! listener and a table of clients, each with a bounded request, a deadline and a reply being
//! written. One JSON request line, one JSON reply line (`protocol`), then the connection is
//! closed. A peer whose uid is neither 0 nor fleet-init's is refused (SO_PEERCRED). A client
//! that stalls costs a slot until its deadline, never a wait: PID 1 never blocks on it.
//!
//! The socket is created in the state dir reached through its descriptor (bound at
//! `/proc/self/fd/N/control.sock`), never through a planted link; a stale socket of a dead
//! fleet-init is replaced, a live one's is left alone (fleet-init then runs without one).

pub mod client;
mod listener;
pub mod protocol;

use crate::events::{self, Event};
use crate::supervisor::Millis;
use listener::{file_id, Listener};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};
use nix::sys::socket::{self, MsgFlags, SockFlag};
use protocol::{parse_request, refusal, Request, MAX_REQUEST_BYTES};
use serde_json::Value;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

pub const SOCKET_NAME: &str = "control.sock";
/// Clients served at once; one more is told so and closed at once.
pub const MAX_CLIENTS: usize = 64;
/// A client has this long from its connect to send its request and read the reply.
pub const CLIENT_DEADLINE_MS: Millis = 5000;
/// accept(2) failed for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the
/// listener rests this long before the next try. The connection stays in the backlog and
/// keeps the listener readable, so polling it meanwhile would spin.
const ACCEPT_PAUSE_MS: Millis = 250;
/// A request is one short JSON line: read in small pieces, on a small stack frame (this read
/// is inlined into the loop, whose frame stays resident while PID 1 sleeps).
const READ_CHUNK: usize = 1024;

/// A complete request, for the supervisor.
#[derive(Debug)]
pub struct Received {
    pub client: u64,
    pub peer_uid: u32,
    pub request: Request,
}

#[derive(Debug, PartialEq, Eq)]
enum Stage {
    Reading,
    /// Handed to the supervisor; its reply comes in this same turn.
    Answering,
    Writing,
}

struct Client {
    id: u64,
    fd: OwnedFd,
    peer_uid: u32,
    request: Vec<u8>,
    reply: Vec<u8>,
    written: usize,
    deadline: Millis,
    stage: Stage,
}

#[derive(Default)]
pub struct ControlServer {
    listener: Option<Listener>,
    /// The last `accept_all` stopped before EAGAIN (its bound, EMFILE): connections may be
    /// waiting, and no new SIGIO will say so.
    is_backlog_left: bool,
    /// Accepting rests until then after accept(2) ran out of descriptors or memory.
    accept_paused_until: Option<Millis>,
    clients: Vec<Client>,
    next_id: u64,
    euid: u32,
}

impl ControlServer {
    /// No socket (the state dir is unusable, or another fleet-init holds it).
    pub fn disabled() -> ControlServer {
        ControlServer::default()
    }

    /// Opens the listener in `state_dir`; without it, the event that says why (emit once).
    pub fn open(state_dir: &Path) -> (ControlServer, Option<Event>) {
        let mut server = ControlServer {
            euid: nix::unistd::geteuid().as_raw(),
            ..ControlServer::default()
        };
        match Listener::open(state_dir) {
            Ok(listener) => {
                server.listener = Some(listener);
                (server, None)
            }
            Err(error) => {
                let event = Event::error("control_unavailable")
                    .with("path", state_dir.join(SOCKET_NAME).display().to_string())
                    .with(
                        "error",
                        format!("{error}: running without a control socket"),
                    );
                (server, Some(event))
            }
        }
    }

    pub fn is_listening(&self) -> bool {
        self.listener.is_some()
    }

    /// Nothing to poll for: no client, no connection left in the backlog, and no listener or
    /// one whose connections raise SIGIO.
    pub fn is_signal_driven(&self) -> bool {
        self.clients.is_empty()
            && !self.is_backlog_left
            && self
                .listener
                .as_ref()
                .is_none_or(|listener| listener.is_signal_driven)
    }

    /// What the loop's poll waits for: new connections, requests to read, replies to write.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let listener = self
            .listener
            .iter()
            .filter(|_| self.accept_paused_until.is_none())
            .map(|l| PollFd::new(l.fd.as_fd(), PollFlags::POLLIN));
        let clients = self.clients.iter().filter_map(|c| {
            let flags = match c.stage {
                Stage::Reading => PollFlags::POLLIN,
                Stage::Writing => PollFlags::POLLOUT,
                Stage::Answering => return None,
            };
            Some(PollFd::new(c.fd.as_fd(), flags))
        });
        listener.chain(clients).collect()
    }

    /// The earliest client deadline, or the end of a pause in accepting; `None` without
    /// either (idle costs no wake-up).
    pub fn next_deadline(&self) -> Option<Millis> {
        self.clients
            .iter()
            .map(|c| c.deadline)
            .chain(self.accept_paused_until)
            .min()
    }

    /// Accepts what is waiting, reads what clients sent, writes pending replies, drops expired
    /// clients; returns the complete requests for the supervisor. Never blocks.
    pub fn serve(&mut self, now: Millis) -> Vec<Received> {
        self.clients.retain(|c| {
            let is_live = c.deadline > now;
            if !is_live {
                log::info!("control client {} (uid {}) timed out", c.id, c.peer_uid);
            }
            is_live
        });
        self.accept_all(now);
        let mut received = Vec::new();
        let mut index = 0;
        while let Some(client) = self.clients.get_mut(index) {
            let keep = match client.stage {
                Stage::Reading => match read_request(client) {
                    Reading::More => true,
                    Reading::Closed => false,
                    Reading::Line(line) => match parse_request(&line) {
                        Ok(request) => {
                            client.stage = Stage::Answering;
                            received.push(Received {
                                client: client.id,
                                peer_uid: client.peer_uid,
                                request,
                            });
                            true
                        }
                        Err(error) => {
                            let verb = protocol::verb_of(&line);
                            refuse(client, verb.as_deref(), &error)
                        }
                    },
                    Reading::TooLarge => refuse(
                        client,
                        None,
                        &format!("request larger than {MAX_REQUEST_BYTES} bytes"),
                    ),
                },
                Stage::Writing => write_reply(client),
                Stage::Answering => true,
            };
            if keep {
                index += 1;
            } else {
                self.clients.remove(index);
            }
        }
        received
    }

    /// The supervisor's reply to `client`: written now as far as the socket takes it, the rest
    /// when it is writable.
    pub fn reply(&mut self, client: u64, reply: &Value) {
        let Some(index) = self.clients.iter().position(|c| c.id == client) else {
            log::debug!("control client {client} gone before its reply");
            return;
        };
        let keep = self.clients.get_mut(index).is_some_and(|c| {
            c.reply = protocol::encode_reply(reply);
            c.written = 0;
            c.stage = Stage::Writing;
            write_reply(c)
        });
        if !keep {
            self.clients.remove(index);
        }
    }

    /// At exit: the socket file goes, if it is still the one this server bound.
    pub fn close(&mut self) {
        self.clients.clear();
        let Some(listener) = self.listener.take() else {
            return;
        };
        if file_id(&listener.dir) == Some(listener.file_id) {
            if let Err(errno) = listener.dir.remove(SOCKET_NAME) {
                log::warn!(
                    "cannot remove {}: {errno}",
                    listener.dir.display_path(SOCKET_NAME)
                );
            }
        }
    }

    fn accept_all(&mut self, now: Millis) {
        let Some(listener) = &self.listener else {
            return;
        };
        let was_paused = match self.accept_paused_until {
            Some(until) if now < until => return,
            Some(_) => true,
            None => false,
        };
        self.accept_paused_until = None;
        // Bounded per turn: a flood of connections cannot keep the loop from signals.
        self.is_backlog_left = true;
        for _ in 0..MAX_CLIENTS {
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            let fd = match socket::accept4(listener.fd.as_raw_fd(), flags) {
                // SAFETY: accept4 returned a new descriptor that nothing else owns.
                Ok(raw) => unsafe { OwnedFd::from_raw_fd(raw) },
                Err(Errno::EAGAIN) => {
                    self.is_backlog_left = false;
                    return;
                }
                Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
                Err(errno) => {
                    // EMFILE and the like: the connection waits in the backlog, and accepting
                    // rests a while (said once for the whole stretch).
                    if was_paused {
                        log::debug!("control socket: accept failed again: {errno}");
                    } else {
                        log::warn!(
                            "control socket: accept failed: {errno}; trying again every \
                             {ACCEPT_PAUSE_MS} ms"
                        );
                    }
                    self.accept_paused_until = Some(now.saturating_add(ACCEPT_PAUSE_MS));
                    return;
                }
            };
            let peer_uid = match socket::getsockopt(&fd, socket::sockopt::PeerCredentials) {
                Ok(credentials) => credentials.uid(),
                Err(errno) => {
                    log::warn!("control socket: no peer credentials: {errno}");
                    continue;
                }
            };
            self.next_id = self.next_id.wrapping_add(1);
            let mut client = Client {
                id: self.next_id,
                fd,
                peer_uid,
                request: Vec::new(),
                reply: Vec::new(),
                written: 0,
                deadline: now.saturating_add(CLIENT_DEADLINE_MS),
                stage: Stage::Reading,
            };
            if peer_uid != 0 && peer_uid != self.euid {
                let error = format!(
                    "permission denied: uid {peer_uid} is neither root nor fleet-init's uid {}",
                    self.euid
                );
                if refuse(&mut client, None, &error) {
                    self.clients.push(client);
                }
                continue;
            }
            if self.clients.len() >= MAX_CLIENTS {
                // Told at once (a short line always fits an empty socket buffer), then closed.
                let error = format!("busy: {MAX_CLIENTS} clients already; try again");
                let line = protocol::encode_reply(&refusal(&error));
                send_quietly(&client.fd, &line);
                continue;
            }
            self.clients.push(client);
        }
    }
}

/// A request refused before it reached the supervisor: a `control` event, an error reply.
/// False when the client is already gone.
fn refuse(client: &mut Client, verb: Option<&str>, error: &str) -> bool {
    events::emit(
        &Event::warn("control")
            .with("verb", verb.map(Value::from).unwrap_or(Value::Null))
            .with("peer_uid", client.peer_uid)
            .with("ok", false)
            .with("error", error),
    );
    client.reply = protocol::encode_reply(&refusal(error));
    client.written = 0;
    client.stage = Stage::Writing;
    write_reply(client)
}

enum Reading {
    More,
    Line(Vec<u8>),
    TooLarge,
    /// Gone, or closed without sending anything (a probe).
    Closed,
}

/// Reads what is there; a line is complete at its newline (or at the end of the stream).
fn read_request(client: &mut Client) -> Reading {
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        if let Some(end) = client.request.iter().position(|b| *b == b'\n') {
            client.request.truncate(end);
            return Reading::Line(std::mem::take(&mut client.request));
        }
        if client.request.len() > MAX_REQUEST_BYTES {
            return Reading::TooLarge;
        }
        match socket::recv(client.fd.as_raw_fd(), &mut chunk, MsgFlags::empty()) {
            Ok(0) if client.request.is_empty() => return Reading::Closed,
            Ok(0) => return Reading::Line(std::mem::take(&mut client.request)),
            Ok(n) => client
                .request
                .extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Reading::More,
            Err(errno) => {
                log::debug!("control client {}: read failed: {errno}", client.id);
                return Reading::Closed;
            }
        }
    }
}

/// Writes what the socket takes. False once the reply is all out (the connection is then
/// closed) or the client is gone.
fn write_reply(client: &mut Client) -> bool {
    while let Some(rest) = client.reply.get(client.written..).filter(|r| !r.is_empty()) {
        // MSG_NOSIGNAL: a client gone meanwhile is EPIPE, not a SIGPIPE for PID 1.
        match socket::send(client.fd.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => client.written = client.written.saturating_add(n),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return true,
            Err(errno) => {
                log::debug!("control client {}: write failed: {errno}", client.id);
                return false;
            }
        }
    }
    false
}

fn send_quietly(fd: &OwnedFd, bytes: &[u8]) {
    if let Err(errno) = socket::send(fd.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
        log::debug!("control socket: busy reply not sent: {errno}");
    }
}

#[cfg(test)]
mod tests;
