//! A worker's state as people and `fleet-init ctl` see it, derived from its phase.

use super::worker::{After, Outcome, Phase, Worker};

/// The SPEC's worker states (section "Control").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not started yet: its first start is due (or it waits for the workers it is `after`).
    Waiting,
    /// Asked to start; not yet running.
    Starting,
    Running,
    /// Running and ready (a service whose readiness check passed, or that has none).
    Ready,
    /// Between runs: a restart is due after a backoff.
    Backoff,
    /// Its main process was asked to stop or is gone; what is left of it is being stopped.
    Stopping,
    /// Down on request; starts again only when asked to.
    Stopped,
    /// Finished cleanly and not started again.
    Completed,
    /// Down for good after a failure (max crashes, a failed run with no restart).
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Starting => "starting",
            State::Running => "running",
            State::Ready => "ready",
            State::Backoff => "backoff",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Completed => "completed",
            State::Failed => "failed",
        }
    }
}

impl Worker {
    /// Ready (a service) or completed (a oneshot that exited 0): what `after` waits for.
    pub fn is_ready(&self) -> bool {
        matches!(self.state(), State::Ready | State::Completed)
    }

    pub fn state(&self) -> State {
        match &self.phase {
            Phase::Waiting { .. } if self.run == 0 => State::Waiting,
            Phase::Waiting { .. } => State::Backoff,
            Phase::Starting => State::Starting,
            Phase::Running(run) if run.stop.is_some() => State::Stopping,
            // A oneshot runs until it completes; a service is ready once its readiness check
            // passed (without one, once exec succeeded).
            Phase::Running(_) if self.spec.oneshot || !self.order.is_ready => State::Running,
            Phase::Running(_) => State::Ready,
            Phase::Draining {
                then: After::RestartAt(_),
                ..
            } => State::Backoff,
            Phase::Draining { .. } => State::Stopping,
            Phase::Done if self.is_held_down => State::Stopped,
            Phase::Done => match self.outcome {
                Outcome::Clean => State::Completed,
                Outcome::Failed => State::Failed,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WorkerSpec;

    #[test]
    fn a_new_worker_waits_and_a_restarting_one_is_in_backoff() {
        let mut worker = Worker::new(WorkerSpec::new("w", vec!["true".into()], 1000));
        assert_eq!(worker.state(), State::Waiting);
        worker.run = 1;
        assert_eq!(worker.state(), State::Backoff);
        worker.phase = Phase::Done;
        assert_eq!(worker.state(), State::Completed);
        worker.outcome = Outcome::Failed;
        assert_eq!(worker.state(), State::Failed);
        worker.phase = Phase::Starting;
        assert_eq!(worker.state().as_str(), "starting");
    }
}
