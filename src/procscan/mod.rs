//! Parsers of /proc files (pure: bytes in, values out) and scans of the process table.
//!
//! The /proc root is always a parameter, so tests (and a host /proc mounted elsewhere) work the
//! same. A process that vanishes between two reads is a normal outcome (`Lookup::Gone`), not an
//! error: with PID 1 reaping and workers exiting, it happens all the time.

mod cmdline;
mod stat;
mod status;
mod tree;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;

pub use cmdline::{environ_value, parse_cmdline};
pub use stat::{parse_stat, ProcStat};
pub use status::{parse_status_memory, MemoryReading, MemorySource};
pub use tree::{
    ancestors, children_map, descendants, find, sum_readings, walk, TreeMemory, TOP_CONTRIBUTORS,
};

/// The outcome of reading one process's /proc file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    /// No such process (any more): ENOENT on its directory or file, ESRCH on a read that raced
    /// its exit, or a parse failure after which its directory is gone.
    Gone,
    /// The process may well exist but its file could not be read (EACCES under `hidepid`, ...).
    /// Never to be taken as "gone": the handoff registry drops entries only on `Gone`.
    Unreadable(Errno),
    /// The file was read, the process still exists, and the contents do not parse.
    Malformed,
}

impl<T> Lookup<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        self.and_then(|value| Lookup::Found(f(value)))
    }

    pub fn and_then<U>(self, f: impl FnOnce(T) -> Lookup<U>) -> Lookup<U> {
        match self {
            Lookup::Found(value) => f(value),
            Lookup::Gone => Lookup::Gone,
            Lookup::Unreadable(errno) => Lookup::Unreadable(errno),
            Lookup::Malformed => Lookup::Malformed,
        }
    }

    /// The value, if found; every other outcome is `None`.
    pub fn found(self) -> Option<T> {
        match self {
            Lookup::Found(value) => Some(value),
            Lookup::Gone | Lookup::Unreadable(_) | Lookup::Malformed => None,
        }
    }

    pub fn is_gone(&self) -> bool {
        matches!(self, Lookup::Gone)
    }
}

/// The identity and parentage of `pid`, from `proc_root/PID/stat`.
pub fn read_stat(proc_root: &Path, pid: i32) -> Lookup<ProcStat> {
    read_proc_record(proc_root, pid, "stat").and_then(|bytes| match parse_stat(&bytes) {
        Some(stat) if stat.pid == pid => Lookup::Found(stat),
        // A read that raced the exit can come back short; if the directory is gone, so is the
        // process, and that is what the caller needs to know.
        _ => match std::fs::symlink_metadata(proc_root.join(pid.to_string())) {
            Ok(_) => Lookup::Malformed,
            Err(error) => lookup_error(error),
        },
    })
}

/// Every process under `proc_root` whose stat could be read, ascending by pid. Processes that
/// vanish mid-scan are skipped; an unreadable `proc_root` is logged and gives an empty table
/// (use `try_scan` where "no processes" and "could not look" must differ).
pub fn scan(proc_root: &Path) -> Vec<ProcStat> {
    scan_except(proc_root, 0)
}

/// `scan` without the stat of `skip` (fleet-init's own: a shutdown's scan for the others has
/// no use for it, and each stat is three system calls).
pub fn scan_except(proc_root: &Path, skip: i32) -> Vec<ProcStat> {
    try_scan_except(proc_root, skip).unwrap_or_else(|error| {
        log::warn!("cannot list {}: {error}", proc_root.display());
        Vec::new()
    })
}

/// Like `scan`, but failing to list `proc_root` at all is an error.
pub fn try_scan(proc_root: &Path) -> io::Result<Vec<ProcStat>> {
    try_scan_except(proc_root, 0)
}

fn try_scan_except(proc_root: &Path, skip: i32) -> io::Result<Vec<ProcStat>> {
    let mut table = Vec::new();
    for pid in list_pids(proc_root)? {
        if pid == skip {
            continue;
        }
        match read_stat(proc_root, pid) {
            Lookup::Found(stat) => table.push(stat),
            Lookup::Gone => {} // exited since the directory was listed
            Lookup::Unreadable(errno) => log::debug!("skipping pid {pid}: stat: {errno}"),
            Lookup::Malformed => log::debug!("skipping pid {pid}: stat does not parse"),
        }
    }
    table.sort_unstable_by_key(|stat| stat.pid);
    Ok(table)
}

