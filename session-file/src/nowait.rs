//! Reads that never wait for the disk, so they can run inline on the async worker.
//!
//! A session read is `open`, `read`, `close` of a small file. When the file's name and its pages
//! are in the kernel's caches (the usual case for a session that is in use) that takes a few
//! microseconds of CPU, less than a hop onto tokio's blocking pool and back. When they are not,
//! `open` or `read` would wait for the disk, which must not happen on an async worker thread.
//!
//! On Linux the kernel says which case it is, without waiting:
//!
//! - `openat2` with `RESOLVE_CACHED` (Linux 5.12) resolves the path from the dentry cache only and
//!   fails with `EAGAIN` when a lookup would need I/O (a cached negative entry is a reliable
//!   `ENOENT`); `O_NOATIME` keeps the read from dirtying the inode (no journal work);
//! - `preadv2` with `RWF_NOWAIT` (Linux 4.14) copies what is in the page cache and fails with
//!   `EAGAIN` instead of starting a disk read.
//!
//! [`read`] tries exactly that and returns [`Cached::Wait`] the moment anything would wait (or is
//! unsupported, or fails: the blocking path reports errors with their paths), handing over the
//! open file and the bytes read so far; [`finish`] completes the read on the blocking pool. A file
//! larger than [`INLINE_MAX`] is finished there too, so the inline part copies at most that much.
//! On other Unix systems [`read`] always answers [`Cached::Wait`] (every read takes the hop).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use session_core::driver::Result;

use crate::disk::io_err;

/// The inline part reads at most this many bytes of a file; larger files finish on the pool.
pub(crate) const INLINE_MAX: usize = 256 * 1024;

/// First buffer size: a session of this workload is about 1 KB, and one `read` into a buffer
/// that is not full plus one that returns 0 (end of file) is the whole read.
const FIRST_BUFFER: usize = 4096;

/// A read begun without waiting that has to continue on the blocking pool.
#[derive(Debug)]
pub(crate) struct Partial {
    /// The open file: the rest is read from this file, not from whatever is at the path now.
    file: File,
    /// What was read so far (from offset 0).
    bytes: Vec<u8>,
}

/// What [`read`] achieved without waiting.
#[derive(Debug)]
pub(crate) enum Cached {
    /// The whole file, or `None` if it does not exist.
    Done(Option<Vec<u8>>),
    /// Finish with [`finish`] on the blocking pool (from the open file if there is one).
    Wait(Option<Partial>),
}

/// Switches the inline path off for good when the kernel lacks `openat2` (before 5.6, or
/// filtered by seccomp) or `RESOLVE_CACHED` (before 5.12), so such systems pay one failed call
/// per store, not one per read.
#[derive(Debug)]
pub(crate) struct Switch(AtomicBool);

impl Default for Switch {
    fn default() -> Self {
        Switch(AtomicBool::new(cfg!(target_os = "linux")))
    }
}

impl Switch {
    #[cfg(target_os = "linux")]
    fn on(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(target_os = "linux")]
    fn off(&self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads the whole file at `path` if that needs no disk I/O; never blocks on the disk.
#[cfg(target_os = "linux")]
pub(crate) fn read(path: &Path, switch: &Switch) -> Cached {
    use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat2};
    use rustix::io::{Errno, ReadWriteFlags, preadv2};

    if !switch.on() {
        return Cached::Wait(None);
    }
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOATIME;
    let file = match openat2(CWD, path, flags, Mode::empty(), ResolveFlags::CACHED) {
        Ok(fd) => File::from(fd),
        Err(Errno::NOENT) => return Cached::Done(None),
        Err(Errno::NOSYS | Errno::INVAL) => {
            switch.off();
            return Cached::Wait(None);
        }
        // EAGAIN (a lookup would need I/O), EPERM (O_NOATIME on a file we do not own), and
        // every real error: the blocking path opens it the ordinary way and reports errors.
        Err(_) => return Cached::Wait(None),
    };
    let mut bytes = vec![0; FIRST_BUFFER];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            if len >= INLINE_MAX {
                bytes.truncate(len);
                return Cached::Wait(Some(Partial { file, bytes }));
            }
            bytes.resize(len * 2, 0);
        }
        let buf = &mut [io::IoSliceMut::new(&mut bytes[len..])];
        match preadv2(&file, buf, len as u64, ReadWriteFlags::NOWAIT) {
            // With RWF_NOWAIT, 0 is the end of the file ("nothing cached" is EAGAIN).
            Ok(0) => {
                bytes.truncate(len);
                return Cached::Done(Some(bytes));
            }
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            // EAGAIN (pages not cached), EOPNOTSUPP (a file system without NOWAIT reads),
            // errors: the pool reads the rest of this file the ordinary way.
            Err(_) => {
                bytes.truncate(len);
                return Cached::Wait(Some(Partial { file, bytes }));
            }
        }
    }
}

