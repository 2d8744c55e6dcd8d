//! The one waiter: every zombie below fleet-init is collected here, with
//! `waitpid(-1, WNOHANG)` drained until nothing is left. Nothing else calls `waitpid`.

use crate::exit::Exit;
use nix::errno::Errno;

/// What one drain found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    pub exits: Vec<(i32, Exit)>,
    /// Children that stopped (WUNTRACED) and the signal that stopped them, for job control.
    pub stopped: Vec<(i32, i32)>,
    /// Children that were continued after a stop (WCONTINUED).
    pub continued: Vec<i32>,
    /// False when `waitpid` said ECHILD: no process at all is left below fleet-init.
    pub has_children: bool,
}

/// Reaps every child that has exited. Called on every wake-up, not only on SIGCHLD (tini does
/// the same): SIGCHLDs coalesce, so one signal may stand for many zombies.
pub fn reap_all() -> Reaped {
    let mut reaped = Reaped::default();
    // __WALL: also children cloned with another exit signal than SIGCHLD. WUNTRACED and
    // WCONTINUED: a stopped child is reported once per stop and once when continued, for job
    // control and for the shutdown's SIGCONT.
    let flags = libc::WNOHANG | libc::__WALL | libc::WUNTRACED | libc::WCONTINUED;
    loop {
        let mut status: libc::c_int = 0;
        // The raw call, not nix's `waitpid`: nix turns a death by a signal its `Signal` type
        // lacks (SIGRTMIN+N, 32, 33) into EINVAL after the kernel has reaped the child, and
        // the exit would be lost for good.
        // SAFETY: `status` is a valid place for the kernel to write the status into.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        match pid {
            0 => {
                reaped.has_children = true;
                return reaped;
            }
            -1 => match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => return reaped,
                errno => {
                    log::error!("waitpid(-1) failed: {errno}; will retry on the next wake-up");
                    reaped.has_children = true;
                    return reaped;
                }
            },
            pid => match decode(status) {
                Status::Ended(exit) => reaped.exits.push((pid, exit)),
                Status::Stopped(signal) => reaped.stopped.push((pid, signal)),
                Status::Continued => reaped.continued.push(pid),
                // Ptrace events are not asked for; keep draining.
                Status::Other => continue,
            },
        }
    }
}

/// What one status of `waitpid` says.
#[derive(Debug, PartialEq, Eq)]
enum Status {
    Ended(Exit),
    Stopped(i32),
    Continued,
    Other,
}

/// Any signal number the kernel reports is kept as it is: real-time ones included.
fn decode(status: libc::c_int) -> Status {
    if libc::WIFEXITED(status) {
        Status::Ended(Exit::Code(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Status::Ended(Exit::Signal(libc::WTERMSIG(status)))
    } else if libc::WIFSTOPPED(status) && status >> 16 == 0 {
        Status::Stopped(libc::WSTOPSIG(status))
    } else if libc::WIFCONTINUED(status) {
        Status::Continued
    } else {
        Status::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_a_status_can_name_is_decoded_real_time_ones_too() {
        // The encodings of <sys/wait.h>: exit code in bits 8-15; the signal in the low 7 bits
        // (0x80: core dumped); 0x7f and the signal above it for a stop; 0xffff continued.
        assert_eq!(decode(3 << 8), Status::Ended(Exit::Code(3)));
        assert_eq!(decode(0), Status::Ended(Exit::Code(0)));
        for signal in [9, 15, 32, 33, 34, 37, 64] {
            assert_eq!(
                decode(signal),
                Status::Ended(Exit::Signal(signal)),
                "{signal}"
            );
            assert_eq!(decode(signal | 0x80), Status::Ended(Exit::Signal(signal)));
        }
        assert_eq!(
            decode((libc::SIGTSTP << 8) | 0x7f),
            Status::Stopped(libc::SIGTSTP)
        );
        assert_eq!(decode(0xffff), Status::Continued);
        // A ptrace event stop (the event above the stop's bits) is none of ours.
        let event = (libc::PTRACE_EVENT_EXEC << 16) | (libc::SIGTRAP << 8) | 0x7f;
        assert_eq!(decode(event), Status::Other);
    }
}
