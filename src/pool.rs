//! The threads of a native pass: how many it may use (the CPUs this process may run
//! on, at most `KCMP_RS_THREADS`), and `map_chunks`, which spreads a batch of
//! independent syscalls over them.
//!
//! Uses `sys` (sched_getaffinity) and `error` (`Failure::Interrupted`) only: the
//! oracles, the questions and the api all run their parallel work through it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as Atomic};
use std::thread;

use crate::error::Failure;
use crate::sys;

/// Items a thread takes at a time in `map_chunks`: a millisecond or so of syscalls,
/// so Ctrl-C is noticed soon and a thread slowed by other load takes fewer chunks.
const CHUNK: usize = 256;

/// Threads `map_chunks` uses at most: the batches are syscall-bound on /proc, whose
/// lookups stop scaling beyond a few cores.
const MAX_THREADS: usize = 4;

/// The most threads one pass may use, as asked (`KCMP_RS_THREADS`); 0: no limit.
static THREAD_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// Limits every later pass to `n` threads (0: as many as the process may use).
pub fn set_thread_limit(n: usize) {
    THREAD_LIMIT.store(n, Atomic::Relaxed);
}

/// The threads a pass may use: the CPUs this process may run on (sched_getaffinity),
/// at most the limit asked.
pub fn threads() -> usize {
    match THREAD_LIMIT.load(Atomic::Relaxed) {
        0 => sys::usable_cpus(),
        n => n.min(sys::usable_cpus()),
    }
}

/// `work` applied to every chunk of `items`, in order, by this thread and up to
/// `MAX_THREADS - 1` scoped helpers (as many as the cores allow) taking chunks in
/// turn; `work` returns one answer per item. Only this thread polls `interrupted`,
/// between its chunks; a helper that cannot be started, or whose work is lost, leaves
/// its chunks to this thread.
pub(crate) fn map_chunks<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&[T]) -> Vec<R> + Sync,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Vec<R>, Failure> {
    let chunks: Vec<&[T]> = items.chunks(CHUNK).collect();
    let threads = threads().min(MAX_THREADS).min(chunks.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let take = || {
        let i = next.fetch_add(1, Atomic::Relaxed);
        chunks.get(i).map(|chunk| (i, work(chunk)))
    };
    let helper = || {
        let mut done = Vec::new();
        while !stop.load(Atomic::Relaxed) {
            let Some(answer) = take() else { break };
            done.push(answer);
        }
        done
    };
    let mut answers: Vec<Option<Vec<R>>> = Vec::new();
    answers.resize_with(chunks.len(), || None);
    let interrupted_here = thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| thread::Builder::new().spawn_scoped(scope, helper).ok())
            .collect();
        let mut interrupted_here = false;
        loop {
            if interrupted() {
                stop.store(true, Atomic::Relaxed);
                interrupted_here = true;
                break;
            }
            let Some((i, answer)) = take() else { break };
            answers[i] = Some(answer);
        }
        for done in helpers.into_iter().filter_map(|h| h.join().ok()) {
            for (i, answer) in done {
                answers[i] = Some(answer);
            }
        }
        interrupted_here
    });
    if interrupted_here {
        return Err(Failure::Interrupted);
    }
    let mut out = Vec::with_capacity(items.len());
    for (answer, chunk) in answers.into_iter().zip(&chunks) {
        out.extend(answer.unwrap_or_else(|| work(chunk)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_chunks_keeps_order_across_threads() {
        let items: Vec<u32> = (0..10_000).collect();
        let doubled = map_chunks(&items, |c| c.iter().map(|x| x * 2).collect(), &mut || false);
        assert_eq!(doubled, Ok(items.iter().map(|x| x * 2).collect::<Vec<_>>()));
        let none: Vec<u32> = Vec::new();
        assert_eq!(
            map_chunks(&none, <[u32]>::to_vec, &mut || false),
            Ok(vec![])
        );
    }
}
