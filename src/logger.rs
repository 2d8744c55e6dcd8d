//! fleet-init's diagnostics (the `log` macros) as plain lines on stderr, through
//! `events::diagnostic`: one write when a poll says there is room, of at most PIPE_BUF bytes (a
//! pipe takes it whole without blocking), behind any worker output waiting there. A stalled
//! stderr drops a diagnostic; it never stalls PID 1.

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
/// message holds, cut to leave room for the newline within PIPE_BUF.
fn line(record: &log::Record, at: SystemTime) -> String {
    let text = format!(
        "[{} {:<5} {}] {}",
        events::rfc3339_millis(at),
        record.level(),
        record.target(),
        record.args()
    );
    let mut line = crate::cli::one_line(&text);
    if line.len() >= events::MAX_LINE_BYTES {
        let mut end = events::MAX_LINE_BYTES - CUT_MARK.len() - 1;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str(CUT_MARK);
    }
    line
}

/// What ends a diagnostic that was cut.
const CUT_MARK: &str = " [cut]";

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

    #[test]
    fn a_long_line_is_cut_to_fit_one_pipe_write_at_a_character_boundary() {
        let at = UNIX_EPOCH;
        let long = "é".repeat(5000);
        let text = line(
            &log::Record::builder()
                .args(format_args!("{long}"))
                .level(log::Level::Error)
                .target("fleet_init")
                .build(),
            at,
        );
        assert!(text.len() < events::MAX_LINE_BYTES, "{}", text.len());
        assert!(text.ends_with("é [cut]"), "{}", &text[text.len() - 20..]);
    }
}