/// The memory reading of `pid` from `proc_root/PID/status`; `Found(None)` when the process has
/// no memory lines (zombie, kernel thread).
pub fn read_status_memory(proc_root: &Path, pid: i32) -> Lookup<Option<MemoryReading>> {
    read_proc_file(proc_root, pid, "status").map(|bytes| parse_status_memory(bytes.as_slice()))
}

/// The arguments of `pid`, from `proc_root/PID/cmdline`.
pub fn read_cmdline(proc_root: &Path, pid: i32) -> Lookup<Vec<String>> {
    read_proc_file(proc_root, pid, "cmdline").map(|bytes| parse_cmdline(&bytes))
}

/// The value of `key` in the environment `pid` started with, from `proc_root/PID/environ`.
/// Another user's process gives `Unreadable(EACCES)`.
pub fn read_environ_value(proc_root: &Path, pid: i32, key: &str) -> Lookup<Option<String>> {
    read_proc_file(proc_root, pid, "environ").map(|bytes| environ_value(&bytes, key))
}

/// What a process carries in its environment to say whose it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// `FLEET_INIT_GENERATION`: the run of fleet-init that started it (or its ancestor).
    pub generation: Option<String>,
    /// `FLEET_INIT_WORKER`: the worker it belongs to.
    pub worker: Option<String>,
}

/// The marks `pid` started with, from `proc_root/PID/environ`. Another user's process, which
/// root cannot read without CAP_SYS_PTRACE (the default in Docker and podman), is read with
/// the file-system uid and gid switched to the process's own (setfsuid(2)): the kernel's
/// access check then sees its owner. `Unreadable` only when even that fails (a set-uid or
/// non-dumpable process): never to be taken as "not ours".
pub fn read_marks(proc_root: &Path, pid: i32) -> Lookup<Marks> {
    let read = || read_proc_file(proc_root, pid, "environ");
    let bytes = match read() {
        Lookup::Unreadable(Errno::EACCES | Errno::EPERM) => {
            match std::fs::metadata(proc_root.join(pid.to_string())) {
                Ok(owner) => as_file_owner(owner.uid(), owner.gid(), read),
                Err(error) => lookup_error(error),
            }
        }
        other => other,
    };
    bytes.map(|bytes| Marks {
        generation: environ_value(&bytes, "FLEET_INIT_GENERATION"),
        worker: environ_value(&bytes, "FLEET_INIT_WORKER"),
    })
}

/// Runs `f` with this thread's file-system ids set to `uid`/`gid`, then sets them back.
/// fleet-init's loop is one thread, so nothing else runs meanwhile with the borrowed ids.
fn as_file_owner<T>(uid: u32, gid: u32, f: impl FnOnce() -> Lookup<T>) -> Lookup<T> {
    use nix::unistd::{setfsgid, setfsuid, Gid, Uid};
    // setfsuid returns the previous id whether or not it changed anything: asking twice is how
    // the man page says to learn whether it took.
    let old_gid = setfsgid(Gid::from_raw(gid));
    let old_uid = setfsuid(Uid::from_raw(uid));
    let is_switched = setfsuid(Uid::from_raw(uid)).as_raw() == uid;
    let result = if is_switched {
        f()
    } else {
        Lookup::Unreadable(Errno::EPERM)
    };
    setfsuid(old_uid);
    setfsgid(old_gid);
    result
}

/// The inode of `proc_root/self/ns/pid`: which PID namespace the pids in this /proc mean.
pub fn read_pid_ns(proc_root: &Path) -> Option<u64> {
    std::fs::metadata(proc_root.join("self/ns/pid"))
        .map(|metadata| metadata.ino())
        .ok()
}

/// This boot's id, from `proc_root/sys/kernel/random/boot_id`, trimmed; `None` when missing
/// or empty (handoff entries then cannot be matched to a boot and are never signalled).
/// Whether `proc_root` shows this process's PID namespace: its `self` names our own pid.
/// PID 1 started without its own /proc mount sees its parent namespace's processes there,
/// and no pid read from it may be acted on.
pub fn is_own_namespace(proc_root: &Path) -> bool {
    let own = std::process::id().to_string();
    std::fs::read_link(proc_root.join("self")).is_ok_and(|link| link.as_os_str() == own.as_str())
}

