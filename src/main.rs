//! Thin glue: run fleet-init with its arguments, exit with its code.
//!
//! `no_main`: Rust's runtime start-up is left out. As PID 1 it was about a tenth of a start
//! (measured under `perf`: ~100 µs of ~1 ms from exec to the worker's fork): it reads and parses
//! /proc/self/maps for the main thread's stack guard, maps an alternate signal stack for its
//! SIGSEGV/SIGBUS stack-overflow handlers, and ignores SIGPIPE. fleet-init needs none of that
//! (a stack overflow still ends the process, without the message; every signal is blocked and
//! read from a signalfd; SIGPIPE is left as inherited, so a worker gets it as fleet-init's parent
//! left it). The one part it does need, descriptors 0-2 open, is `startup::open_standard_fds`.
//! The arguments come from std, which takes them from glibc before `main`.
// The test harness (`cargo test --bins`) brings its own `main`.
#![cfg_attr(not(test), no_main)]

/// The C entry point glibc's start code calls.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    fleet_init::startup::open_standard_fds();
    let code = fleet_init::modes::main(std::env::args_os().skip(1));
    std::process::exit(code);
}
