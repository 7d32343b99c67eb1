//! kcmp_rs: typed, batched access to Linux kcmp(2).
//!
//! Rooms, lowest first; each may use only the ones listed before it (the engine uses
//! none of them):
//! * `sys`: the syscall boundary, the only module with `unsafe` (libc, no PyO3); its
//!   wrappers by subsystem in `sys/` (`kcmp`, `procfs`, `pidfd`, `files`, `process`,
//!   `sockdiag`).
//! * `error`: `Failure`, what went wrong and with which pid and fd, and the diagnosis
//!   that makes a kernel errno that specific (with `dead_or_dying`, which it needs).
//! * `liveness`: whether a process is still the one a call began with (`alive` at the
//!   start, `still_alive` at the end); uses `sys` and `error`'s `Failure`.
//! * `pool`: the threads a native pass may use (`threads()`, `KCMP_RS_THREADS`) and
//!   `map_chunks`, which spreads a batch of syscalls over them; uses `sys` and `error`.
//! * `support`: what this process may use (kcmp, F_DUPFD_QUERY, pidfd_getfd), probed
//!   once and cached in atomics.
//! * `engine` (tests in `engine/tests.rs`): groups items by shared object with as few
//!   comparisons as possible; no libc, no PyO3, no syscalls: it asks an `Oracle`.
//! * `ladder`: single comparisons and their exact fallbacks when kcmp is unusable.
//! * `oracle`: the engine's kernel oracles (`files`, `tasks`), the pid-reuse guard
//!   (`pids`), the one retry loop around a batch whose processes exit under it, and
//!   `shards`: a file batch split by inode across threads.
//! * `questions`: whole questions in one native pass (`shared`: what two processes
//!   share; `epoll`: what an epoll set watches), every process pinned throughout.
//! * `api` (tests in `api/tests.rs`): the entry points, in plain Rust, that the binding
//!   calls one to one.
//! * `py` (feature `python`): the only module that knows Python; `py/args.rs` converts
//!   arguments, `py/errors.rs` turns a `Failure` into Python's own OSError, `py/mod.rs`
//!   declares `_native` and releases the GIL around the work.
//!
//! The benchmark replay of figure 3 (the syscall floor) is no room of the crate: it is
//! the bench target `benches/syscall_floor.rs`, which uses the public API only.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Tests may unwrap: a panic there is a failed test, never a user's crash.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod engine;
pub mod error;
pub mod holders;
pub mod ladder;
pub mod liveness;
pub mod oracle;
pub mod pool;
pub mod questions;
pub mod support;
pub mod sys;

#[cfg(feature = "python")]
mod py;
