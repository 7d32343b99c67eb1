//! Children for the crate's tests (never in a build): forked, holding many fds, killed
//! and reaped on demand.

use super::{Fd, Pid};

/// Forks a child holding `copies` duplicates of `fds` (round robin), and returns
/// once all are open; it then waits to be killed.
///
/// # Panics
/// When `fds` is empty or the child cannot report back.
pub fn fork_holding(fds: &[Fd], copies: usize) -> Pid {
    assert!(!fds.is_empty());
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two ints into the array.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only makes async-signal-safe syscalls, allocates nothing
    // and never returns.
    let child = unsafe { libc::fork() };
    if child == 0 {
        for i in 0..copies {
            // SAFETY: fcntl on integers only.
            unsafe { libc::fcntl(fds[i % fds.len()], libc::F_DUPFD, 0) };
        }
        // SAFETY: writes one byte from a live buffer, then waits for the kill.
        unsafe {
            libc::write(p[1], b"x".as_ptr().cast(), 1);
            loop {
                libc::pause();
            }
        }
    }
    let mut b = [0u8; 1];
    // SAFETY: closes our copy of the write end and reads one byte into `b`.
    unsafe {
        libc::close(p[1]);
        assert_eq!(libc::read(p[0], b.as_mut_ptr().cast(), 1), 1);
        libc::close(p[0]);
    }
    child
}

/// Forks a child holding `copies` duplicates of `fds` (round robin) at fd numbers
/// `base..base + copies`; returns once all are open, with a pipe to it: each byte
/// written there makes it close the next of those fds, from `base` up, and answer
/// one byte back (`close_next` sends the byte and waits for the answer).
///
/// # Panics
/// When `fds` is empty or the child cannot report back.
pub fn fork_closable(fds: &[Fd], copies: usize, base: Fd) -> (Pid, [Fd; 2]) {
    assert!(!fds.is_empty());
    let (mut to, mut from) = ([0; 2], [0; 2]);
    // SAFETY: pipe2 writes two ints into each array.
    unsafe {
        assert_eq!(libc::pipe2(to.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(from.as_mut_ptr(), libc::O_CLOEXEC), 0);
    }
    // SAFETY: the child only makes async-signal-safe syscalls, allocates nothing
    // and never returns.
    let child = unsafe { libc::fork() };
    if child == 0 {
        for i in 0..copies {
            // SAFETY: fcntl on integers only.
            unsafe { libc::fcntl(fds[i % fds.len()], libc::F_DUPFD, base) };
        }
        let mut next = base;
        let mut b = [0u8; 1];
        // SAFETY: reads and writes one byte through live buffers; closes its own
        // fds; exits when the test's end of the pipe closes.
        unsafe {
            libc::write(from[1], b"x".as_ptr().cast(), 1);
            while libc::read(to[0], b.as_mut_ptr().cast(), 1) == 1 {
                libc::close(next);
                next += 1;
                libc::write(from[1], b"x".as_ptr().cast(), 1);
            }
            loop {
                libc::pause();
            }
        }
    }
    let mut b = [0u8; 1];
    // SAFETY: closes the child's ends in this process and reads one byte into `b`.
    unsafe {
        libc::close(to[0]);
        libc::close(from[1]);
        assert_eq!(libc::read(from[0], b.as_mut_ptr().cast(), 1), 1);
    }
    (child, [to[1], from[0]])
}

/// Makes a `fork_closable` child close its next fd, and waits until it has.
///
/// # Panics
/// When the child does not answer.
pub fn close_next(pipe: [Fd; 2]) {
    let mut b = [0u8; 1];
    // SAFETY: writes and reads one byte through live buffers on our pipe ends.
    unsafe {
        assert_eq!(libc::write(pipe[0], b"x".as_ptr().cast(), 1), 1);
        assert_eq!(libc::read(pipe[1], b.as_mut_ptr().cast(), 1), 1);
    }
}

/// Closes the test's ends of a `fork_closable` pipe.
pub fn close_pipe(pipe: [Fd; 2]) {
    // SAFETY: closes two fds this test opened and no longer uses.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
}

pub fn kill(pid: Pid) {
    // SAFETY: signals a child of this test, by its pid, before it is reaped.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Waits for a child of this test to end.
pub fn reap(pid: Pid) {
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a live int.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
}

/// Waits (with a deadline) until a killed child shows as a zombie.
pub fn await_zombie(pid: Pid) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if super::is_zombie(pid) {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// A child of this test, killed and reaped when dropped: on every path, a failed
/// assertion's unwinding included.
pub struct KilledOnDrop(pub Pid);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        kill(self.0);
        reap(self.0);
    }
}

/// Forks a child that enters a new network namespace (unshare CLONE_NEWNET) and makes
/// a stream socketpair there; returns once it has, with the inodes of both ends (0s
/// when the child could not), then waits to be killed.
///
/// # Panics
/// When the child cannot report back.
pub fn fork_in_new_netns() -> (KilledOnDrop, [u64; 2]) {
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two ints into the array.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only makes async-signal-safe syscalls, allocates nothing
    // and never returns.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let mut inodes = [0u64; 2];
        let mut pair = [-1; 2];
        // SAFETY: integers and live, writable buffers only (the pair array, two
        // stat structs that are read only after fstat succeeded); then writes the
        // inodes from a live buffer and waits for the kill.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) == 0
                && libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) == 0
            {
                for (ino, fd) in inodes.iter_mut().zip(pair) {
                    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
                    if libc::fstat(fd, st.as_mut_ptr()) == 0 {
                        *ino = st.assume_init().st_ino;
                    }
                }
            }
            libc::write(p[1], inodes.as_ptr().cast(), std::mem::size_of_val(&inodes));
            loop {
                libc::pause();
            }
        }
    }
    let guard = KilledOnDrop(child);
    let mut inodes = [0u64; 2];
    let size = std::mem::size_of_val(&inodes);
    // SAFETY: closes our copy of the write end and reads the inodes into a live,
    // writable array of the size passed.
    unsafe {
        libc::close(p[1]);
        let n = libc::read(p[0], inodes.as_mut_ptr().cast(), size);
        libc::close(p[0]);
        assert_eq!(n, size as isize);
    }
    (guard, inodes)
}

