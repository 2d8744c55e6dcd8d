//! The parser of `/proc/PID/stat`: the identity fields (pid, comm, parent, group, session,
//! start time) of one process, from the bytes of its stat line.

/// The fields of `/proc/PID/stat` fleet-init needs (proc_pid_stat(5)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    /// The command name (at most 15 bytes in the kernel; lossy UTF-8 here).
    pub comm: String,
    /// `R`, `S`, `D`, `Z`, `T`, ...
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// Field 22: clock ticks since boot when the process started. With the pid and the boot id
    /// it identifies a process across PID reuse.
    pub start_time: u64,
}

impl ProcStat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Position of `starttime` among the fields that follow `(comm)`: field 22 of the line, and
/// the fields after the comm start at field 3.
const START_TIME_AFTER_COMM: usize = 22 - 3;

/// Parses one `/proc/PID/stat` line. `None` for anything malformed: a missing or unbalanced
/// comm, a truncated line, a field that is not a number or does not fit.
pub fn parse_stat(bytes: &[u8]) -> Option<ProcStat> {
    // The comm may itself hold spaces and parentheses ("a) (b"): it runs from the first '(' to
    // the last ')', which is how procps reads it too.
    let open = bytes.iter().position(|&byte| byte == b'(')?;
    let close = bytes.iter().rposition(|&byte| byte == b')')?;
    let comm_bytes = bytes.get(open.checked_add(1)?..close)?;
    let pid_text = std::str::from_utf8(bytes.get(..open)?).ok()?.trim();
    let rest = std::str::from_utf8(bytes.get(close.checked_add(1)?..)?).ok()?;
    if !rest.starts_with(' ') {
        return None;
    }
    let mut fields = rest.split_ascii_whitespace();
    let state = parse_state(fields.next()?)?;
    let ppid = parse_pid_field(fields.next()?)?;
    let pgrp = parse_pid_field(fields.next()?)?;
    let session = parse_pid_field(fields.next()?)?;
    // Fields 4-6 came out above; skip to field 22.
    let start_time = parse_decimal(fields.nth(START_TIME_AFTER_COMM.checked_sub(4)?)?)?;
    // The kernel always prints more fields after it (vsize, rss, ...). Demanding one means a
    // line cut short inside field 22 cannot pass off a prefix of the start time as the whole.
    fields.next()?;
    let pid = parse_pid_field(pid_text)?;
    if pid == 0 {
        return None;
    }
    Some(ProcStat {
        pid,
        comm: String::from_utf8_lossy(comm_bytes).into_owned(),
        state,
        ppid,
        pgrp,
        session,
        start_time,
    })
}

/// One ASCII letter (`R`, `S`, `Z`, ...).
fn parse_state(text: &str) -> Option<char> {
    let mut chars = text.chars();
    let state = chars.next()?;
    (chars.next().is_none() && state.is_ascii_alphabetic()).then_some(state)
}

/// A pid-like field: decimal digits only, within `0..=i32::MAX`. The kernel never prints these
/// negative for a live process, so a sign is garbage.
fn parse_pid_field(text: &str) -> Option<i32> {
    i32::try_from(parse_decimal(text)?).ok()
}