pub fn read_boot_id(proc_root: &Path) -> Option<String> {
    let path = proc_root.join("sys/kernel/random/boot_id");
    // One read of a UUID and its newline; no stat and no read to EOF as read_to_string does.
    let mut bytes = [0u8; 64];
    let read = std::fs::File::open(&path).and_then(|mut file| loop {
        match io::Read::read(&mut file, &mut bytes) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    });
    let text = read.and_then(|count| {
        std::str::from_utf8(bytes.get(..count).unwrap_or_default())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
    });
    match text {
        Ok(text) => Some(text.trim().to_string()).filter(|id| !id.is_empty()),
        Err(error) => {
            log::debug!("cannot read {}: {error}", path.display());
            None
        }
    }
}

/// The resident memory of `root` and all its descendants in `table`. Processes that vanished,
/// have no memory lines, or cannot be read are left out; so is a pid whose start time no longer
/// matches the table (reused since the scan), so a stranger's memory is never counted.
pub fn tree_memory(proc_root: &Path, table: &[ProcStat], root: i32) -> TreeMemory {
    let pids = std::iter::once(root).chain(descendants(table, root));
    sum_readings(pids.filter_map(|pid| {
        read_memory_of_same_process(proc_root, table, pid).map(|reading| (pid, reading))
    }))
}

fn read_memory_of_same_process(
    proc_root: &Path,
    table: &[ProcStat],
    pid: i32,
) -> Option<MemoryReading> {
    let reading = match read_status_memory(proc_root, pid) {
        Lookup::Found(reading) => reading?,
        Lookup::Gone | Lookup::Malformed => return None,
        Lookup::Unreadable(errno) => {
            log::debug!("memory of pid {pid} not counted: status: {errno}");
            return None;
        }
    };
    let Some(scanned) = find(table, pid) else {
        return Some(reading); // a root the table does not know: nothing to compare with
    };
    // Checked after the status read: if the pid was reused before that read, the stat now
    // shows the newcomer's start time.
    match read_stat(proc_root, pid) {
        Lookup::Found(now) if now.start_time == scanned.start_time => Some(reading),
        _ => None,
    }
}

/// The whole of `proc_root/PID/NAME`. Pids below 1 name no process.
fn read_proc_file(proc_root: &Path, pid: i32, name: &str) -> Lookup<Vec<u8>> {
    read_proc_with(proc_root, pid, name, read_whole)
}

/// A file of one record that procfs writes whole in one read (`stat`: a seq_file shown at
/// once): a read that does not fill the buffer is the end, without a second read for the
/// zero that says so.
fn read_proc_record(proc_root: &Path, pid: i32, name: &str) -> Lookup<Vec<u8>> {
    read_proc_with(proc_root, pid, name, read_record)
}

fn read_proc_with(
    proc_root: &Path,
    pid: i32,
    name: &str,
    read: fn(&mut std::fs::File) -> io::Result<Vec<u8>>,
) -> Lookup<Vec<u8>> {
    if pid <= 0 {
        return Lookup::Gone;
    }
    match std::fs::File::open(proc_root.join(pid.to_string()).join(name))
        .and_then(|mut file| read(&mut file))
    {
        Ok(bytes) => Lookup::Found(bytes),
        Err(error) => lookup_error(error),
    }
}

fn read_record(file: &mut std::fs::File) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; PROC_READ_BYTES];
    let count = loop {
        match io::Read::read(file, &mut bytes) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    if count < bytes.len() {
        bytes.truncate(count);
        return Ok(bytes);
    }
    // Longer than a page: the rest as any file.
    let rest = read_whole(file)?;
    bytes.extend_from_slice(&rest);
    Ok(bytes)
}

const PROC_READ_BYTES: usize = 4096;

