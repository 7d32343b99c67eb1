//! Children holding many dups of a few files, for the file oracle's and the shards'
//! tests: enough refs for several chunks of `pool::map_chunks` and several shards.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{FileOptions, FileRef};
use crate::engine::{GroupOrder, Missing};
use crate::sys::{testing, Fd, Pid};

/// Dups each child holds: enough refs for several chunks of `map_chunks`.
pub(super) const COPIES: usize = 600;
/// Where the children's dups start (fd numbers free in the test process).
pub(super) const BASE: Fd = 3000;

pub(super) fn opts(missing: Missing) -> FileOptions {
    FileOptions {
        order: GroupOrder::Fd,
        missing,
        allow_pidfd_getfd: false,
        report_undecided: false,
    }
}

/// Two files and a pipe: dups of them fall into three buckets of distinct keys.
pub(super) fn sources() -> Vec<OwnedFd> {
    let (r, w) = std::io::pipe().unwrap();
    vec![
        File::open("/dev/null").unwrap().into(),
        File::open("/proc/self/exe").unwrap().into(),
        r.into(),
        w.into(),
    ]
}

/// A child of the test, killed and reaped when dropped, with its control pipe.
pub(super) struct Child(pub(super) Pid, pub(super) [Fd; 2]);

impl Child {
    pub(super) fn new(fds: &[OwnedFd]) -> Child {
        let raw: Vec<Fd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let (pid, pipe) = testing::fork_closable(&raw, COPIES, BASE);
        Child(pid, pipe)
    }

    pub(super) fn refs(&self) -> Vec<FileRef> {
        (BASE..BASE + COPIES as Fd).map(|fd| (self.0, fd)).collect()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        testing::close_pipe(self.1);
        testing::kill(self.0);
        testing::reap(self.0);
    }
}
