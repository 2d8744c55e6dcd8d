//! Process descriptors (pidfd_open(2), Linux 5.3+): a handle on one process that a reused pid
//! cannot redirect, that can be signalled, and that becomes readable when the process exits,
//! whoever its parent is.

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// A descriptor for `pid`, or `None` (no such process, or no pidfd support).
pub fn open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// pidfd_send_signal(2): the signal reaches the very process the descriptor names.
pub fn send(pidfd: &OwnedFd, signal: i32) -> Result<(), Errno> {
    // SAFETY: a descriptor we own, no siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// The process has exited (a pidfd polls readable from then on).
pub fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(nix::poll::poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}