/// Reads a /proc file to its end with plain read(2)s into a page-sized buffer. Not fs::read
/// nor read_to_end: they fstat and lseek for a size hint procfs cannot give (it says 0), then
/// read in growing 32, 64, 128... byte pieces; this takes a stat or status file in one read.
fn read_whole(file: &mut std::fs::File) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; PROC_READ_BYTES];
    let mut filled = 0;
    loop {
        if filled == bytes.len() {
            bytes.resize(bytes.len().saturating_mul(2), 0);
        }
        let Some(spare) = bytes.get_mut(filled..) else {
            break;
        };
        match io::Read::read(file, spare) {
            Ok(0) => break,
            Ok(n) => filled = filled.saturating_add(n),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}

/// ENOENT (no such directory or file) and ESRCH (the task exited while its file was open, see
/// proc_pid_stat's get_pid_task in fs/proc/base.c) both mean the process is gone.
fn lookup_error<T>(error: io::Error) -> Lookup<T> {
    match Errno::try_from(error) {
        Ok(Errno::ENOENT | Errno::ESRCH) => Lookup::Gone,
        Ok(errno) => Lookup::Unreadable(errno),
        Err(error) => {
            log::debug!("reading /proc failed without an errno: {error}");
            Lookup::Unreadable(Errno::UnknownErrno)
        }
    }
}

/// A /proc directory name that is a pid: digits only, 1..=i32::MAX.
/// The numeric entries of `proc_root` (self, sys, net, ...: not processes), read with
/// getdents64 into a buffer on the stack: not `read_dir`, whose `opendir` mallocs 32 KiB for
/// every scan (a heap growth, its page faults and a trim, on a shutdown's path).
fn list_pids(proc_root: &Path) -> io::Result<Vec<i32>> {
    let dir = nix::fcntl::open(
        proc_root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut pids = Vec::new();
    for_each_dir_entry(dir.as_fd(), |name| {
        if let Some(pid) = std::str::from_utf8(name).ok().and_then(parse_pid_name) {
            pids.push(pid);
        }
    })?;
    Ok(pids)
}

/// Calls `each` with the name of every entry of the open directory `dir`, from its current
/// position (a fresh descriptor, or one rewound with lseek), `.` and `..` included. getdents64
/// into a buffer on the stack: no `opendir`, no 32 KiB malloc, no fstat or fcntl.
pub fn for_each_dir_entry(dir: BorrowedFd<'_>, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buffer = [0u8; 4096];
    loop {
        // SAFETY: getdents64 writes at most `buffer.len()` bytes into the buffer we own, from a
        // directory descriptor the caller keeps open.
        let read = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buffer.as_mut_ptr(),
                buffer.len(),
            )
        };
        let Ok(read) = usize::try_from(read) else {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        };
        if read == 0 {
            return Ok(());
        }
        dirent_names(buffer.get(..read).unwrap_or_default()).for_each(&mut each);
    }
}

/// The names in a getdents64 buffer: records of d_ino (8 bytes), d_off (8), d_reclen (2),
/// d_type (1), then the name up to its NUL, the record padded to d_reclen. A record that does
/// not fit ends the walk.
fn dirent_names(buffer: &[u8]) -> impl Iterator<Item = &[u8]> {
    const NAME_AT: usize = 19;
    let mut rest = buffer;
    std::iter::from_fn(move || {
        let length = rest
            .get(16..18)
            .and_then(|bytes| <[u8; 2]>::try_from(bytes).ok())
            .map(|pair| usize::from(u16::from_ne_bytes(pair)))?;
        let record = rest.get(..length).filter(|_| length > NAME_AT)?;
        rest = rest.get(length..).unwrap_or_default();
        let name = record.get(NAME_AT..).unwrap_or_default();
        let end = name
            .iter()
            .position(|byte| *byte == 0)
            .unwrap_or(name.len());
        name.get(..end)
    })
}

