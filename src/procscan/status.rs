//! The parser of `/proc/PID/status` for the memory watchdog: one process's resident memory,
//! and which lines it came from.

use std::io::BufRead;

use serde::Serialize;

use super::stat::parse_decimal;

/// Which lines of `/proc/PID/status` a reading came from; serialized as the `source` field of
/// `watchdog_triggered`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// `RssAnon:` + `RssShmem:` (Linux 4.5+): the memory the process itself holds, without the
    /// file-backed pages (shared libraries, page cache) that `VmRSS` also counts.
    RssAnonShmem,
    /// `VmRSS:`, for kernels without the split.
    VmRss,
}

impl MemorySource {
    pub fn as_str(self) -> &'static str {
        match self {
            MemorySource::RssAnonShmem => "rss_anon_shmem",
            MemorySource::VmRss => "vm_rss",
        }
    }
}

/// The resident memory of one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReading {
    pub bytes: u64,
    pub source: MemorySource,
}

/// What one `KEY: N kB` line said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Field {
    #[default]
    Absent,
    /// Present, but not `N kB` or too large to count in bytes: the source is unusable.
    Unusable,
    Bytes(u64),
}

impl Field {
    fn bytes(self) -> Option<u64> {
        match self {
            Field::Bytes(bytes) => Some(bytes),
            Field::Absent | Field::Unusable => None,
        }
    }
}

#[derive(Default)]
struct MemoryFields {
    rss_anon: Field,
    rss_shmem: Field,
    vm_rss: Field,
}

/// Reads the memory lines of a `/proc/PID/status`. Which lines are PRESENT decides the source,
/// never their values (SPEC, "Memory watchdog"): both `RssAnon:` and `RssShmem:` (even both 0)
/// give their sum; otherwise `VmRSS:`; otherwise `None` (kernel threads, zombies: no mm).
/// A source whose line is malformed or overflows in bytes is unusable, so the next one is
/// tried: a wrong number is never returned. An I/O error mid-read gives `None`.
pub fn parse_status_memory<R: BufRead>(mut reader: R) -> Option<MemoryReading> {
    let mut fields = MemoryFields::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bytes, not `lines()`: the `Name:` line holds the comm, which need not be UTF-8.
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => fields.take(&line),
            Err(error) => {
                log::debug!("reading /proc status failed mid-way: {error}");
                return None;
            }
        }
    }
    fields.reading()
}

impl MemoryFields {
    fn take(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            return;
        };
        let (Some(key), Some(value)) = (line.get(..colon), line.get(colon.saturating_add(1)..))
        else {
            return;
        };
        let slot = match key {
            b"RssAnon" => &mut self.rss_anon,
            b"RssShmem" => &mut self.rss_shmem,
            b"VmRSS" => &mut self.vm_rss,
            _ => return,
        };
        // A repeated key would be a kernel bug; the first one stands.
        if *slot == Field::Absent {
            *slot = parse_kilobytes(value);
        }
    }

    fn reading(&self) -> Option<MemoryReading> {
        if self.rss_anon != Field::Absent && self.rss_shmem != Field::Absent {
            let sum = self
                .rss_anon
                .bytes()
                .zip(self.rss_shmem.bytes())
                .and_then(|(anon, shmem)| anon.checked_add(shmem));
            if let Some(bytes) = sum {
                return Some(MemoryReading {
                    bytes,
                    source: MemorySource::RssAnonShmem,
                });
            }
        }
        let bytes = self.vm_rss.bytes()?;
        Some(MemoryReading {
            bytes,
            source: MemorySource::VmRss,
        })
    }
}

