//! How a process ended, as a value: converted to a shell-style exit code once, never lost.

/// The end of a process as `waitpid` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `exit(n)`: the low 8 bits the kernel kept.
    Code(i32),
    /// Killed by signal N.
    Signal(i32),
}

impl Exit {
    /// The code a shell would report: N, or 128+N for a death by signal N.
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal,
        }
    }

    pub fn is_success(self) -> bool {
        self == Exit::Code(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_codes_follow_the_shell() {
        for (exit, code) in [
            (Exit::Code(0), 0),
            (Exit::Code(3), 3),
            (Exit::Signal(9), 137),
            (Exit::Signal(11), 139),
            (Exit::Signal(15), 143),
        ] {
            assert_eq!(exit.shell_code(), code, "{exit:?}");
        }
        assert!(Exit::Code(0).is_success());
        assert!(!Exit::Signal(0).is_success());
    }
}