fn parse_pid_name(name: &str) -> Option<i32> {
    if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    name.parse::<i32>().ok().filter(|&pid| pid > 0)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A fake /proc in a unique temp directory, removed on drop.
    struct FakeProc {
        root: PathBuf,
    }

    impl FakeProc {
        fn new(name: &str) -> FakeProc {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
            let root = std::env::temp_dir().join(format!(
                "fleet-init-procscan-{}-{name}-{unique}",
                std::process::id()
            ));
            if root.exists() {
                fs::remove_dir_all(&root).expect("remove a stale fake /proc");
            }
            fs::create_dir_all(&root).expect("create fake /proc");
            FakeProc { root }
        }

        fn write(&self, relative: &str, contents: &[u8]) {
            let path = self.root.join(relative);
            let parent = path.parent().expect("has a parent");
            fs::create_dir_all(parent).expect("create parent");
            fs::write(&path, contents).expect("write fake file");
        }

        /// A process directory with a stat line and, if given, status memory lines.
        fn process(&self, pid: i32, ppid: i32, start_time: u64, memory_lines: Option<&str>) {
            let stat = format!(
                "{pid} (proc {pid}) S {ppid} {pid} 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start_time} \
                 1000 10 0\n"
            );
            self.write(&format!("{pid}/stat"), stat.as_bytes());
            if let Some(lines) = memory_lines {
                let status = format!("Name:\tproc {pid}\nPid:\t{pid}\n{lines}Threads:\t1\n");
                self.write(&format!("{pid}/status"), status.as_bytes());
            }
        }
    }

    #[test]
    fn pids_are_listed_through_several_getdents_reads() {
        let fake = FakeProc::new("many");
        for pid in 1..=600 {
            fs::create_dir_all(fake.root.join(pid.to_string())).unwrap();
        }
        for other in ["self", "sys", "0", "12a", "-3"] {
            fs::create_dir_all(fake.root.join(other)).unwrap();
        }
        let mut pids = list_pids(&fake.root).unwrap();
        pids.sort_unstable();
        assert_eq!(pids, (1..=600).collect::<Vec<i32>>());
        assert!(list_pids(&fake.root.join("nowhere")).is_err());
    }

    #[test]
    fn dirent_records_are_walked_by_their_length_and_a_cut_one_ends_the_walk() {
        fn record(name: &str, padded_to: usize) -> Vec<u8> {
            let mut bytes = vec![0u8; 19];
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(0);
            bytes.resize(padded_to.max(bytes.len()), 0);
            let length = u16::try_from(bytes.len()).unwrap().to_ne_bytes();
            bytes[16..18].copy_from_slice(&length);
            bytes
        }
        let mut buffer = [record("1", 24), record("self", 32), record("4242", 24)].concat();
        let names: Vec<&[u8]> = dirent_names(&buffer).collect();
        assert_eq!(names, [&b"1"[..], b"self", b"4242"]);
        buffer.truncate(buffer.len() - 3);
        assert_eq!(dirent_names(&buffer).count(), 2, "a cut record is not read");
        assert_eq!(dirent_names(&[0u8; 10]).count(), 0);
        let zero_length = vec![0u8; 40];
        assert_eq!(dirent_names(&zero_length).count(), 0, "no endless walk");
    }

    #[test]
    fn a_scan_for_the_others_skips_the_given_pid_and_a_long_stat_is_read_whole() {
        let fake = FakeProc::new("except");
        for pid in [1, 7, 9] {
            fake.process(pid, 0, 100, None);
        }
        let pids = |table: Vec<ProcStat>| table.iter().map(|p| p.pid).collect::<Vec<_>>();
        assert_eq!(pids(scan(&fake.root)), [1, 7, 9]);
        assert_eq!(pids(scan_except(&fake.root, 1)), [7, 9]);
        assert_eq!(pids(scan_except(&fake.root, 7)), [1, 9]);
        // A record over one page (no real stat is) still comes back whole.
        let long = format!(
            "12 ({}) S 1 12 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 1000 10 0\n",
            "n".repeat(9000)
        );
        fake.write("12/stat", long.as_bytes());
        let stat = read_stat(&fake.root, 12).found().unwrap();
        assert_eq!((stat.start_time, stat.comm.len()), (555, 9000));
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            if let Err(error) = fs::remove_dir_all(&self.root) {
                eprintln!("leaving {}: {error}", self.root.display());
            }
        }
    }

    fn split(anon_kb: u64, shmem_kb: u64) -> String {
        format!("VmRSS:\t 99999 kB\nRssAnon:\t {anon_kb} kB\nRssShmem:\t {shmem_kb} kB\n")
    }

    /// 1 ─┬─ 10 ─┬─ 11 (no status file: vanished between the scan and the read)
    ///    │      └─ 12 (VmRSS only)
    ///    └─ 13 (zombie: no memory lines)
    /// 20: garbage stat; 30: a stat naming another pid; 40: a child of 1 without any files.
    fn build_tree(fake: &FakeProc) {
        fake.process(1, 0, 5, Some(&split(100, 0)));
        fake.process(10, 1, 50, Some(&split(1000, 24)));
        fake.process(11, 10, 51, None);
        fake.process(12, 10, 52, Some("VmRSS:\t 300 kB\n"));
        fake.process(13, 1, 53, Some(""));
        fake.write("20/stat", b"garbage");
        fake.write(
            "30/stat",
            b"31 (liar) S 1 31 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0\n",
        );
        fs::create_dir_all(fake.root.join("40")).expect("empty pid dir");
        fake.write(
            "self/stat",
            b"1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n",
        );
        fake.write(
            "12ab/stat",
            b"12 (x) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n",
        );
        fake.write(
            "0/stat",
            b"0 (x) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n",
        );
        fake.write(
            "sys/kernel/random/boot_id",
            b"  9f3c2b1e-0000-4000-8000-000000000001\n",
        );
        fake.write("uptime", b"1.00 2.00\n");
    }

    #[test]
    fn scans_a_fake_proc_root() {
        let fake = FakeProc::new("scan");
        build_tree(&fake);
        let table = scan(&fake.root);
        let pids: Vec<i32> = table.iter().map(|stat| stat.pid).collect();
        assert_eq!(pids, vec![1, 10, 11, 12, 13]);
        assert_eq!(table.get(1).map(|stat| stat.comm.as_str()), Some("proc 10"));
        assert_eq!(table.get(1).map(|stat| stat.start_time), Some(50));
        assert_eq!(descendants(&table, 1), vec![10, 13, 11, 12]);
        assert_eq!(
            read_boot_id(&fake.root).as_deref(),
            Some("9f3c2b1e-0000-4000-8000-000000000001")
        );
    }

    #[test]
    fn reads_name_their_outcomes() {
        let fake = FakeProc::new("lookup");
        build_tree(&fake);
        let root = fake.root.as_path();
        assert_eq!(read_stat(root, 10).map(|stat| stat.ppid), Lookup::Found(1));
        assert_eq!(read_stat(root, 999), Lookup::Gone);
        assert_eq!(read_stat(root, 0), Lookup::Gone);
        assert_eq!(read_stat(root, -1), Lookup::Gone);
        assert_eq!(read_stat(root, 20), Lookup::Malformed);
        assert_eq!(
            read_stat(root, 30),
            Lookup::Malformed,
            "stat names another pid"
        );
        assert_eq!(
            read_stat(root, 40),
            Lookup::Gone,
            "directory without a stat file"
        );
        let memory = |pid| read_status_memory(root, pid);
        let reading = |bytes, source| Lookup::Found(Some(MemoryReading { bytes, source }));
        assert_eq!(memory(10), reading(1024 * 1024, MemorySource::RssAnonShmem));
        assert_eq!(memory(12), reading(300 * 1024, MemorySource::VmRss));
        assert_eq!(memory(13), Lookup::Found(None));
        assert_eq!(memory(11), Lookup::Gone, "missing status file");
        assert_eq!(memory(999), Lookup::Gone, "missing process");
        assert!(read_cmdline(root, 999).is_gone());
        assert!(read_environ_value(root, 999, "PATH").is_gone());
        assert_eq!(read_boot_id(&root.join("nowhere")), None);
        assert!(try_scan(&root.join("nowhere")).is_err());
        assert_eq!(scan(&root.join("nowhere")), Vec::new());
    }

    #[test]
    fn reads_cmdline_and_environ_files() {
        let fake = FakeProc::new("cmdline");
        fake.process(7, 1, 70, None);
        fake.write("7/cmdline", b"sleep\x0060\0");
        fake.write("7/environ", b"HOME=/\0FLEET_INIT_WORKER=web\0");
        fake.write("8/environ", b"");
        let root = fake.root.as_path();
        let argv = vec!["sleep".to_string(), "60".to_string()];
        assert_eq!(read_cmdline(root, 7), Lookup::Found(argv));
        let worker = read_environ_value(root, 7, "FLEET_INIT_WORKER");
        assert_eq!(worker, Lookup::Found(Some("web".to_string())));
        assert_eq!(read_environ_value(root, 7, "PATH"), Lookup::Found(None));
        assert_eq!(read_environ_value(root, 8, "PATH"), Lookup::Found(None));
        fake.write(
            "9/environ",
            b"FLEET_INIT_WORKER=api\0FLEET_INIT_GENERATION=abc\0",
        );
        let marks = Marks {
            generation: Some("abc".into()),
            worker: Some("api".into()),
        };
        assert_eq!(read_marks(root, 9), Lookup::Found(marks));
        assert_eq!(read_marks(root, 8), Lookup::Found(Marks::default()));
        assert!(read_marks(root, 999).is_gone());
    }

    #[test]
    fn tree_memory_sums_the_live_tree() {
        let fake = FakeProc::new("memory");
        build_tree(&fake);
        let table = scan(&fake.root);
        let tree = tree_memory(&fake.root, &table, 1);
        assert_eq!(
            tree,
            TreeMemory {
                total_bytes: (100 + 1024 + 300) * 1024,
                source: Some(MemorySource::VmRss),
                top: vec![(10, 1024 * 1024), (12, 300 * 1024), (1, 100 * 1024)],
                processes: 3,
            }
        );
        let subtree = tree_memory(&fake.root, &table, 13);
        assert_eq!(subtree, TreeMemory::default(), "a zombie gives no reading");
        let gone = tree_memory(&fake.root, &table, 999);
        assert_eq!(gone, TreeMemory::default());

        // Pid 12 exits and its pid goes to a newcomer: its memory is no longer the tree's.
        fake.process(12, 1, 9999, Some("VmRSS:\t 300 kB\n"));
        let tree = tree_memory(&fake.root, &table, 10);
        assert_eq!(tree.total_bytes, 1024 * 1024);
        assert_eq!(tree.source, Some(MemorySource::RssAnonShmem));
        assert_eq!(tree.processes, 1);
    }

    #[test]
    fn errnos_map_to_outcomes() {
        let cases = [
            (libc::ENOENT, Lookup::Gone),
            (libc::ESRCH, Lookup::Gone),
            (libc::EACCES, Lookup::Unreadable(Errno::EACCES)),
            (libc::EIO, Lookup::Unreadable(Errno::EIO)),
        ];
        for (raw, expected) in cases {
            let outcome: Lookup<()> = lookup_error(io::Error::from_raw_os_error(raw));
            assert_eq!(outcome, expected, "errno {raw}");
        }
        let other: Lookup<()> = lookup_error(io::Error::other("no errno"));
        assert_eq!(other, Lookup::Unreadable(Errno::UnknownErrno));
    }

    #[test]
    fn only_positive_decimal_names_are_pids() {
        let cases = [
            ("1", Some(1)),
            ("4242", Some(4242)),
            ("2147483647", Some(i32::MAX)),
            ("0", None),
            ("2147483648", None),
            ("self", None),
            ("12ab", None),
            ("+5", None),
            ("-5", None),
            ("", None),
        ];
        for (name, expected) in cases {
            assert_eq!(parse_pid_name(name), expected, "{name:?}");
        }
    }

    #[test]
    fn finds_itself_in_the_real_proc() {
        let proc_root = Path::new("/proc");
        let pid = i32::try_from(std::process::id()).expect("pid fits i32");
        let Lookup::Found(stat) = read_stat(proc_root, pid) else {
            panic!("own stat not found");
        };
        assert_eq!(stat.pid, pid);
        assert!(stat.ppid > 0, "ppid {}", stat.ppid);
        assert!(stat.start_time > 0);
        assert!(scan(proc_root).iter().any(|process| process.pid == pid));
        assert!(matches!(
            read_status_memory(proc_root, pid),
            Lookup::Found(Some(_))
        ));
        let argv = read_cmdline(proc_root, pid).found().unwrap_or_default();
        assert!(!argv.is_empty());
        // pid_max is at most 2^22, so this pid never exists.
        assert_eq!(read_stat(proc_root, i32::MAX), Lookup::Gone);
    }
}
