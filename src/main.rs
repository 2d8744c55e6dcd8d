//! Thin glue: run fleet-init with its arguments, exit with its code.
//!
//! `no_main`: Rust's runtime start-up is left out. As PID 1 it was about a tenth of a start
//! (measured under `perf`: ~100 µs of ~1 ms from exec to the worker's fork): it reads and parses
//! /proc/self/maps for the main thread's stack guard, maps an alternate signal stack for its
//! SIGSEGV/SIGBUS stack-overflow handlers, and ignores SIGPIPE. fleet-init needs none of that
//! (a stack overflow still ends the process, without the message; every signal is blocked and
//! read from a signalfd; SIGPIPE is left as inherited, so a worker gets it as fleet-init's parent
//! left it). The one part it does need, descriptors 0-2 open, is `startup::open_standard_fds`.
//! The arguments are read from `argv` here: std's `args_os` is filled before `main` by glibc
//! only, and is empty in a musl build.
// The test harness (`cargo test --bins`) brings its own `main`.
#![cfg_attr(not(test), no_main)]

/// The static build links musl (container/build-static says why), whose malloc maps and unmaps
/// a page group for many of the start's allocations: ~90 us more from exec to fleet-init's exit
/// (as PID 1 over `/bin/true`) than with dlmalloc, which grows one heap (ftrace, 60 starts each).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// The C entry point the C library's start code (musl's or glibc's) calls.
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    use std::os::unix::ffi::OsStrExt;
    fleet_init::startup::open_standard_fds();
    let count = usize::try_from(argc).unwrap_or(0);
    let args = (1..count).map_while(|index| {
        // SAFETY: the C start code passes `argc` entries in `argv`, each NULL or a NUL-terminated
        // string that lives as long as the process.
        let arg = unsafe { *argv.add(index) };
        // SAFETY: as above: a non-null entry is a NUL-terminated string.
        let bytes =
            (!arg.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(arg) }.to_bytes())?;
        Some(std::ffi::OsStr::from_bytes(bytes).to_os_string())
    });
    let code = fleet_init::modes::main(args);
    std::process::exit(code);
}