/// Forks a child that enters a new mount namespace (unshare CLONE_NEWNS, every mount
/// made private) keeping the fds it inherited; returns once it has, with whether it
/// could, then waits to be killed.
///
/// # Panics
/// When the child cannot report back.
pub fn fork_in_new_mntns() -> (KilledOnDrop, bool) {
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two ints into the array.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only makes async-signal-safe syscalls, allocates nothing
    // and never returns.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: integers and NUL-terminated literals only; then writes one byte
        // from a live buffer and waits for the kill.
        unsafe {
            let ok = libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0;
            libc::write(p[1], [u8::from(ok)].as_ptr().cast(), 1);
            loop {
                libc::pause();
            }
        }
    }
    let guard = KilledOnDrop(child);
    let mut b = [0u8; 1];
    // SAFETY: closes our copy of the write end and reads one byte into `b`.
    unsafe {
        libc::close(p[1]);
        assert_eq!(libc::read(p[0], b.as_mut_ptr().cast(), 1), 1);
        libc::close(p[0]);
    }
    (guard, b[0] == 1)
}

/// Clears the calling thread's effective capabilities (capset is per thread; the
/// permitted set stays), so that what needs one fails with EPERM; threads it spawns
/// inherit the cleared set. Call it in a thread of the test's own.
///
/// # Panics
/// When capget or capset fails.
pub fn drop_effective_caps() {
    // struct __user_cap_header_struct and two __user_cap_data_struct (linux/capability.h).
    let mut header: [u32; 2] = [0x2008_0522, 0]; // _LINUX_CAPABILITY_VERSION_3, this thread
    let mut data = [[0u32; 3]; 2]; // effective, permitted, inheritable
                                   // SAFETY: the header and data arrays are live, writable and of the layout and size
                                   // the version-3 call reads and writes; data is read only after capget succeeded.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, header.as_mut_ptr(), data.as_mut_ptr()),
            0
        );
        data[0][0] = 0;
        data[1][0] = 0;
        assert_eq!(
            libc::syscall(libc::SYS_capset, header.as_mut_ptr(), data.as_ptr()),
            0
        );
    }
}

/// Installs a seccomp filter on the calling thread (and threads it spawns later)
/// failing syscall `nr` with `errno`: call it in a thread of the test's own, which
/// keeps the filter (and no_new_privs) until it ends.
///
/// # Panics
/// When the filter cannot be installed.
pub fn fail_syscall_in_this_thread(nr: libc::c_long, errno: i32) {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let filter = [
        // Load seccomp_data.nr (offset 0); another architecture's numbers are not
        // checked: this filter lives in a test thread only.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: nr as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: integers, then a pointer to a live sock_fprog whose filter array lives
    // for the call (the kernel copies it). Affects the calling thread only.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const prog
            ),
            0
        );
    }
}
