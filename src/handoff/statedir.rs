//! The state dir, opened once (`O_NOFOLLOW`, owner and mode checked) and reached only through
//! its descriptor, so nobody who can write where it lives can make PID 1 follow a link, hang on
//! a FIFO, or write through a planted file.
//!
//! Files are replaced atomically: a temp file under a random name created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, then `renameat`. No fsync: a handoff file is only acted on by a
//! reader of the same boot, which sees the page cache; after a power loss the boot id differs
//! and the file is only cleaned up.

use super::generation::random_bytes;
use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::{self, Mode};
use nix::unistd::{self, UnlinkatFlags};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A file bigger than this is not something fleet-init wrote.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The suffix of every temp file; what precedes it is `.{purpose}.{random}`.
pub const TEMP_SUFFIX: &str = ".tmp";

pub struct StateDir {
    path: PathBuf,
    fd: OwnedFd,
    euid: u32,
}

/// Why a file in the state dir (or the dir itself) is not used.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Someone else could have put it there: never read, never written through.
    Refused(String),
    /// It could not be read or opened at all.
    Failed(Errno),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Refused(reason) => write!(f, "{reason}"),
            Refusal::Failed(errno) => write!(f, "{}", errno.desc()),
        }
    }
}

impl StateDir {
    /// Creates the dir (0700) when `create` and it is missing, then opens it. Refused when the
    /// last component is a symlink or not a directory, is not owned by fleet-init's user, or is
    /// writable by group or others. Its parents are the administrator's business.
    pub fn open(path: &Path, create: bool) -> Result<StateDir, Refusal> {
        if create {
            create_missing(path)?;
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match fcntl::open(path, flags, Mode::empty()) {
            Ok(fd) => fd,
            // With O_DIRECTORY a symlink gives ENOTDIR rather than ELOOP: look at what it is.
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
                let what = if is_link {
                    "it is a symlink"
                } else {
                    "it is not a directory"
                };
                return Err(Refusal::Refused(what.into()));
            }
            Err(errno) => return Err(Refusal::Failed(errno)),
        };
        let euid = unistd::geteuid().as_raw();
        let stat = stat::fstat(&fd).map_err(Refusal::Failed)?;
        if stat.st_uid != euid {
            return Err(Refusal::Refused(format!(
                "owned by uid {}, not fleet-init's uid {euid}",
                stat.st_uid
            )));
        }
        let mode = stat.st_mode & 0o777;
        if mode & 0o022 != 0 {
            return Err(Refusal::Refused(format!(
                "writable by group or others (mode {mode:03o})"
            )));
        }
        Ok(StateDir {
            path: path.to_path_buf(),
            fd,
            euid,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn display_path(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }

    /// The dir was removed while open (its link count is 0): nothing can be created in it.
    pub fn is_deleted(&self) -> bool {
        stat::fstat(&self.fd).is_ok_and(|stat| stat.st_nlink == 0)
    }

    /// The names in the dir, sorted; names that are not UTF-8 are not ours. Read through the
    /// dir's own descriptor, rewound: two system calls and no allocation but the names, on
    /// every start's way to the first fork.
    pub fn names(&self) -> Result<Vec<String>, Errno> {
        nix::unistd::lseek(&self.fd, 0, nix::unistd::Whence::SeekSet)?;
        let mut names = Vec::new();
        crate::procscan::for_each_dir_entry(self.fd.as_fd(), |name| {
            if let Ok(name) = std::str::from_utf8(name) {
                if name != "." && name != ".." {
                    names.push(name.to_string());
                }
            }
        })
        .map_err(|error| Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO)))?;
        names.sort_unstable();
        Ok(names)
    }

    /// The bytes of `name` if it is a regular file owned by fleet-init's user and writable by
    /// nobody else. Opened non-blocking, so a FIFO planted there cannot hang PID 1, and checked
    /// on the descriptor, so it cannot be swapped between the check and the read.
    pub fn read(&self, name: &str) -> Result<Vec<u8>, Refusal> {
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = match fcntl::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => return Err(Refusal::Refused("a symlink".into())),
            Err(errno) => return Err(Refusal::Failed(errno)),
        };
        let stat = stat::fstat(&fd).map_err(Refusal::Failed)?;
        self.check_trusted(&stat)?;
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| Refusal::Failed(Errno::try_from(error).unwrap_or(Errno::EIO)))?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_FILE_BYTES {
            return Err(Refusal::Refused(format!(
                "larger than {MAX_FILE_BYTES} bytes"
            )));
        }
        Ok(bytes)
    }

    fn check_trusted(&self, stat: &nix::sys::stat::FileStat) -> Result<(), Refusal> {
        let kind = stat.st_mode & libc::S_IFMT;
        if kind != libc::S_IFREG {
            return Err(Refusal::Refused("not a regular file".into()));
        }
        if stat.st_uid != self.euid {
            return Err(Refusal::Refused(format!(
                "owned by uid {}, not fleet-init's uid {}",
                stat.st_uid, self.euid
            )));
        }
        let mode = stat.st_mode & 0o777;
        if mode & 0o022 != 0 {
            return Err(Refusal::Refused(format!(
                "writable by group or others (mode {mode:03o})"
            )));
        }
        if stat.st_nlink > 1 {
            return Err(Refusal::Refused(format!(
                "has {} hard links: another name can change it",
                stat.st_nlink
            )));
        }
        Ok(())
    }

    /// Replaces `name` with `bytes` (mode 0600): a fresh temp file `.{name}.{random}.tmp`,
    /// then a rename over `name`. Whatever was at `name` (a link, a FIFO, a stranger's file)
    /// is replaced, never written through. On failure the old file is untouched and the temp
    /// file is removed.
    pub fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), Errno> {
        let temp = temp_name(name);
        let flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_NOFOLLOW
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = fcntl::openat(
            &self.fd,
            temp.as_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )?;
        let mut file = std::fs::File::from(fd);
        let written = file
            .write_all(bytes)
            .map_err(|error| Errno::try_from(error).unwrap_or(Errno::EIO));
        drop(file);
        let result =
            written.and_then(|()| fcntl::renameat(&self.fd, temp.as_str(), &self.fd, name));
        if result.is_err() {
            self.remove_quietly(&temp);
        }
        result
    }

    /// Removes `name`; a missing file is already removed.
    pub fn remove(&self, name: &str) -> Result<(), Errno> {
        match unistd::unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(errno),
        }
    }

    fn remove_quietly(&self, name: &str) {
        if let Err(errno) = self.remove(name) {
            log::debug!("cannot remove {}: {errno}", self.display_path(name));
        }
    }

    /// Moves `name` to `{name}.{suffix}` without replacing anything already there; returns the
    /// new name. A corrupt file is kept for a human to look at, out of the next reap's way.
    pub fn move_aside(&self, name: &str, suffix: &str) -> Result<String, Errno> {
        let target = format!("{name}.{suffix}");
        match rename_noreplace(&self.fd, name, &target) {
            Ok(()) => Ok(target),
            // A file system without RENAME_NOREPLACE: the name carries a random part anyway.
            Err(Errno::EINVAL) => {
                fcntl::renameat(&self.fd, name, &self.fd, target.as_str()).map(|()| target)
            }
            Err(errno) => Err(errno),
        }
    }

    /// The descriptor, for tests and for checks that need it.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// renameat2(RENAME_NOREPLACE) within `dir`, as a system call: nix has no `renameat2` for
