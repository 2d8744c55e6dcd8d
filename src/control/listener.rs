//! Creating the control socket safely: in the state dir reached through its descriptor, with
//! whatever was at `control.sock` before looked at first (a dead fleet-init's socket replaced,
//! a live one's left alone, a planted link removed, never followed).

use super::SOCKET_NAME;
use crate::handoff::statedir::{Refusal, StateDir};
use nix::errno::Errno;
use nix::fcntl::{fcntl, AtFlags, FcntlArg, OFlag};
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::sys::stat;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// Connections the kernel holds for the loop to accept.
const BACKLOG: i32 = 128;

pub(super) struct Listener {
    pub(super) fd: OwnedFd,
    pub(super) dir: StateDir,
    /// (device, inode) of the socket file this listener bound: only that one is removed.
    pub(super) file_id: (u64, u64),
    /// A connection raises SIGIO for fleet-init (O_ASYNC): the idle loop need not poll it.
    pub(super) is_signal_driven: bool,
}

/// (device, inode) of the socket file, if `control.sock` is a socket.
pub(super) fn file_id(dir: &StateDir) -> Option<(u64, u64)> {
    let stat = stat::fstatat(dir.as_fd(), SOCKET_NAME, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    (stat.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some((stat.st_dev, stat.st_ino))
}

/// The path that names `control.sock` through the dir's descriptor (no path component can be
/// swapped under it), or the plain path where /proc/self/fd is not there.
fn socket_addresses(dir: &StateDir) -> Vec<String> {
    let through_fd = format!("/proc/self/fd/{}/{SOCKET_NAME}", dir.as_fd().as_raw_fd());
    let plain = dir.display_path(SOCKET_NAME);
    vec![through_fd, plain]
}

impl Listener {
    pub(super) fn open(path: &Path) -> Result<Listener, String> {
        let dir = StateDir::open(path, true).map_err(|refusal| match refusal {
            Refusal::Refused(reason) => format!("state dir refused ({reason})"),
            Refusal::Failed(errno) => format!("state dir unusable ({})", errno.desc()),
        })?;
        clear_stale(&dir)?;
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|errno| format!("socket: {}", errno.desc()))?;
        bind_private(&fd, &dir)?;
        let file_id = file_id(&dir).ok_or("the socket file vanished after bind")?;
        let backlog = Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN);
        if let Err(errno) = socket::listen(&fd, backlog) {
            if let Err(removed) = dir.remove(SOCKET_NAME) {
                log::warn!("cannot remove {}: {removed}", dir.display_path(SOCKET_NAME));
            }
            return Err(format!("listen: {}", errno.desc()));
        }
        let is_signal_driven = signal_on_connection(&fd);
        Ok(Listener {
            fd,
            dir,
            file_id,
            is_signal_driven,
        })
    }
}

/// Asks the kernel for a SIGIO to fleet-init when a connection arrives (F_SETOWN, then
/// O_ASYNC), so that the loop can sleep in sigtimedwait with nothing else to watch. SIGIO is
/// blocked and read like every signal; the kernel's (si_code SI_KERNEL) is a wake-up, one sent
/// with kill(2) is forwarded as before. False if the kernel refuses, or if SIGIO is not blocked
/// (no signal inbox in this process: its default action would end it): the listener is polled.
fn signal_on_connection(fd: &OwnedFd) -> bool {
    // SAFETY: sigset_t is plain data; pthread_sigmask only reads the current mask into it.
    let is_sigio_blocked = unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) == 0
            && libc::sigismember(&mask, libc::SIGIO) == 1
    };
    if !is_sigio_blocked {
        return false;
    }
    let pid = nix::unistd::getpid().as_raw();
    // SAFETY: fcntl on a descriptor we own; failure is an errno, not UB.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETOWN, pid) } < 0 {
        log::debug!("F_SETOWN on the control socket: {}", Errno::last());
        return false;
    }
    let flags = match fcntl(fd, FcntlArg::F_GETFL) {
        Ok(flags) => OFlag::from_bits_truncate(flags),
        Err(errno) => {
            log::debug!("F_GETFL on the control socket: {errno}");
            return false;
        }
    };
    match fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_ASYNC)) {
        Ok(_) => true,
        Err(errno) => {
            log::debug!("O_ASYNC on the control socket: {errno}");
            false
        }
    }
}

