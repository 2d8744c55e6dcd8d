//! dumb-init's job control, for a fleet-init that is not PID 1 and runs one command (started
//! from an interactive shell, where Ctrl-Z means "suspend this job"): SIGTSTP, SIGTTIN and
//! SIGTTOU are forwarded and then fleet-init stops itself, so the shell sees its job stopped;
//! a child stopped from its terminal stops fleet-init too; SIGCONT resumes the child, and
//! gives it the terminal back when `fg` gave it to fleet-init. As PID 1 none of this applies
//! (PID 1 cannot be stopped), and those signals are forwarded like any other.

use crate::cli::{Command, Options};
use crate::signals::{Rewrite, JOB_CONTROL};

#[derive(Clone, Copy, Debug, Default)]
pub struct JobControl {
    pub is_on: bool,
    /// fleet-init started in the foreground of its terminal (a shell's job): a child stopped
    /// by the terminal means the job is being suspended.
    is_terminal_job: bool,
    /// fleet-init stopped itself since the last reap: a child stop reported now is one it
    /// caused (the forwarded SIGSTOP), not a reason to stop again.
    has_stopped_self: bool,
}

impl JobControl {
    pub fn new(is_on: bool) -> JobControl {
        let is_terminal_job = crate::spawn::is_terminal_foreground();
        JobControl {
            is_on,
            is_terminal_job,
            has_stopped_self: false,
        }
    }

    /// The `-r` table, with dumb-init's setsid-mode defaults when signals go to the group:
    /// there the job-control signals reach the child's group as SIGSTOP, so that the whole job
    /// stops even when the child catches SIGTSTP. `-r` rewrites them like any other.
    pub fn rewrite(&self, options: &Options) -> Rewrite {
        let mut rewrite = Rewrite::new(&options.rewrite);
        let is_group =
            matches!(&options.command, Command::Single(single) if !single.is_single_child);
        if self.is_on && is_group {
            for signal in JOB_CONTROL {
                rewrite.add_default(signal, libc::SIGSTOP);
            }
        }
        rewrite
    }

    /// After forwarding `received`: stop fleet-init itself if it is a job-control signal.
    pub fn after_forwarding(&mut self, received: i32) {
        if self.is_on && JOB_CONTROL.contains(&received) {
            self.stop_self();
        }
    }

    /// The reaper saw these children stop (pid, signal): when the worker was stopped by its
    /// terminal (SIGTSTP, SIGTTIN, SIGTTOU: Ctrl-Z reached the child, which owns the terminal)
    /// and fleet-init is a shell's job and did not cause it, the job is being suspended: stop
    /// fleet-init too, so that the shell gets its prompt back. A plain SIGSTOP to the child
    /// (a debugger, an operator) stops only the child.
    pub fn after_reap(&mut self, stopped: &[(i32, i32)], worker_pids: &[i32]) {
        let has_caused = std::mem::take(&mut self.has_stopped_self);
        let is_suspended = stopped
            .iter()
            .any(|(pid, signal)| worker_pids.contains(pid) && JOB_CONTROL.contains(signal));
        if self.is_on && self.is_terminal_job && !has_caused && is_suspended {
            self.stop_self();
            // What it stopped for is reported already; the next reap owes nothing.
            self.has_stopped_self = false;
        }
    }

    fn stop_self(&mut self) {
        log::debug!(
            "suspending fleet-init (pid {}) with its job",
            std::process::id()
        );
        self.has_stopped_self = true;
        // SAFETY: plain syscall; SIGSTOP to ourselves returns once we are continued.
        unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
    }

    /// On SIGCONT, before it is forwarded: a shell's `fg` made fleet-init's group the
    /// terminal's foreground; the worker's group gets it back so it can read the terminal.
    /// After `bg` the shell keeps the terminal, and so does nobody here.
    pub fn on_continue(&self, worker_pgids: &[i32]) {
        if !self.is_on {
            return;
        }
        let Some(pgid) = worker_pgids.first() else {
            return;
        };
        // SAFETY: plain calls on fd 0; failures (no terminal) are the normal answer.
        unsafe {
            if libc::isatty(libc::STDIN_FILENO) == 1
                && libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp()
            {
                libc::tcsetpgrp(libc::STDIN_FILENO, *pgid);
            }
        }
    }
}
