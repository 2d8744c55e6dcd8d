//! The parsers of `/proc/PID/cmdline` and `/proc/PID/environ`: NUL-separated byte lists.

/// The arguments of `/proc/PID/cmdline`: NUL-separated, one trailing NUL ignored, empty
/// arguments kept, lossy UTF-8. A process that rewrote its argv (setproctitle) may have no
/// trailing NUL; its last piece is kept. Empty bytes (zombie, kernel thread) give no arguments.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let body = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    body.split(|&byte| byte == 0)
        .map(|argument| String::from_utf8_lossy(argument).into_owned())
        .collect()
}

/// The value of `key` in `/proc/PID/environ` (NUL-separated `KEY=VALUE`), lossy UTF-8. The
/// first match wins, as with getenv(3). Entries without `=` are skipped; an empty key never
/// matches.
pub fn environ_value(bytes: &[u8], key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    bytes.split(|&byte| byte == 0).find_map(|entry| {
        let equals = entry.iter().position(|&byte| byte == b'=')?;
        let (name, value) = (entry.get(..equals)?, entry.get(equals.checked_add(1)?..)?);
        (name == key.as_bytes()).then(|| String::from_utf8_lossy(value).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_command_lines() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"", &[]),
            (b"\0", &[""]),
            (b"sleep\0", &["sleep"]),
            (b"sleep\x0060\0", &["sleep", "60"]),
            (b"sh\0-c\0echo a  b\0", &["sh", "-c", "echo a  b"]),
            (b"prog\0\0last\0", &["prog", "", "last"]),
            (b"prog\0\0", &["prog", ""]),
            (b"nginx: worker process", &["nginx: worker process"]),
            (b"x\xff\0y\0", &["x\u{fffd}", "y"]),
        ];
        for (bytes, expected) in cases {
            assert_eq!(parse_cmdline(bytes), *expected, "{bytes:?}");
        }
    }

    #[test]
    fn finds_environment_values() {
        let environ = b"PATH=/bin\0FLEET_INIT_WORKER=web\0EMPTY=\0NOEQUALS\0A=b=c\0\
                        FLEET_INIT_WORKER=second\0BAD=\xff\0";
        let cases: &[(&str, Option<&str>)] = &[
            ("FLEET_INIT_WORKER", Some("web")),
            ("PATH", Some("/bin")),
            ("EMPTY", Some("")),
            ("A", Some("b=c")),
            ("BAD", Some("\u{fffd}")),
            ("NOEQUALS", None),
            ("FLEET_INIT", None),
            ("MISSING", None),
            ("", None),
            ("A=b", None),
        ];
        for (key, expected) in cases {
            assert_eq!(environ_value(environ, key).as_deref(), *expected, "{key}");
        }
        assert_eq!(environ_value(b"", "PATH"), None);
        assert_eq!(environ_value(b"PATH=/bin", "PATH").as_deref(), Some("/bin"));
        assert_eq!(environ_value(b"=x\0", ""), None);
    }
}