/// Binds, then makes the socket 0600. Until the chmod it has the umask's mode, but it sits in
/// the 0700 state dir, which nobody else can enter. (Not a umask change around the bind: the
/// umask is the whole process's, and the unit tests run threads that create files meanwhile.)
fn bind_private(fd: &OwnedFd, dir: &StateDir) -> Result<(), String> {
    let mut last = Errno::ENOENT;
    for address in socket_addresses(dir) {
        let Ok(address) = UnixAddr::new(address.as_str()) else {
            last = Errno::ENAMETOOLONG;
            continue;
        };
        match socket::bind(fd.as_raw_fd(), &address) {
            Ok(()) => {
                return stat::fchmodat(
                    dir.as_fd(),
                    SOCKET_NAME,
                    stat::Mode::from_bits_truncate(0o600),
                    stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(|errno| format!("chmod 0600: {}", errno.desc()));
            }
            // No /proc (or a foreign one): the plain path next.
            Err(errno @ (Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG)) => last = errno,
            Err(errno) => return Err(format!("bind: {}", errno.desc())),
        }
    }
    Err(format!("bind: {}", last.desc()))
}

/// What is at `control.sock` before binding: nothing; a socket nobody listens on (a dead
/// fleet-init's: removed); a live one's (refused: left alone); a symlink (removed, never
/// followed); anything else (refused: left for a human).
fn clear_stale(dir: &StateDir) -> Result<(), String> {
    let stat = match stat::fstatat(dir.as_fd(), SOCKET_NAME, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => return Err(format!("cannot look at it: {}", errno.desc())),
    };
    let path = dir.display_path(SOCKET_NAME);
    match stat.st_mode & libc::S_IFMT {
        libc::S_IFLNK => {
            log::warn!("{path} is a symlink: removed, not followed");
        }
        libc::S_IFSOCK => match probe(dir) {
            Probe::Live => return Err("another fleet-init is listening on it".into()),
            Probe::Stale => log::info!("{path}: stale socket of a dead fleet-init, replaced"),
            Probe::Unknown(errno) => {
                return Err(format!("cannot tell whether it is live: {}", errno.desc()))
            }
        },
        _ => return Err("it is not a socket: left alone".into()),
    }
    dir.remove(SOCKET_NAME)
        .map_err(|errno| format!("cannot remove it: {}", errno.desc()))
}

enum Probe {
    Live,
    Stale,
    Unknown(Errno),
}

/// A non-blocking connect: refused means nobody listens.
fn probe(dir: &StateDir) -> Probe {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = match socket::socket(AddressFamily::Unix, SockType::Stream, flags, None) {
        Ok(fd) => fd,
        Err(errno) => return Probe::Unknown(errno),
    };
    let mut last = Errno::ENOENT;
    for address in socket_addresses(dir) {
        let Ok(address) = UnixAddr::new(address.as_str()) else {
            continue;
        };
        match socket::connect(fd.as_raw_fd(), &address) {
            // EAGAIN: its backlog is full, so somebody listens.
            Ok(()) | Err(Errno::EAGAIN) => return Probe::Live,
            Err(Errno::ECONNREFUSED) => return Probe::Stale,
            Err(errno @ (Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG)) => last = errno,
            Err(errno) => return Probe::Unknown(errno),
        }
    }
    // Gone meanwhile: nothing to replace.
    if last == Errno::ENOENT {
        Probe::Stale
    } else {
        Probe::Unknown(last)
    }
}