/// `\t  1234 kB` → 1234 * 1024 bytes. The kernel prints these in kB (fs/proc/task_mmu.c).
fn parse_kilobytes(value: &[u8]) -> Field {
    let Ok(text) = std::str::from_utf8(value) else {
        return Field::Unusable;
    };
    let mut words = text.split_ascii_whitespace();
    let (Some(number), Some("kB"), None) = (words.next(), words.next(), words.next()) else {
        return Field::Unusable;
    };
    match parse_decimal(number).and_then(|kilobytes| kilobytes.checked_mul(1024)) {
        Some(bytes) => Field::Bytes(bytes),
        None => Field::Unusable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANON_SHMEM: MemorySource = MemorySource::RssAnonShmem;
    const VM_RSS: MemorySource = MemorySource::VmRss;

    /// A status file around the given memory lines, as the kernel lays it out.
    fn status(memory_lines: &str) -> Vec<u8> {
        format!(
            "Name:\tworker\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nPid:\t4242\n\
             PPid:\t17\nVmPeak:\t   20000 kB\nVmSize:\t   19000 kB\n{memory_lines}\
             Threads:\t1\nSigBlk:\t0000000000000000\n"
        )
        .into_bytes()
    }

    fn reading(bytes: u64, source: MemorySource) -> Option<MemoryReading> {
        Some(MemoryReading { bytes, source })
    }

    #[test]
    fn presence_of_lines_decides_the_source() {
        let cases: &[(&str, &str, Option<MemoryReading>)] = &[
            (
                "normal",
                "VmRSS:\t    9000 kB\nRssAnon:\t    1234 kB\nRssFile:\t    7000 kB\n\
                 RssShmem:\t      16 kB\n",
                reading((1234 + 16) * 1024, ANON_SHMEM),
            ),
            (
                "anon zero, shmem 512",
                "VmRSS:\t 9000 kB\nRssAnon:\t 0 kB\nRssShmem:\t 512 kB\n",
                reading(512 * 1024, ANON_SHMEM),
            ),
            (
                "both zero still wins over VmRSS",
                "VmRSS:\t 9000 kB\nRssAnon:\t 0 kB\nRssShmem:\t 0 kB\n",
                reading(0, ANON_SHMEM),
            ),
            (
                "RssAnon without RssShmem",
                "VmRSS:\t 9000 kB\nRssAnon:\t 100 kB\n",
                reading(9000 * 1024, VM_RSS),
            ),
            (
                "RssShmem without RssAnon",
                "VmRSS:\t 9000 kB\nRssShmem:\t 100 kB\n",
                reading(9000 * 1024, VM_RSS),
            ),
            (
                "neither, but VmRSS",
                "VmRSS:\t 9000 kB\n",
                reading(9000 * 1024, VM_RSS),
            ),
            ("VmRSS zero", "VmRSS:\t 0 kB\n", reading(0, VM_RSS)),
            ("nothing (kernel thread, zombie)", "", None),
            ("only RssAnon", "RssAnon:\t 100 kB\n", None),
            (
                "order does not matter",
                "RssShmem:\t 2 kB\nRssAnon:\t 1 kB\nVmRSS:\t 9 kB\n",
                reading(3 * 1024, ANON_SHMEM),
            ),
            (
                "first of a repeated key stands",
                "VmRSS:\t 9 kB\nVmRSS:\t 10 kB\n",
                reading(9 * 1024, VM_RSS),
            ),
            (
                "similar keys are not the ones",
                "VmRSSx:\t 1 kB\nRssAnonymous:\t 1 kB\nRssShmem:\t 1 kB\n",
                None,
            ),
        ];
        for (name, lines, expected) in cases {
            assert_eq!(
                parse_status_memory(status(lines).as_slice()),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn an_unusable_value_falls_back_never_guesses() {
        let cases: &[(&str, &str, Option<MemoryReading>)] = &[
            (
                "RssAnon not a number",
                "VmRSS:\t 9 kB\nRssAnon:\t x kB\nRssShmem:\t 1 kB\n",
                reading(9 * 1024, VM_RSS),
            ),
            (
                "RssShmem negative",
                "VmRSS:\t 9 kB\nRssAnon:\t 1 kB\nRssShmem:\t -1 kB\n",
                reading(9 * 1024, VM_RSS),
            ),
            ("RssAnon empty", "VmRSS:\t 9 kB\nRssAnon:\nRssShmem:\t 1 kB\n", reading(9 * 1024, VM_RSS)),
            (
                "RssAnon without unit",
                "VmRSS:\t 9 kB\nRssAnon:\t 5\nRssShmem:\t 1 kB\n",
                reading(9 * 1024, VM_RSS),
            ),
            (
                "RssAnon in another unit",
                "VmRSS:\t 9 kB\nRssAnon:\t 5 MB\nRssShmem:\t 1 kB\n",
                reading(9 * 1024, VM_RSS),
            ),
            (
                "RssAnon with a trailing word",
                "VmRSS:\t 9 kB\nRssAnon:\t 5 kB extra\nRssShmem:\t 1 kB\n",
                reading(9 * 1024, VM_RSS),
            ),
            (
                "RssAnon overflows u64 after *1024",
                "VmRSS:\t 9 kB\nRssAnon:\t 18014398509481984 kB\nRssShmem:\t 0 kB\n",
                reading(9 * 1024, VM_RSS),
            ),
            (
                "sum overflows u64",
                "VmRSS:\t 9 kB\nRssAnon:\t 18014398509481983 kB\nRssShmem:\t 18014398509481983 kB\n",
                reading(9 * 1024, VM_RSS),
            ),
            (
                "RssAnon over u64 itself",
                "VmRSS:\t 9 kB\nRssAnon:\t 18446744073709551616 kB\nRssShmem:\t 0 kB\n",
                reading(9 * 1024, VM_RSS),
            ),
            ("VmRSS malformed, nothing else", "VmRSS:\t 9.5 kB\n", None),
            ("VmRSS overflows", "VmRSS:\t 18014398509481984 kB\n", None),
            (
                "both sources unusable",
                "VmRSS:\t x kB\nRssAnon:\t 1 kB\nRssShmem:\t y kB\n",
                None,
            ),
        ];
        for (name, lines, expected) in cases {
            assert_eq!(
                parse_status_memory(status(lines).as_slice()),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn the_largest_value_that_fits_is_exact() {
        // 18014398509481983 kB * 1024 = 2^64 - 1024, the largest multiple of 1024 in a u64.
        let lines = "RssAnon:\t 18014398509481983 kB\nRssShmem:\t 0 kB\n";
        let expected = reading(u64::MAX - 1023, ANON_SHMEM);
        assert_eq!(parse_status_memory(status(lines).as_slice()), expected);
        let lines = "RssAnon:\t 18014398509481982 kB\nRssShmem:\t 1 kB\n";
        assert_eq!(parse_status_memory(status(lines).as_slice()), expected);
        let lines = "RssAnon:\t 18014398509481983 kB\nRssShmem:\t 1 kB\nVmRSS:\t 1 kB\n";
        let fallback = reading(1024, VM_RSS);
        assert_eq!(parse_status_memory(status(lines).as_slice()), fallback);
    }

    #[test]
    fn non_utf8_name_and_missing_final_newline_are_fine() {
        let bytes = b"Name:\tw\xff\xfe\nVmRSS:\t 7 kB\nRssAnon:\t 3 kB\nRssShmem:\t 4 kB";
        assert_eq!(
            parse_status_memory(bytes.as_slice()),
            reading(7 * 1024, ANON_SHMEM)
        );
    }

    #[test]
    fn an_io_error_gives_no_reading() {
        struct Failing;
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::from_raw_os_error(libc::ESRCH))
            }
        }
        assert_eq!(parse_status_memory(std::io::BufReader::new(Failing)), None);
    }

    #[test]
    fn source_names_match_the_events() {
        for source in [ANON_SHMEM, VM_RSS] {
            let json = serde_json::to_string(&source).expect("serializes");
            assert_eq!(json, format!("\"{}\"", source.as_str()));
        }
        assert_eq!(ANON_SHMEM.as_str(), "rss_anon_shmem");
        assert_eq!(VM_RSS.as_str(), "vm_rss");
    }
}
