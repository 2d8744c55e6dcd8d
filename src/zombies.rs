//! The one waiter: every zombie below fleet-init is collected here, with
//! `waitpid(-1, WNOHANG)` drained until nothing is left. Nothing else calls `waitpid`.

use crate::exit::Exit;
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

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
    let flags = WaitPidFlag::WNOHANG
        | WaitPidFlag::__WALL
        | WaitPidFlag::WUNTRACED
        | WaitPidFlag::WCONTINUED;
    loop {
        match waitpid(None, Some(flags)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                reaped.exits.push((pid.as_raw(), Exit::Code(code)))
            }
            Ok(WaitStatus::Signaled(pid, signal, _core_dumped)) => {
                reaped
                    .exits
                    .push((pid.as_raw(), Exit::Signal(signal as i32)));
            }
            Ok(WaitStatus::StillAlive) => {
                reaped.has_children = true;
                return reaped;
            }
            Ok(WaitStatus::Stopped(pid, signal)) => {
                reaped.stopped.push((pid.as_raw(), signal as i32));
            }
            Ok(WaitStatus::Continued(pid)) => reaped.continued.push(pid.as_raw()),
            // Ptrace events are not asked for; keep draining.
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return reaped,
            Err(errno) => {
                log::error!("waitpid(-1) failed: {errno}; will retry on the next wake-up");
                reaped.has_children = true;
                return reaped;
            }
        }
    }
}
