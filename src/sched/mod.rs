//! Deterministic threads without OS threads (docs/design.md §5).
//!
//! Each workload thread is an `async` block; every `.await` on a [`Sched`] primitive is a point
//! where the kernel could sleep or be preempted, so one poll of a thread is one *step*. The
//! executor picks which runnable thread takes the next step from the schedule, which is plain
//! data: `schedule[i] % runnable.len()` picks among the runnable threads in index order, and once
//! the schedule is used up the lowest-index runnable thread runs. Same threads + same schedule =
//! same sequence of steps, byte for byte.
//!
//! Blocking is explicit: a primitive that cannot proceed records *what* it waits for
//! ([`Wait`]); the executor treats the thread as blocked until that condition holds. If every
//! unfinished thread is blocked the run ends in [`RunEnd::Deadlock`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Most threads a run may have.
pub const THREADS_MAX: usize = 4;
/// Bound on scheduling steps in one run; exceeding it is a harness bug (no model loop spins).
pub const STEPS_MAX: usize = 1 << 20;

/// A lock in the modelled kernel. Ordering of the variants is the lock order (outer first).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockId {
    /// `i_rwsem` of an inode (by inode number).
    Inode(u32),
    /// `invalidate_lock` of an inode (mapping->invalidate_lock, XFS's MMAPLOCK).
    Invalidate(u32),
    /// The DAX entry lock of page index `1` in inode `0`.
    Entry(u32, u64),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

#[derive(Clone, Debug, Default)]
struct LockState {
    readers: u32,
    writer: Option<usize>,
}

/// What a blocked thread waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    Lock(LockId, Mode),
    /// A condition owned by the system under test (e.g. "no DMA pin covers this range"),
    /// identified by a key the SUT's predicate understands.
    Condition(u64),
}

/// Shared scheduler state, handed to every thread.
#[derive(Default)]
pub struct Sched {
    current: Cell<usize>,
    locks: RefCell<BTreeMap<LockId, LockState>>,
    waiting: RefCell<Vec<Option<Wait>>>,
}

impl Sched {
    pub fn new() -> Rc<Sched> {
        Rc::new(Sched::default())
    }

    /// The thread taking the current step.
    pub fn current(&self) -> usize {
        self.current.get()
    }

    /// A preemption point: the thread gives up the rest of this step.
    pub fn yield_now(&self) -> impl Future<Output = ()> + '_ {
        YieldNow { yielded: false }
    }

    /// Preemption point, then takes `lock` in `mode`, blocking while it is unavailable.
    pub async fn lock(&self, lock: LockId, mode: Mode) {
        self.yield_now().await;
        std::future::poll_fn(|_| {
            if self.try_lock(lock, mode) {
                self.set_waiting(None);
                Poll::Ready(())
            } else {
                self.set_waiting(Some(Wait::Lock(lock, mode)));
                Poll::Pending
            }
        })
        .await
    }

    /// Takes `lock` now if it is free; never blocks and is not a preemption point.
    pub fn try_lock(&self, lock: LockId, mode: Mode) -> bool {
        let me = self.current();
        let mut locks = self.locks.borrow_mut();
        let state = locks.entry(lock).or_default();
        assert_ne!(state.writer, Some(me), "thread {me} re-takes {lock:?} it holds exclusively");
        match mode {
            Mode::Shared if state.writer.is_none() => state.readers += 1,
            Mode::Exclusive if state.writer.is_none() && state.readers == 0 => state.writer = Some(me),
            _ => return false,
        }
        true
    }

    pub fn unlock(&self, lock: LockId, mode: Mode) {
        let me = self.current();
        let mut locks = self.locks.borrow_mut();
        let state = locks.get_mut(&lock).unwrap_or_else(|| panic!("unlock of {lock:?}, never taken"));
        match mode {
            Mode::Shared => {
                assert!(state.readers > 0, "shared unlock of {lock:?} not held shared");
                state.readers -= 1;
            }
            Mode::Exclusive => {
                assert_eq!(state.writer, Some(me), "exclusive unlock of {lock:?} by a non-holder");
                state.writer = None;
            }
        }
        if state.readers == 0 && state.writer.is_none() {
            locks.remove(&lock);
        }
    }

    /// Asserts a lock precondition (kernel `lockdep_assert_held`).
    pub fn assert_held(&self, lock: LockId) {
        let locks = self.locks.borrow();
        let held = locks.get(&lock).is_some_and(|s| s.readers > 0 || s.writer.is_some());
        assert!(held, "{lock:?} must be held here");
    }

    pub fn is_locked(&self, lock: LockId) -> bool {
        self.locks.borrow().contains_key(&lock)
    }

    /// Preemption point, then waits until `ready()` holds. `key` names the condition for the
    /// executor's runnable test, which calls `ready` through [`Executor::run`]'s predicate.
    pub async fn wait_until(&self, key: u64, ready: impl Fn() -> bool) {
        self.yield_now().await;
        std::future::poll_fn(|_| {
            if ready() {
                self.set_waiting(None);
                Poll::Ready(())
            } else {
                self.set_waiting(Some(Wait::Condition(key)));
                Poll::Pending
            }
        })
        .await
    }

    fn set_waiting(&self, wait: Option<Wait>) {
        let me = self.current();
        let mut w = self.waiting.borrow_mut();
        if w.len() <= me {
            w.resize(me + 1, None);
        }
        w[me] = wait;
    }

    fn waiting(&self, thread: usize) -> Option<Wait> {
        self.waiting.borrow().get(thread).cloned().flatten()
    }

    fn lock_free_for(&self, lock: LockId, mode: Mode) -> bool {
        let locks = self.locks.borrow();
        match locks.get(&lock) {
            None => true,
            Some(s) => match mode {
                Mode::Shared => s.writer.is_none(),
                Mode::Exclusive => s.writer.is_none() && s.readers == 0,
            },
        }
    }
}

struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            Poll::Ready(())
        } else {
            self.yielded = true;
            Poll::Pending
        }
    }
}

/// How a run of threads ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Every thread finished.
    Done { steps: usize },
    /// Every unfinished thread was blocked; lists `(thread, what it waited for)`.
    Deadlock { steps: usize, blocked: Vec<(usize, Wait)> },
}

/// How the executor picks the thread for each step.
#[derive(Copy, Clone, Debug)]
pub enum Picks<'s> {
    /// A workload schedule: entry `c` picks runnable thread `c % runnable.len()` (module doc).
    Indexed(&'s [u8]),
    /// Thread indexes wanted in order; an entry naming a thread that cannot run at that step
    /// is passed over. The minimizer steers a shrunk workload with the step order of the
    /// original and reads back the equivalent [`Ran::schedule`].
    Named(&'s [u8]),
}

/// One step: the thread that took it and its label.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub thread: u8,
    pub label: u32,
}

/// What [`Executor::run_logged`] did.
#[derive(Clone, Debug)]
pub struct Ran {
    pub end: RunEnd,
    pub steps: Vec<Step>,
    /// The indexed schedule that repeats this run: one entry per step taken while picks
    /// remained (after that both forms pick the lowest-index runnable thread).
    pub schedule: Vec<u8>,
}

type Task<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Runs threads step by step under a schedule.
pub struct Executor<'a> {
    sched: Rc<Sched>,
    tasks: Vec<Option<Task<'a>>>,
}

impl<'a> Executor<'a> {
    pub fn new(sched: Rc<Sched>) -> Self {
        Self { sched, tasks: Vec::new() }
    }

    pub fn spawn(&mut self, task: impl Future<Output = ()> + 'a) {
        assert!(self.tasks.len() < THREADS_MAX, "more than {THREADS_MAX} threads");
        self.tasks.push(Some(Box::pin(task)));
    }

    /// Runs to completion or deadlock. `condition_ready(key)` answers [`Wait::Condition`] waits.
    pub fn run(self, schedule: &[u8], condition_ready: impl Fn(u64) -> bool) -> RunEnd {
        self.run_logged(Picks::Indexed(schedule), condition_ready, |_| 0).end
    }

    /// Runs under `picks`, logging every step with `label(thread)` taken just before the step
    /// (the caller's name for what the thread is doing, e.g. its operation index).
    pub fn run_logged(
        mut self,
        picks: Picks<'_>,
        condition_ready: impl Fn(u64) -> bool,
        label: impl Fn(usize) -> u32,
    ) -> Ran {
        let mut cx = Context::from_waker(Waker::noop());
        let (entries, named) = match picks {
            Picks::Indexed(s) => (s, false),
            Picks::Named(s) => (s, true),
        };
        let mut next_entry = entries.iter();
        let mut ran = Ran { end: RunEnd::Done { steps: 0 }, steps: Vec::new(), schedule: Vec::new() };
        for steps in 0..STEPS_MAX {
            let runnable: Vec<usize> =
                (0..self.tasks.len()).filter(|&t| self.is_runnable(t, &condition_ready)).collect();
            if runnable.is_empty() {
                ran.end = self.end(steps);
                return ran;
            }
            let position = if named {
                // Entries naming a thread that cannot run now are passed over.
                next_entry.by_ref().find_map(|&t| runnable.iter().position(|&r| r == usize::from(t)))
            } else {
                next_entry.next().map(|&c| c as usize % runnable.len())
            };
            if let Some(p) = position {
                ran.schedule.push(p as u8);
            }
            let pick = runnable[position.unwrap_or(0)];
            ran.steps.push(Step { thread: pick as u8, label: label(pick) });
            self.sched.current.set(pick);
            let task = self.tasks[pick].as_mut().expect("runnable task exists");
            if task.as_mut().poll(&mut cx).is_ready() {
                self.tasks[pick] = None;
            }
        }
        panic!("run exceeded {STEPS_MAX} steps: a model loop does not make progress");
    }