/// Without Linux's non-blocking open and read every read takes the blocking pool.
#[cfg(not(target_os = "linux"))]
pub(crate) fn read(_path: &Path, _switch: &Switch) -> Cached {
    Cached::Wait(None)
}

/// Finishes a read [`read`] could not complete (blocking: call it on the blocking pool).
pub(crate) fn finish(path: &Path, partial: Option<Partial>) -> Result<Option<Vec<u8>>> {
    match partial {
        None => read_opt(path),
        Some(Partial { file, mut bytes }) => {
            read_rest(&file, path, &mut bytes)?;
            Ok(Some(bytes))
        }
    }
}

/// Reads a whole file (blocking); `None` if it does not exist. `open`, `read` until the end,
/// `close`: no `stat` for a size hint (a session file fits the first buffer).
pub(crate) fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("reading", path, e)),
    };
    let mut bytes = Vec::with_capacity(FIRST_BUFFER);
    read_rest(&file, path, &mut bytes)?;
    Ok(Some(bytes))
}

/// Appends the file's bytes from offset `bytes.len()` to its end (blocking).
fn read_rest(file: &File, path: &Path, bytes: &mut Vec<u8>) -> Result<()> {
    let mut len = bytes.len();
    loop {
        if len == bytes.capacity() {
            bytes.reserve(len.max(FIRST_BUFFER));
        }
        bytes.resize(bytes.capacity(), 0);
        match file.read_at(&mut bytes[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                bytes.truncate(len);
                return Err(io_err("reading", path, e));
            }
        }
    }
    bytes.truncate(len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(path: &Path, switch: &Switch) -> Option<Vec<u8>> {
        match read(path, switch) {
            Cached::Done(bytes) => bytes,
            Cached::Wait(partial) => finish(path, partial).expect("finish"),
        }
    }

    #[test]
    fn reads_whole_files_of_any_size_and_missing_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let switch = Switch::default();
        assert_eq!(whole(&dir.path().join("missing"), &switch), None);
        assert_eq!(read_opt(&dir.path().join("missing")).expect("read"), None);
        for size in [
            0,
            1,
            FIRST_BUFFER - 1,
            FIRST_BUFFER,
            FIRST_BUFFER + 1,
            INLINE_MAX,
            INLINE_MAX + 3,
            3 * INLINE_MAX,
        ] {
            let path = dir.path().join(format!("f{size}"));
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            std::fs::write(&path, &data).expect("write");
            assert_eq!(whole(&path, &switch).as_deref(), Some(&data[..]), "{size}");
            assert_eq!(read_opt(&path).expect("read").as_deref(), Some(&data[..]));
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_cached_small_file_is_read_inline_and_a_large_one_is_handed_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let switch = Switch::default();
        let small = dir.path().join("small");
        std::fs::write(&small, b"hello").expect("write");
        // Just written: its name and page are cached.
        let first = read(&small, &switch);
        if !switch.on() {
            return; // a kernel without openat2 / RESOLVE_CACHED: nothing inline to test
        }
        assert!(matches!(first, Cached::Done(Some(b)) if b == b"hello"));
        // A name never looked up is not in the dentry cache: the pool looks it up, and from
        // then on the cached negative entry answers inline.
        let missing = dir.path().join("missing");
        if let Cached::Wait(partial) = read(&missing, &switch) {
            assert!(partial.is_none());
            assert_eq!(finish(&missing, partial).expect("finish"), None);
        }
        assert!(matches!(read(&missing, &switch), Cached::Done(None)));
        let large = dir.path().join("large");
        std::fs::write(&large, vec![7u8; INLINE_MAX + 1]).expect("write");
        match read(&large, &switch) {
            Cached::Wait(Some(p)) => assert_eq!(p.bytes.len(), INLINE_MAX),
            other => panic!("expected a hand-over, got {other:?}"),
        }
    }

    #[test]
    fn a_switched_off_store_always_takes_the_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").expect("write");
        let switch = Switch(AtomicBool::new(false));
        assert!(matches!(read(&path, &switch), Cached::Wait(None)));
        assert_eq!(whole(&path, &switch).as_deref(), Some(&b"x"[..]));
    }
}
