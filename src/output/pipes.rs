//! The pipes of one `jsonl` worker run: made before the fork, the write ends become the child's
//! stdout and stderr, the read ends stay with fleet-init (close-on-exec, non-blocking,
//! enlarged so that a burst does not stall the worker at once).

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use std::os::fd::{AsRawFd, OwnedFd};

/// What F_SETPIPE_SZ asks for: 1 MiB, the default `/proc/sys/fs/pipe-max-size`. Best effort:
/// an unprivileged process over its pipe quota keeps the 64 KiB default.
const PIPE_BYTES: i32 = 1 << 20;

/// Both pipes of a run, before the fork.
#[derive(Debug)]
pub struct WorkerPipes {
    pub stdout_read: OwnedFd,
    pub stdout_write: OwnedFd,
    pub stderr_read: OwnedFd,
    pub stderr_write: OwnedFd,
}

/// The read ends fleet-init keeps after the fork.
#[derive(Debug)]
pub struct ReadEnds {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl WorkerPipes {
    /// Two pipes, every end close-on-exec (the child's dup2 onto 1 and 2 clears the flag on
    /// those copies only), the read ends non-blocking.
    pub fn create() -> Result<WorkerPipes, Errno> {
        let (stdout_read, stdout_write) = one_pipe()?;
        let (stderr_read, stderr_write) = one_pipe()?;
        Ok(WorkerPipes {
            stdout_read,
            stdout_write: above_stdio(stdout_write)?,
            stderr_read,
            stderr_write: above_stdio(stderr_write)?,
        })
    }

    /// After the fork: fleet-init drops its write ends (so that EOF comes when the worker's
    /// processes are gone) and keeps the read ends.
    pub fn into_read_ends(self) -> ReadEnds {
        ReadEnds {
            stdout: self.stdout_read,
            stderr: self.stderr_read,
        }
    }

    /// The raw write ends for the child's dup2 (stdout, stderr).
    pub fn child_fds(&self) -> (i32, i32) {
        (self.stdout_write.as_raw_fd(), self.stderr_write.as_raw_fd())
    }
}

fn one_pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // The write end blocks: it is the worker's stdout, and a worker blocked on a full pipe is
    // how back-pressure reaches it (pipe2 set O_NONBLOCK on both ends).
    fcntl(&write, FcntlArg::F_SETFL(OFlag::empty()))?;
    // SAFETY: fcntl on a descriptor we own; failure is an errno, not UB.
    let resized = unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    if resized < 0 {
        log::debug!(
            "F_SETPIPE_SZ {PIPE_BYTES}: {}; keeping the default size",
            Errno::last()
        );
    }
    Ok((read, write))
}

/// A write end numbered 0, 1 or 2 (fleet-init started with a standard stream closed) would be
/// clobbered by the child's own dup2s: such an end is moved above 2.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, Errno> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let raw = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// Whether `fd` is close-on-exec (tests and debugging).
pub fn is_cloexec(fd: &OwnedFd) -> bool {
    fcntl(fd, FcntlArg::F_GETFD)
        .map(|flags| FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ends_are_cloexec_and_non_blocking_write_ends_block() {
        let pipes = WorkerPipes::create().unwrap();
        for fd in [&pipes.stdout_read, &pipes.stderr_read] {
            assert!(is_cloexec(fd));
            let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
            assert!(flags.contains(OFlag::O_NONBLOCK));
        }
        for fd in [&pipes.stdout_write, &pipes.stderr_write] {
            assert!(is_cloexec(fd));
            assert!(fd.as_raw_fd() > 2);
            let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
            assert!(!flags.contains(OFlag::O_NONBLOCK));
        }
    }
}