/// musl, whose libc gained the wrapper only in 1.2.5.
fn rename_noreplace(dir: &OwnedFd, from: &str, to: &str) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let from = std::ffi::CString::new(from).map_err(|_| Errno::EINVAL)?;
    let to = std::ffi::CString::new(to).map_err(|_| Errno::EINVAL)?;
    /// linux/fs.h.
    const RENAME_NOREPLACE: libc::c_uint = 1;
    let fd = dir.as_raw_fd();
    // SAFETY: renameat2 with a directory descriptor of ours and two NUL-terminated names that
    // live across the call; it reads them and writes nothing of ours.
    let result = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            fd,
            from.as_ptr(),
            fd,
            to.as_ptr(),
            RENAME_NOREPLACE,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// Creates the last component with mode 0700 and any missing parents with the usual 0755.
fn create_missing(path: &Path) -> Result<(), Refusal> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(error) = std::fs::create_dir_all(parent) {
            let errno = Errno::try_from(error).unwrap_or(Errno::EIO);
            return Err(Refusal::Failed(errno));
        }
    }
    match unistd::mkdir(path, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(errno) => Err(Refusal::Failed(errno)),
    }
}

/// `.{name}.{32 random hex digits}.tmp`: nobody can plant a file at a name nobody can guess,
/// and `O_EXCL` refuses one anyway.
fn temp_name(name: &str) -> String {
    let random: String = random_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!(".{name}.{random}{TEMP_SUFFIX}")
}

