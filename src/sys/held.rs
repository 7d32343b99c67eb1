//! The fds the crate holds open, in every thread: so that a listing of this process's
//! own fd table (`list_own`) can leave them out exactly, whatever other threads open
//! and close meanwhile.
//!
//! Every fd the crate creates is a [`HeldFd`], made by [`hold`]: the fd is created
//! and recorded inside one "busy" section, and closed and forgotten inside another. A
//! listing of our own table is taken while no section runs and kept only if none ran
//! during it (a generation counter says), so the record it filters with is exactly
//! the set of the crate's fds in the table it read. An fd number closed by the crate
//! and reused by the caller's code is the caller's again in the same instant: both
//! the close and the forgetting happen before the section ends.
//!
//! A listing that keeps meeting sections (other threads busy with many fds) asks the
//! creators to wait (`PAUSERS`) until it has one quiet read. Lock-free: nothing here
//! can be held across a fork, and a forked child starts with no section running and
//! nothing recorded.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Once;

use super::{Errno, Fd};

/// How many fds the crate may hold at once across all threads: a question holds at
/// most a few dozen pins and a directory per thread.
const SLOTS: usize = 16_384;

/// Quiet-listing attempts before the listing asks creators to wait.
const PATIENCE: u32 = 64;

static HELD: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
/// One past the highest slot ever used: listings look no further.
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// Sections running now.
static BUSY: AtomicUsize = AtomicUsize::new(0);
/// Sections finished so far.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Listings asking creators to wait.
static PAUSERS: AtomicUsize = AtomicUsize::new(0);
static ATFORK: Once = Once::new();

/// An fd the crate owns, recorded as held from its creation to its close.
#[derive(Debug)]
pub struct HeldFd {
    fd: Option<OwnedFd>,
}

impl AsRawFd for HeldFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }
}

impl Drop for HeldFd {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            section(|| {
                let number = fd.as_raw_fd();
                drop(fd);
                forget(number);
            });
        }
    }
}

/// Runs `work` as one busy section: listings of our own table wait for it or retry.
fn section<T>(work: impl FnOnce() -> T) -> T {
    ATFORK.call_once(|| super::atfork_child(reset_in_child));
    while PAUSERS.load(SeqCst) > 0 {
        std::thread::yield_now();
    }
    BUSY.fetch_add(1, SeqCst);
    let out = work();
    GENERATION.fetch_add(1, SeqCst);
    BUSY.fetch_sub(1, SeqCst);
    out
}

/// A forked child starts with no section running and nothing held: the fds other
/// threads held at the fork are open in the child, but no code of the child owns
/// them, so they are the child's like any other (and closing them must not leave
/// their numbers recorded). A `HeldFd` the forking thread still drops forgets
/// nothing then.
extern "C" fn reset_in_child() {
    let high = HIGH.swap(0, SeqCst);
    for slot in &HELD[..high.min(SLOTS)] {
        slot.store(-1, SeqCst);
    }
    BUSY.store(0, SeqCst);
    PAUSERS.store(0, SeqCst);
}

/// Creates an fd with `create` and records it as held; EMFILE if the record is full
/// (the fd is closed again, never left unrecorded).
pub fn hold(create: impl FnOnce() -> Result<OwnedFd, Errno>) -> Result<HeldFd, Errno> {
    section(|| {
        let fd = create()?;
        let number = fd.as_raw_fd();
        for (i, slot) in HELD.iter().enumerate() {
            if slot.compare_exchange(-1, number, SeqCst, SeqCst).is_ok() {
                HIGH.fetch_max(i + 1, SeqCst);
                return Ok(HeldFd { fd: Some(fd) });
            }
        }
        Err(Errno(libc::EMFILE))
    })
}

fn forget(number: RawFd) {
    let high = HIGH.load(SeqCst);
    if let Some(slot) = HELD[..high].iter().find(|s| s.load(SeqCst) == number) {
        slot.store(-1, SeqCst);
    }
}

fn held_now() -> Vec<Fd> {
    let high = HIGH.load(SeqCst);
    HELD[..high]
        .iter()
        .map(|s| s.load(SeqCst))
        .filter(|&fd| fd >= 0)
        .collect()
}

/// `read(dir)`, a listing of an fd table that is this process's own, without any fd
/// the crate holds in any thread: read while no fd of the crate is created or
/// closed, again until one read was quiet throughout.
pub fn list_own(
    dir: &HeldFd,
    mut read: impl FnMut(&HeldFd) -> Result<Vec<Fd>, Errno>,
) -> Result<Vec<Fd>, Errno> {
    let mut attempt = 0;
    loop {
        let paused = attempt >= PATIENCE;
        if paused {
            PAUSERS.fetch_add(1, SeqCst);
        }
        while BUSY.load(SeqCst) > 0 {
            std::thread::yield_now();
        }
        let before = GENERATION.load(SeqCst);
        let listed = read(dir);
        let held = held_now();
        let quiet = BUSY.load(SeqCst) == 0 && GENERATION.load(SeqCst) == before;
        if paused {
            PAUSERS.fetch_sub(1, SeqCst);
        }
        let listed = listed?;
        if quiet {
            return Ok(listed.into_iter().filter(|fd| !held.contains(fd)).collect());
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_fd_is_recorded_until_dropped() {
        // Test threads run side by side and fds are handed out lowest first: at a far
        // number, no other test's fd takes ours between the drop and the last check.
        let far = super::super::soft_fd_limit().map_or(500, |limit| (limit / 2).min(500));
        let far = i32::try_from(far).unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = super::super::files::dup_cloexec_from(file.as_raw_fd(), far).unwrap();
        assert!(fd.as_raw_fd() >= far);
        let number = fd.as_raw_fd();
        assert!(held_now().contains(&number));
        drop(fd);
        assert!(!held_now().contains(&number));
    }
}
