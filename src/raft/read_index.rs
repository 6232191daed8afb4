//! Read-index batching: concurrent linearizable reads share one leadership check.
//!
//! A linearizable read must observe every write acknowledged before it started, so it may only
//! use a leadership confirmation (a heartbeat round on the leader, a `ReadIndex` call from a
//! follower) that *began* after the read arrived. [`Coalescer`] runs at most one such check at a
//! time: reads that arrive while one is in flight wait for the next, which starts as soon as the
//! current one ends and serves all of them. Under load one round trip serves every read queued
//! behind it, instead of one round trip per read.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// One check, boxed so that the runner can start the next round itself.
pub(super) type Check<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs one check at a time and shares each result with every caller that joined before the
/// check started.
pub(super) struct Coalescer<T> {
    state: Arc<Mutex<Rounds<T>>>,
}

struct Rounds<T> {
    /// Whether a runner task is active (it starts the next round whenever one is waiting).
    running: bool,
    /// The round that starts next, with its waiting callers.
    next: Option<watch::Sender<Option<T>>>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Coalescer {
            state: Arc::new(Mutex::new(Rounds {
                running: false,
                next: None,
            })),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Coalescer<T> {
    /// The result of a check that starts after this call. `check` makes one check; it is used
    /// only if no runner is active (the runner keeps it for its later rounds). `None` if the
    /// runner was dropped (the runtime is shutting down).
    pub(super) async fn join<F>(&self, check: F) -> Option<T>
    where
        F: Fn() -> Check<T> + Send + 'static,
    {
        let mut result = {
            let mut rounds = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let result = match &rounds.next {
                Some(round) => round.subscribe(),
                None => {
                    let (round, result) = watch::channel(None);
                    rounds.next = Some(round);
                    result
                }
            };
            if !rounds.running {
                rounds.running = true;
                tokio::spawn(run(self.state.clone(), check));
            }
            result
        };
        let value = result.wait_for(Option::is_some).await.ok()?;
        value.clone()
    }
}

/// Starts rounds while callers wait for one; the callers of a round all joined before it started.
async fn run<T, F>(state: Arc<Mutex<Rounds<T>>>, check: F)
where
    F: Fn() -> Check<T>,
{
    /// Marks the runner stopped even if its task is cancelled or the check panics, so that a
    /// later caller starts a new one instead of waiting forever.
    struct Stopped<T>(Arc<Mutex<Rounds<T>>>);
    impl<T> Drop for Stopped<T> {
        fn drop(&mut self) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).running = false;
        }
    }
    let _stopped = Stopped(state.clone());
    loop {
        let round = {
            let mut rounds = state.lock().unwrap_or_else(|p| p.into_inner());
            match rounds.next.take() {
                Some(round) => round,
                None => return,
            }
        };
        let value = check().await;
        round.send_replace(Some(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A check that counts its rounds and waits until released.
    fn gated(counter: Arc<AtomicU64>, gate: Arc<tokio::sync::Semaphore>) -> impl Fn() -> Check<u64> + Send + 'static {
        move || {
            let counter = counter.clone();
            let gate = gate.clone();
            Box::pin(async move {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                gate.acquire().await.unwrap().forget();
                n
            })
        }
    }

    #[tokio::test]
    async fn callers_waiting_during_a_round_share_the_next_one() {
        let coalescer = Arc::new(Coalescer::<u64>::default());
        let counter = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        // The first caller starts round 1.
        let first = tokio::spawn({
            let (c, n, g) = (coalescer.clone(), counter.clone(), gate.clone());
            async move { c.join(gated(n, g)).await }
        });
        while counter.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // Ten callers arrive while round 1 is in flight: none may use it.
        let mut late = Vec::new();
        for _ in 0..10 {
            late.push(tokio::spawn({
                let (c, n, g) = (coalescer.clone(), counter.clone(), gate.clone());
                async move { c.join(gated(n, g)).await }
            }));
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(counter.load(Ordering::SeqCst), 1, "round 2 must wait for round 1");
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Some(1));
        for caller in late {
            assert_eq!(caller.await.unwrap(), Some(2), "every late caller shares round 2");
        }
        assert_eq!(counter.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_round_does_not_wedge_later_reads() {
        let coalescer = Coalescer::<u64>::default();
        let panics = || -> Check<u64> { Box::pin(async { panic!("check failed") }) };
        // The runner dies with its round: the waiting caller gets None instead of hanging.
        assert_eq!(coalescer.join(panics).await, None);
        // The next caller starts a new runner.
        let quick = || -> Check<u64> { Box::pin(async { 7 }) };
        assert_eq!(coalescer.join(quick).await, Some(7));
    }
}
