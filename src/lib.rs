//! fleet-init: a container init that reaps zombies, forwards signals and supervises workers.
//!
//! The decision logic (`supervisor`, `config`, `procscan` parsers) is pure; `runtime` is the one
//! loop that owns the side effects.

pub mod cli;
pub mod config;
pub mod control;
pub mod events;
pub mod exit;
pub mod handoff;
pub mod job_control;
pub mod logger;
pub mod modes;
pub mod orphans;
pub mod output;
pub mod pidfd;
pub mod probes;
pub mod procscan;
pub mod runtime;
pub mod signals;
pub mod spawn;
pub mod startup;
pub mod stop;
pub mod supervisor;
pub mod watchdog;
pub mod zombies;