    fn is_runnable(&self, t: usize, condition_ready: &impl Fn(u64) -> bool) -> bool {
        self.tasks[t].is_some()
            && match self.sched.waiting(t) {
                None => true,
                Some(Wait::Lock(lock, mode)) => self.sched.lock_free_for(lock, mode),
                Some(Wait::Condition(key)) => condition_ready(key),
            }
    }

    fn end(&self, steps: usize) -> RunEnd {
        let blocked: Vec<(usize, Wait)> = (0..self.tasks.len())
            .filter(|&t| self.tasks[t].is_some())
            .filter_map(|t| self.sched.waiting(t).map(|w| (t, w)))
            .collect();
        if blocked.is_empty() { RunEnd::Done { steps } } else { RunEnd::Deadlock { steps, blocked } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_log(schedule: &[u8]) -> (Vec<(usize, u32)>, RunEnd) {
        let (log, ran) = ran(Picks::Indexed(schedule));
        (log, ran.end)
    }

    /// Two lock-taking threads of three iterations each, labelled by iterations done.
    fn ran(picks: Picks<'_>) -> (Vec<(usize, u32)>, Ran) {
        let sched = Sched::new();
        let log = RefCell::new(Vec::new());
        let mut ex = Executor::new(Rc::clone(&sched));
        for t in 0..2usize {
            let (s, log) = (Rc::clone(&sched), &log);
            ex.spawn(async move {
                for i in 0..3 {
                    s.lock(LockId::Inode(0), Mode::Exclusive).await;
                    log.borrow_mut().push((t, i));
                    s.yield_now().await;
                    s.unlock(LockId::Inode(0), Mode::Exclusive);
                }
            });
        }
        let done = |t: usize| log.borrow().iter().filter(|e| e.0 == t).count() as u32;
        let ran = ex.run_logged(picks, |_| true, done);
        (log.into_inner(), ran)
    }

    #[test]
    fn named_picks_read_back_as_an_equivalent_schedule() {
        let named = [1u8, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1];
        let (log, steered) = ran(Picks::Named(&named));
        // Thread 1 asked first and got the lock first.
        assert_eq!(log[0], (1, 0));
        let (log2, replayed) = ran(Picks::Indexed(&steered.schedule));
        assert_eq!(log, log2);
        assert_eq!(steered.steps, replayed.steps);
        assert_eq!(steered.schedule, replayed.schedule);
        // The log names each step's thread; steering by it repeats the run.
        let threads: Vec<u8> = steered.steps.iter().map(|s| s.thread).collect();
        assert_eq!(ran(Picks::Named(&threads)).1.steps, steered.steps);
        // Labels count the iterations a thread had finished before its step.
        let last_of_1 = steered.steps.iter().filter(|s| s.thread == 1).map(|s| s.label).max();
        assert_eq!(last_of_1, Some(3));
    }

    #[test]
    fn same_schedule_same_steps() {
        assert_eq!(run_log(&[1, 0, 1, 1, 0, 3]), run_log(&[1, 0, 1, 1, 0, 3]));
        assert_ne!(run_log(&[0, 0, 0, 0]).0, run_log(&[1, 1, 1, 1]).0);
    }

    #[test]
    fn exclusive_lock_excludes() {
        let (log, end) = run_log(&[0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
        assert!(matches!(end, RunEnd::Done { .. }));
        assert_eq!(log.len(), 6);
    }

    #[test]
    fn lock_order_inversion_deadlocks() {
        let sched = Sched::new();
        let mut ex = Executor::new(Rc::clone(&sched));
        for (a, b) in [(0u32, 1u32), (1, 0)] {
            let s = Rc::clone(&sched);
            ex.spawn(async move {
                s.lock(LockId::Inode(a), Mode::Exclusive).await;
                s.lock(LockId::Inode(b), Mode::Exclusive).await;
            });
        }
        // t0 takes A, t1 takes B, both block on the other.
        let end = ex.run(&[0, 0, 1, 1, 0, 1], |_| true);
        let RunEnd::Deadlock { blocked, .. } = end else { panic!("expected deadlock, got {end:?}") };
        assert_eq!(blocked.len(), 2);
    }

    #[test]
    fn condition_wait_blocks_until_ready() {
        let sched = Sched::new();
        let flag = Cell::new(false);
        let order = RefCell::new(Vec::new());
        let mut ex = Executor::new(Rc::clone(&sched));
        let (s, f, o) = (Rc::clone(&sched), &flag, &order);
        ex.spawn(async move {
            s.wait_until(7, || f.get()).await;
            o.borrow_mut().push("waiter");
        });
        let (s, f, o) = (Rc::clone(&sched), &flag, &order);
        ex.spawn(async move {
            s.yield_now().await;
            o.borrow_mut().push("setter");
            f.set(true);
        });
        let end = ex.run(&[0, 0, 0, 0], |_| flag.get());
        assert!(matches!(end, RunEnd::Done { .. }));
        assert_eq!(order.into_inner(), vec!["setter", "waiter"]);
    }
}
