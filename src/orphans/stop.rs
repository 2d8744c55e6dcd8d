//! Stopping what is left of dead generations: scan, signal, wait until nothing of them is left
//! or the grace is over, then SIGKILL and look again until a scan finds nothing. A tree that
//! keeps forking is caught by the repeated scans; `survivors` is what the final scan still sees.
//! When to escalate and when to give up is the stop engine's (`crate::stop`).
//!
//! A process is signalled through a pidfd opened after its start time was checked again, so a
//! pid reused meanwhile is never hit.

use super::plan::Selection;
use crate::pidfd;
use crate::procscan::{self, Lookup, ProcStat};
use crate::stop::{Event, Millis, Order, Stop};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// After the first SIGKILL, how long the kernel and the repeated scans are given.
const KILL_WAIT_MS: Millis = 5000;
/// How long a wait on the pidfds lasts before the next scan looks for newcomers.
const RESCAN_INTERVAL: Duration = Duration::from_millis(50);

/// One process being stopped.
struct Member {
    pid: i32,
    start_time: u64,
    /// `None` without pidfd support (kernels before 5.3): signalled by pid after a start-time
    /// check.
    pidfd: Option<OwnedFd>,
    signal: i32,
    generation: usize,
    worker: Option<String>,
}

/// A process confirmed gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gone {
    pub pid: i32,
    pub generation: usize,
    pub worker: Option<String>,
    /// The last signal it was sent.
    pub signal: i32,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub gone: Vec<Gone>,
    /// The final scan's selection: whatever it still names is a survivor. Its `protected` are
    /// those of every scan: one met in a tree early on may be reparented out of it by the end.
    pub last: Selection,
}

/// Stops every process `select` names in a scan of `proc_root`, scanning again until none is
/// left. `select` is called with each new scan.
///
/// `interrupt` (a signalfd of the shutdown signals, polled, never read) ends the grace early: a
/// SIGTERM during the start-up reap is acted on at once, what is left gets SIGKILL, and the
/// signal stays pending for the loop.
pub fn stop(
    proc_root: &Path,
    select: &mut dyn FnMut(&[ProcStat]) -> Selection,
    grace: Duration,
    interrupt: Option<BorrowedFd<'_>>,
) -> Outcome {
    let started = Instant::now();
    let now = || Millis::try_from(started.elapsed().as_millis()).unwrap_or(Millis::MAX);
    let grace_ms = Millis::try_from(grace.as_millis()).unwrap_or(Millis::MAX);
    // The stop engine decides when; this loop finds the targets and signals them.
    let (mut engine, _) = Stop::begin(libc::SIGTERM, grace_ms, Some(KILL_WAIT_MS), 0);
    let mut members: BTreeMap<i32, Member> = BTreeMap::new();
    let mut outcome = Outcome::default();
    let mut protected = BTreeMap::new();
    loop {
        // A process found now gets what the others got by now: SIGTERM, or SIGKILL after it.
        let selection = select(&procscan::scan(proc_root));
        enlist(&mut members, &selection, engine.current_signal(), proc_root);
        for (pid, target) in &selection.protected {
            protected.entry(*pid).or_insert_with(|| target.clone());
        }
        outcome.last = selection;
        collect_gone(&mut members, &mut outcome, proc_root);
        let is_empty = members.is_empty()
            && outcome
                .last
                .targets
                .iter()
                .all(|(pid, target)| !is_alive(proc_root, *pid, target.start_time));
        let event = if is_empty { Event::Empty } else { Event::Tick };
        if let Some(order) = engine.handle(event, now()) {
            carry_out(order, &mut members, proc_root);
        }
        let Some(deadline) = engine.next_deadline() else {
            break;
        };
        let deadline = started + Duration::from_millis(deadline);
        let interrupt = interrupt.filter(|_| !engine.is_killed());
        if wait_some(&members, deadline, proc_root, interrupt) {
            log::warn!("asked to stop during the reap: SIGKILL to what is left");
            if let Some(order) = engine.handle(Event::SkipGrace, now()) {
                carry_out(order, &mut members, proc_root);
            }
        }
    }
    outcome.last.protected = protected;
    // What the last scan named and is gone by now is no survivor.
    let last = &mut outcome.last;
    last.targets
        .retain(|pid, target| is_alive(proc_root, *pid, target.start_time));
    outcome
}

fn carry_out(order: Order, members: &mut BTreeMap<i32, Member>, proc_root: &Path) {
    if order != Order::Kill {
        return;
    }
    for member in members.values_mut() {
        member.signal = libc::SIGKILL;
        send(member, libc::SIGKILL, proc_root);
    }
}

