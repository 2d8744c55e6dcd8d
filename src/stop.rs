//! The one stop engine: how a set of processes is taken down, whoever takes them down (a worker's
//! stop and the drain of its leftovers, the shutdown, the reap of a dead generation). Ask with a
//! signal; when the grace ends (or at once, when told to skip it) SIGKILL; done the moment
//! nothing is left; given up on a while after the SIGKILL if something still looks alive (a
//! zombie whose parent is not ours holds a group).
//!
//! Pure: the caller says what happened (`Event`) and when, and carries out the `Order`s. What
//! the targets are and how they are signalled stays with the caller; when and with what is
//! decided here, once, as a state × event table in the style of s6-supervise.

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The stop signal went out; SIGKILL at `kill_at`.
    Asking,
    /// SIGKILL went out; given up on at `give_up_at` if not empty by then (never: `None`).
    Killing { give_up_at: Option<Millis> },
    /// Nothing is left (`is_complete`), or it was given up on.
    Over { is_complete: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Time passed: act on a deadline that is due.
    Tick,
    /// Nothing of the targets is left.
    Empty,
    /// Skip the rest of the grace (a second SIGTERM, the shutdown's deadline).
    SkipGrace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Send this signal to the targets, then SIGCONT unless it is SIGKILL or SIGCONT itself, so
    /// that a stopped process acts on it (as systemd does).
    Signal(i32),
    /// SIGKILL to the targets.
    Kill,
    /// Over with processes possibly left: move on without them.
    GiveUp,
    /// Over: every target is gone.
    Finished,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stop {
    /// The signal that asks the targets to stop.
    pub signal: i32,
    pub kill_at: Millis,
    /// How long after the SIGKILL something that still looks alive is waited for; `None`: for
    /// as long as it takes (a worker's own main process, whose exit is certain to come).
    pub settle_ms: Option<Millis>,
    pub state: State,
}

impl Stop {
    /// A stop that starts now: the first order is the signal (or SIGKILL at once for a grace
    /// of 0 or a stop signal that is SIGKILL).
    pub fn begin(
        signal: i32,
        grace_ms: Millis,
        settle_ms: Option<Millis>,
        now: Millis,
    ) -> (Stop, Order) {
        let mut stop = Stop {
            signal,
            kill_at: now.saturating_add(grace_ms),
            settle_ms,
            state: State::Asking,
        };
        if signal == libc::SIGKILL {
            stop.state = stop.killed_at(now);
            return (stop, Order::Kill);
        }
        (stop, Order::Signal(signal))
    }

    /// A stop whose signal went out earlier, by other means (the targets were already asked):
    /// only its deadlines run from here.
    pub fn asked(signal: i32, kill_at: Millis, settle_ms: Option<Millis>) -> Stop {
        Stop {
            signal,
            kill_at,
            settle_ms,
            state: State::Asking,
        }
    }

    /// The same stop with a settle time from `now` on: a SIGKILL that went out with none (a
    /// worker's main process, whose exit was certain) is given up on `settle_ms` after `now`
    /// when what is left is no longer certain to go (the group, the escapees).
    pub fn settling(self, settle_ms: Millis, now: Millis) -> Stop {
        let state = match self.state {
            State::Killing { give_up_at: None } => State::Killing {
                give_up_at: Some(now.saturating_add(settle_ms)),
            },
            state => state,
        };
        Stop {
            settle_ms: Some(settle_ms),
            state,
            ..self
        }
    }

    /// The table. Every (state, event) pair is here; a pair that changes nothing says so.
    pub fn handle(&mut self, event: Event, now: Millis) -> Option<Order> {
        let (next, order) = match (self.state, event) {
            (State::Over { .. }, _) => (self.state, None),
            (_, Event::Empty) => (State::Over { is_complete: true }, Some(Order::Finished)),
            (State::Asking, Event::Tick) if now < self.kill_at => (self.state, None),
            (State::Asking, Event::Tick | Event::SkipGrace) => {
                (self.killed_at(now), Some(Order::Kill))
            }
            (
                State::Killing {
                    give_up_at: Some(at),
                },
                Event::Tick,
            ) if now >= at => (State::Over { is_complete: false }, Some(Order::GiveUp)),
            (State::Killing { .. }, Event::Tick | Event::SkipGrace) => (self.state, None),
        };
        self.state = next;
        order
    }

    fn killed_at(&self, now: Millis) -> State {
        State::Killing {
            give_up_at: self.settle_ms.map(|settle| now.saturating_add(settle)),
        }
    }

    /// The signal a target found only now gets: the stop signal while asking, SIGKILL after.
    pub fn current_signal(&self) -> i32 {
        match self.state {
            State::Asking => self.signal,
            State::Killing { .. } | State::Over { .. } => libc::SIGKILL,
        }
    }

    pub fn is_killed(&self) -> bool {
        !matches!(self.state, State::Asking)
    }

    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Over { .. })
    }

    /// When the loop must wake up for this stop; `None` once it is over.
    pub fn next_deadline(&self) -> Option<Millis> {
        match self.state {
            State::Asking => Some(self.kill_at),
            State::Killing { give_up_at } => give_up_at,
            State::Over { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name, events at times, the orders they give, and the state after.
    type Case<'a> = (&'a str, &'a [(Event, Millis)], &'a [Option<Order>], State);

    #[test]
    fn the_table() {
        use Event::*;
        let cases: &[Case] = &[
            (
                "empty within the grace",
                &[(Tick, 500), (Empty, 600)],
                &[None, Some(Order::Finished)],
                State::Over { is_complete: true },
            ),
            (
                "the grace ends",
                &[(Tick, 999), (Tick, 1000), (Tick, 1500), (Empty, 1600)],
                &[None, Some(Order::Kill), None, Some(Order::Finished)],
                State::Over { is_complete: true },
            ),
            (
                "still there after the kill",
                &[(Tick, 1000), (Tick, 1999), (Tick, 2000)],
                &[Some(Order::Kill), None, Some(Order::GiveUp)],
                State::Over { is_complete: false },
            ),
            (
                "a second SIGTERM skips the grace, once",
                &[(SkipGrace, 10), (SkipGrace, 20), (Empty, 30)],
                &[Some(Order::Kill), None, Some(Order::Finished)],
                State::Over { is_complete: true },
            ),
            (
                "nothing after it is over",
                &[(Empty, 10), (Tick, 5000), (SkipGrace, 5000), (Empty, 5001)],
                &[Some(Order::Finished), None, None, None],
                State::Over { is_complete: true },
            ),
        ];
        for (name, events, orders, end) in cases {
            let (mut stop, first) = Stop::begin(libc::SIGTERM, 1000, Some(1000), 0);
            assert_eq!(first, Order::Signal(libc::SIGTERM), "{name}");
            let got: Vec<Option<Order>> = events
                .iter()
                .map(|(event, at)| stop.handle(*event, *at))
                .collect();
            assert_eq!(&got, orders, "{name}");
            assert_eq!(stop.state, *end, "{name}");
        }
    }

    #[test]
    fn deadlines_and_the_signal_for_latecomers_follow_the_state() {
        let (mut stop, _) = Stop::begin(libc::SIGQUIT, 300, Some(1000), 100);
        assert_eq!(stop.next_deadline(), Some(400));
        assert_eq!(stop.current_signal(), libc::SIGQUIT);
        assert_eq!(stop.handle(Event::Tick, 400), Some(Order::Kill));
        assert_eq!(stop.next_deadline(), Some(1400));
        assert_eq!(stop.current_signal(), libc::SIGKILL);
        assert!(stop.is_killed());
        stop.handle(Event::Empty, 450);
        assert_eq!(stop.next_deadline(), None, "no wake-up once over");
    }

    #[test]
    fn a_kill_that_had_no_settle_time_gets_one_from_when_it_is_asked() {
        // A worker's stop: its main process needed the SIGKILL, and only then did the rest of
        // its group (and its escapees) become what is waited for.
        let (mut stop, _) = Stop::begin(libc::SIGTERM, 100, None, 0);
        stop.handle(Event::Tick, 100);
        let mut stop = stop.settling(1000, 150);
        assert_eq!(stop.next_deadline(), Some(1150));
        assert_eq!(stop.current_signal(), libc::SIGKILL);
        assert_eq!(stop.handle(Event::Tick, 1150), Some(Order::GiveUp));
        // Still asking: the grace is unchanged and the settle time applies after the kill.
        let (stop, _) = Stop::begin(libc::SIGTERM, 100, None, 0);
        let mut stop = stop.settling(1000, 50);
        assert_eq!(stop.next_deadline(), Some(100));
        assert_eq!(stop.handle(Event::Tick, 100), Some(Order::Kill));
        assert_eq!(stop.next_deadline(), Some(1100));
    }

    #[test]
    fn a_sigkill_stop_signal_kills_at_once() {
        let (stop, first) = Stop::begin(libc::SIGKILL, 8000, Some(1000), 0);
        assert_eq!(first, Order::Kill);
        assert_eq!(stop.next_deadline(), Some(1000));
    }

    #[test]
    fn without_a_settle_time_a_kill_is_waited_out_with_no_deadline() {
        let (mut stop, _) = Stop::begin(libc::SIGTERM, 100, None, 0);
        assert_eq!(stop.handle(Event::Tick, 100), Some(Order::Kill));
        assert_eq!(stop.next_deadline(), None);
        assert_eq!(stop.handle(Event::Tick, 1_000_000), None);
        assert_eq!(stop.handle(Event::Empty, 1_000_001), Some(Order::Finished));
    }
}
