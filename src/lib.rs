//! kcmp_rs: typed, batched access to Linux kcmp(2).
//!
//! `sys` is the syscall boundary, `fault` makes kernel errors specific, `support` knows
//! what this process may use, `engine` groups items by shared object with as few
//! comparisons as possible, `oracle` answers the engine from the kernel, and `py` is the
//! only module that knows Python.

pub mod engine;
pub mod fault;
pub mod oracle;
pub mod support;
pub mod sys;

mod bench_floor;
mod py;