/// Adds every target not yet a member, with a pidfd opened after a start-time check, and sends
/// it `signal` (SIGTERM is followed by SIGCONT, so a stopped process can act on it).
fn enlist(
    members: &mut BTreeMap<i32, Member>,
    selection: &Selection,
    signal: i32,
    proc_root: &Path,
) {
    for (pid, target) in &selection.targets {
        if members.contains_key(pid) {
            continue;
        }
        let pidfd = pidfd::open(*pid);
        // Checked after the pidfd exists: from here on the pidfd names this very process.
        if !is_alive(proc_root, *pid, target.start_time) {
            continue;
        }
        let mut member = Member {
            pid: *pid,
            start_time: target.start_time,
            pidfd,
            signal,
            generation: target.generation,
            worker: target.worker.clone(),
        };
        send(&mut member, signal, proc_root);
        if signal == libc::SIGTERM {
            send(&mut member, libc::SIGCONT, proc_root);
        }
        members.insert(*pid, member);
    }
}

fn is_alive(proc_root: &Path, pid: i32, start_time: u64) -> bool {
    matches!(procscan::read_stat(proc_root, pid),
        Lookup::Found(now) if now.start_time == start_time && !now.is_zombie())
}

fn send(member: &mut Member, signal: i32, proc_root: &Path) {
    let result = match &member.pidfd {
        Some(pidfd) => pidfd::send(pidfd, signal),
        None => signal_by_pid(member, signal, proc_root),
    };
    match result {
        // ESRCH: already gone, which is the point.
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => log::warn!(
            "cannot send {} to pid {} of worker {:?}: {errno}",
            crate::signals::name(signal),
            member.pid,
            member.worker
        ),
    }
}

/// The fallback without pidfds: the start time is checked again right before kill(2).
fn signal_by_pid(member: &Member, signal: i32, proc_root: &Path) -> Result<(), Errno> {
    if !is_alive(proc_root, member.pid, member.start_time) {
        return Err(Errno::ESRCH);
    }
    // SAFETY: plain kill(2) on a pid just checked to be the enlisted process.
    if unsafe { libc::kill(member.pid, signal) } == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

fn is_gone(pid: i32, member: &Member, proc_root: &Path) -> bool {
    match &member.pidfd {
        Some(pidfd) => pidfd::has_exited(pidfd),
        None => !is_alive(proc_root, pid, member.start_time),
    }
}

/// Sleeps on the pidfds until one member exits, the rescan interval passes or the deadline
/// comes, reaping the zombies that reparent to us (as PID 1 or subreaper) on every wake-up.
/// True when `interrupt` became readable.
fn wait_some(
    members: &BTreeMap<i32, Member>,
    deadline: Instant,
    proc_root: &Path,
    interrupt: Option<BorrowedFd<'_>>,
) -> bool {
    // Their statuses are nobody's business here: the processes are only being taken down.
    let _reaped = crate::zombies::reap_all();
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    let left = (deadline - now).min(RESCAN_INTERVAL);
    let mut fds: Vec<PollFd<'_>> = members
        .iter()
        .filter(|(pid, m)| !is_gone(**pid, m, proc_root))
        .filter_map(|(_, m)| m.pidfd.as_ref())
        .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
        .collect();
    if let Some(fd) = interrupt {
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
    let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
    let is_interrupted = match nix::poll::poll(&mut fds, timeout) {
        Ok(_) => {
            interrupt.is_some()
                && fds
                    .last()
                    .and_then(PollFd::revents)
                    .is_some_and(|r| r.contains(PollFlags::POLLIN))
        }
        Err(Errno::EINTR) => false,
        Err(errno) => {
            log::warn!("poll on pidfds failed: {errno}");
            std::thread::sleep(left);
            false
        }
    };
    let _reaped = crate::zombies::reap_all();
    is_interrupted
}

fn collect_gone(members: &mut BTreeMap<i32, Member>, outcome: &mut Outcome, proc_root: &Path) {
    let gone: Vec<i32> = members
        .iter()
        .filter(|(pid, m)| is_gone(**pid, m, proc_root))
        .map(|(pid, _)| *pid)
        .collect();
    for pid in gone {
        if let Some(member) = members.remove(&pid) {
            outcome.gone.push(Gone {
                pid,
                generation: member.generation,
                worker: member.worker,
                signal: member.signal,
            });
        }
    }
}
