//! fleet-init's diagnostics (the `log` macros) as plain lines on stderr, written the way the
//! events are: one non-blocking write per line, behind any worker output waiting there. A
//! stalled stderr drops a diagnostic; it never stalls PID 1.

use crate::events;
use std::time::SystemTime;

struct Diagnostics;

static DIAGNOSTICS: Diagnostics = Diagnostics;

impl log::Log for Diagnostics {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            events::diagnostic(&line(record, SystemTime::now()));
        }
    }

    fn flush(&self) {}
}

/// `[2026-12-01T08:12:06.031Z WARN  fleet_init::spawn] message`, on one line whatever the
/// message holds.
fn line(record: &log::Record, at: SystemTime) -> String {
    let text = format!(
        "[{} {:<5} {}] {}",
        events::rfc3339_millis(at),
        record.level(),
        record.target(),
        record.args()
    );
    crate::cli::one_line(&text)
}

/// Diagnostics at `level` and above from now on. A logger already installed (only possible
/// in tests) keeps its place; the level still applies.
pub fn init(level: log::LevelFilter) {
    // Err only when a logger exists already: nothing to do then.
    let _ = log::set_logger(&DIAGNOSTICS);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_line_has_the_time_the_level_the_module_and_the_message_on_one_line() {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_576_726_031);
        let text = line(
            &log::Record::builder()
                .args(format_args!("cannot remove {}:\nENOENT", "/run/x"))
                .level(log::Level::Warn)
                .target("fleet_init::spawn")
                .build(),
            at,
        );
        assert_eq!(
            text,
            "[2025-12-01T08:12:06.031Z WARN  fleet_init::spawn] cannot remove /run/x:\\nENOENT"
        );
    }
}