/// Decimal digits only (no sign, no blanks), fitting a `u64`. Shared with the status parser.
pub(super) fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A realistic line with the given comm and otherwise fixed fields; start time 8812345.
    fn line(comm: &str) -> Vec<u8> {
        format!(
            "4242 ({comm}) S 17 4242 17 34816 4242 4194560 1375 0 0 0 1 0 0 0 20 0 1 0 8812345 \
             9162752 870 18446744073709551615 1 1 0 0 0 0 0 0 65536 0 0 0 17 3 0 0 0 0 0\n"
        )
        .into_bytes()
    }

    fn expected(comm: &str) -> ProcStat {
        ProcStat {
            pid: 4242,
            comm: comm.to_string(),
            state: 'S',
            ppid: 17,
            pgrp: 4242,
            session: 17,
            start_time: 8812345,
        }
    }

    #[test]
    fn parses_comms_of_every_shape() {
        for comm in [
            "bash",
            "my worker",
            "a) (b",
            ") (",
            "((",
            "))",
            "x) S 1 2 3 (",
            "",
            "kworker/0:1-events",
        ] {
            assert_eq!(
                parse_stat(&line(comm)),
                Some(expected(comm)),
                "comm {comm:?}"
            );
        }
    }

    #[test]
    fn parses_without_trailing_newline_and_lossy_comm() {
        let bytes = b"1 (init\xff) R 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5 99";
        let stat = parse_stat(bytes).expect("parses");
        assert_eq!(stat.pid, 1);
        assert_eq!(stat.comm, "init\u{fffd}");
        assert_eq!(stat.state, 'R');
        assert_eq!(stat.ppid, 0);
        assert_eq!(stat.start_time, 5);
    }

    #[test]
    fn zombie_state_is_reported() {
        let bytes = b"7 (dead) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n";
        assert!(parse_stat(bytes).expect("parses").is_zombie());
    }

    #[test]
    fn rejects_malformed_lines() {
        // Each case is the good line below with one defect, so the defect alone is what fails.
        let good = "4242 (ok) S 17 4242 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0\n";
        assert!(
            parse_stat(good.as_bytes()).is_some(),
            "the good line parses"
        );
        let tail = "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        let cases = [
            ("empty", String::new()),
            ("only pid", "4242".to_string()),
            ("no parentheses", format!("4242 ok S 17 4242 17 {tail} 1 0")),
            (
                "no closing parenthesis",
                format!("4242 (ok S 17 4242 17 {tail} 1 0"),
            ),
            (
                "no opening parenthesis",
                format!("4242 ok) S 17 4242 17 {tail} 1 0"),
            ),
            (
                "closing before opening",
                format!("4242 )ok( S 17 4242 17 {tail} 1 0"),
            ),
            ("truncated after comm", "4242 (ok)".to_string()),
            ("truncated after state", "4242 (ok) S".to_string()),
            (
                "truncated before start time",
                "4242 (ok) S 17 4242 17 0 0 0".to_string(),
            ),
            (
                "nothing after start time",
                format!("4242 (ok) S 17 4242 17 {tail} 1\n"),
            ),
            (
                "no blank after comm",
                format!("4242 (ok)S 17 4242 17 {tail} 1 0"),
            ),
            (
                "pid not a number",
                format!("abc (ok) S 17 4242 17 {tail} 1 0"),
            ),
            ("pid zero", format!("0 (ok) S 17 4242 17 {tail} 1 0")),
            ("pid negative", format!("-5 (ok) S 17 4242 17 {tail} 1 0")),
            ("pid missing", format!(" (ok) S 17 4242 17 {tail} 1 0")),
            (
                "state two letters",
                format!("4242 (ok) SS 17 4242 17 {tail} 1 0"),
            ),
            (
                "state a digit",
                format!("4242 (ok) 5 17 4242 17 {tail} 1 0"),
            ),
            (
                "ppid not a number",
                format!("4242 (ok) S x 4242 17 {tail} 1 0"),
            ),
            (
                "ppid with sign",
                format!("4242 (ok) S +17 4242 17 {tail} 1 0"),
            ),
            ("pgrp negative", format!("4242 (ok) S 17 -1 17 {tail} 1 0")),
            (
                "session float",
                format!("4242 (ok) S 17 4242 1.5 {tail} 1 0"),
            ),
            (
                "start time not a number",
                format!("4242 (ok) S 17 4242 17 {tail} z 0"),
            ),
            (
                "start time negative",
                format!("4242 (ok) S 17 4242 17 {tail} -1 0"),
            ),
            (
                "start time hex",
                format!("4242 (ok) S 17 4242 17 {tail} 0x10 0"),
            ),
            (
                "pid over i32",
                format!("2147483648 (ok) S 17 4242 17 {tail} 1 0"),
            ),
            (
                "ppid over i32",
                format!("4242 (ok) S 99999999999 4242 17 {tail} 1 0"),
            ),
            (
                "start time over u64",
                format!("4242 (ok) S 17 4242 17 {tail} 18446744073709551616 0"),
            ),
        ];
        for (name, text) in &cases {
            assert_eq!(parse_stat(text.as_bytes()), None, "{name}: {text:?}");
        }
        let non_utf8 = b"4242 (ok) S 17 4242 17 \xff 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0";
        assert_eq!(parse_stat(non_utf8), None, "non-UTF-8 after the comm");
    }

    #[test]
    fn accepts_the_largest_numbers_that_fit() {
        let text =
            "2147483647 (big) R 2147483647 2147483647 2147483647 0 0 0 0 0 0 0 0 0 0 0 0 0 0 \
                    0 18446744073709551615 0";
        let stat = parse_stat(text.as_bytes()).expect("parses");
        assert_eq!(stat.pid, i32::MAX);
        assert_eq!(stat.ppid, i32::MAX);
        assert_eq!(stat.pgrp, i32::MAX);
        assert_eq!(stat.session, i32::MAX);
        assert_eq!(stat.start_time, u64::MAX);
    }

    #[test]
    fn a_cut_line_never_yields_a_wrong_start_time() {
        let full = line("a) (b");
        for end in 0..full.len() {
            let prefix = full.get(..end).expect("in range");
            if let Some(stat) = parse_stat(prefix) {
                assert_eq!(stat, expected("a) (b"), "prefix {end}");
            }
        }
    }
}