/// The handoff file name a temp file was going to become, if `name` is a temp file.
pub fn temp_target(name: &str) -> Option<&str> {
    let inner = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let (target, random) = inner.rsplit_once('.')?;
    (random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit())).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fresh(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fleet-statedir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn names_are_listed_whole_every_time_through_the_one_descriptor() {
        // The listing rewinds the dir's descriptor: a second one sees what the first saw, plus
        // what was made since, and a dir of more entries than one getdents64 buffer holds.
        let path = fresh("names");
        let dir = StateDir::open(&path.join("state"), true).unwrap();
        assert_eq!(dir.names().unwrap(), Vec::<String>::new());
        let many: Vec<String> = (0..300).map(|n| format!("handoff-{n:03}.json")).collect();
        for name in &many {
            dir.replace(name, b"{}").unwrap();
        }
        assert_eq!(dir.names().unwrap(), many);
        dir.replace("zz.json", b"{}").unwrap();
        let again = dir.names().unwrap();
        assert_eq!(again.len(), 301);
        assert_eq!(again.last().map(String::as_str), Some("zz.json"));
        let _ = std::fs::remove_dir_all(&path);
    }

    #[test]
    fn creates_replaces_removes_and_moves_aside() {
        let path = fresh("life");
        let dir = StateDir::open(&path.join("state"), true).unwrap();
        let mode = std::fs::metadata(path.join("state"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        dir.replace("f.json", b"one").unwrap();
        dir.replace("f.json", b"two").unwrap();
        assert_eq!(dir.read("f.json").unwrap(), b"two");
        assert_eq!(dir.names().unwrap(), ["f.json"], "no temp file left");
        let moved = dir.move_aside("f.json", "corrupt-1").unwrap();
        assert_eq!(moved, "f.json.corrupt-1");
        dir.replace("f.json", b"three").unwrap();
        assert_eq!(
            dir.move_aside("f.json", "corrupt-1"),
            Err(Errno::EEXIST),
            "never replaces what was moved aside before"
        );
        dir.remove("f.json").unwrap();
        dir.remove("f.json").unwrap();
        assert_eq!(dir.names().unwrap(), ["f.json.corrupt-1"]);
        std::fs::remove_dir_all(path.join("state")).unwrap();
        assert!(dir.is_deleted());
        assert_eq!(dir.replace("g.json", b"x"), Err(Errno::ENOENT));
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn refuses_dirs_someone_else_controls() {
        let path = fresh("refuse");
        std::fs::create_dir_all(path.join("real")).unwrap();
        std::os::unix::fs::symlink(path.join("real"), path.join("link")).unwrap();
        assert_eq!(
            StateDir::open(&path.join("link"), true).err(),
            Some(Refusal::Refused("it is a symlink".into()))
        );
        std::fs::set_permissions(path.join("real"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        assert_eq!(
            StateDir::open(&path.join("real"), true).err(),
            Some(Refusal::Refused(
                "writable by group or others (mode 777)".into()
            ))
        );
        let mode = std::fs::metadata(path.join("real"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o777, "never chmods what it refuses");
        std::fs::write(path.join("file"), b"").unwrap();
        assert_eq!(
            StateDir::open(&path.join("file"), true).err(),
            Some(Refusal::Refused("it is not a directory".into()))
        );
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn planted_files_are_refused_and_never_written_through() {
        let path = fresh("planted");
        let dir = StateDir::open(&path, true).unwrap();
        let outside = std::env::temp_dir().join(format!("fleet-outside-{}", std::process::id()));
        std::fs::write(&outside, b"precious").unwrap();
        std::os::unix::fs::symlink(&outside, path.join("link.json")).unwrap();
        std::fs::hard_link(&outside, path.join("hard.json")).unwrap();
        nix::unistd::mkfifo(&path.join("fifo.json"), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(path.join("open.json"), b"x").unwrap();
        std::fs::set_permissions(
            path.join("open.json"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let refused = |name: &str| match dir.read(name) {
            Err(Refusal::Refused(reason)) => reason,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(refused("link.json"), "a symlink");
        assert_eq!(refused("fifo.json"), "not a regular file");
        assert_eq!(
            refused("hard.json"),
            "has 2 hard links: another name can change it"
        );
        assert_eq!(
            refused("open.json"),
            "writable by group or others (mode 666)"
        );
        for name in ["link.json", "hard.json", "fifo.json", "open.json"] {
            dir.replace(name, b"mine").unwrap();
            assert_eq!(dir.read(name).unwrap(), b"mine", "{name} replaced");
        }
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        std::fs::remove_file(&outside).unwrap();
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn temp_names_are_unguessable_and_recognised() {
        let a = temp_name("handoff-x.json");
        let b = temp_name("handoff-x.json");
        assert_ne!(a, b);
        assert_eq!(temp_target(&a), Some("handoff-x.json"));
        assert_eq!(temp_target(".handoff-x.json.tmp"), None);
        assert_eq!(temp_target("handoff-x.json"), None);
    }
}
