//! How many calls may be in flight to one connection at once: a limit that
//! adapts to the target, in the spirit of TCP congestion control and
//! Netflix's concurrency-limits.
//!
//! Every call of a [`RestConnector`](super::rest::RestConnector) takes a
//! [`Permit`] first and reports how it went when the answer is in:
//!
//! - **Slow start.** The limit starts at [`INITIAL`] and grows by half each
//!   window while latency holds, until the first sign of trouble: a window
//!   whose upper quarter is slower than 1.25× no-load (some calls queue;
//!   TCP's HyStart exits on the same kind of delay signal), a cut, or a
//!   refusal.
//! - **Additive increase.** After that it grows by one per window while
//!   latency holds and the limit was used (a limit nobody reached tells
//!   nothing about the target).
//! - **Decrease on rising latency.** A window whose median latency is above
//!   [`TOLERANCE`] × the no-load latency (+ [`SLACK`]) cuts the limit by 10 %:
//!   calls are queueing at the target (ServiceNow's `API_INT` semaphore
//!   queues before it refuses).
//! - **Cut on overload.** A 429, a 503 or a timeout halves the limit (at
//!   most once per window: the calls already in flight are answered alike).
//!   The call that got a `Retry-After` waits as asked (the connector's
//!   retry); the others go on at the lower limit. Holding the whole
//!   connection on every `Retry-After` was tried: against a target that
//!   refuses a share of calls at random it stalled the connection for good.
//! - A window is `limit` calls *sent after it began*, so each window judges
//!   the limit it was sent with. The no-load latency is the lowest window
//!   median seen, drifting up 1 % per window, so a target that became slower
//!   for good is learnt again.
//! - The configured `concurrency.max` (the target's semaphore, an agreed
//!   quota) is the ceiling; `concurrency.adaptive: false` runs at that
//!   ceiling always.
//!
//! The state is per process: two Lambda instances each adapt on their own
//! and, like TCP flows on one link, share the target between them.

use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The limit a connection starts with.
pub const INITIAL: f64 = 4.0;
/// The adaptive limit never goes below this (the start): a target that
/// refuses a share of calls at random, whatever the load, would otherwise
/// hold the connection to one or two calls at a time.
pub const MIN: f64 = 4.0;
/// Default ceiling (`concurrency.max`).
pub const DEFAULT_MAX: u32 = 64;
/// A window's median latency above `TOLERANCE` × no-load (+ [`SLACK`]) means queueing.
pub const TOLERANCE: f64 = 1.5;
/// Absolute slack on top of [`TOLERANCE`]: on a fast local target, a few
/// milliseconds of our own scheduling noise are not the target queueing.
pub const SLACK: Duration = Duration::from_millis(5);

/// A connection's `concurrency` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// The most calls in flight at once (the ceiling when adaptive).
    #[serde(default = "default_max")]
    pub max: u32,
    /// Adapt below `max` to the target's latency and refusals.
    #[serde(default = "default_adaptive")]
    pub adaptive: bool,
}

fn default_max() -> u32 {
    DEFAULT_MAX
}

fn default_adaptive() -> bool {
    true
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            max: DEFAULT_MAX,
            adaptive: true,
        }
    }
}

/// How a call went, as the limiter sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered; the latency is a sample of the target's.
    Answered,
    /// Answered, but its latency says nothing about the target's load (a
    /// file transfer, a refused connection).
    Unsampled,
    /// 429, 503 or a timeout.
    Overloaded,
}

/// The limiter of one connection.
#[derive(Debug)]
pub struct Limiter {
    /// The connection's name (the `ConcurrencyCut` metric's dimension).
    name: String,
    settings: Concurrency,
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    slow_start: bool,
    /// Lowest window median seen (ms), drifting up.
    no_load_ms: Option<f64>,
    /// The current window: calls sent since `window_start`.
    window_start: Instant,
    samples: Vec<f64>,
    /// Most calls in flight during the window.
    peak: usize,
    /// When the limit was last cut for an overload.
    last_cut: Option<Instant>,
    /// Overloads seen (for the metrics).
    overloads: u64,
}

/// A slot for one call; give it back with [`Permit::done`] (dropping it
/// gives it back unsampled).
#[derive(Debug)]
pub struct Permit<'a> {
    limiter: &'a Limiter,
    sent: Instant,
    finished: bool,
}

/// No slot came free before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSlot {
    /// Calls in flight and the limit when the wait gave up.
    pub in_flight: usize,
    pub limit: usize,
}

/// A snapshot for metrics and the console.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub limit: usize,
    pub in_flight: usize,
    pub no_load_ms: Option<f64>,
    pub overloads: u64,
}

impl Limiter {
    pub fn new(name: &str, settings: Concurrency) -> Self {
        let max = f64::from(settings.max.max(1));
        Self {
            name: name.to_owned(),
            settings,
            state: Mutex::new(State {
                limit: INITIAL.min(max),
                in_flight: 0,
                slow_start: true,
                no_load_ms: None,
                window_start: Instant::now(),
                samples: Vec::new(),
                peak: 0,
                last_cut: None,
                overloads: 0,
            }),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cap(&self, s: &State) -> usize {
        if self.settings.adaptive {
            (s.limit.floor() as usize).max(1)
        } else {
            self.settings.max.max(1) as usize
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let s = self.lock();
        Snapshot {
            limit: self.cap(&s),
            in_flight: s.in_flight,
            no_load_ms: s.no_load_ms,
            overloads: s.overloads,
        }
    }

    /// Waits for a slot until `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<Permit<'_>, NoSlot> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let now = Instant::now();
            {
                let mut s = self.lock();
                if s.in_flight < self.cap(&s) {
                    s.in_flight += 1;
                    s.peak = s.peak.max(s.in_flight);
                    return Ok(Permit {
                        limiter: self,
                        sent: now,
                        finished: false,
                    });
                }
                if now >= deadline {
                    return Err(NoSlot {
                        in_flight: s.in_flight,
                        limit: self.cap(&s),
                    });
                }
            }
            tokio::select! {
                _ = &mut freed => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn finish(&self, sent: Instant, outcome: Outcome) {
        let now = Instant::now();
        let before;
        let after;
        {
            let mut s = self.lock();
            before = self.cap(&s);
            s.in_flight = s.in_flight.saturating_sub(1);
            match outcome {
                Outcome::Unsampled => {}
                Outcome::Overloaded => {
                    s.overloads += 1;
                    // Once per window: the calls already in flight when the
                    // target refused are answered the same way.
                    if self.settings.adaptive && s.last_cut.is_none_or(|c| sent > c) {
                        s.limit = (s.limit * 0.5).max(MIN);
                        s.slow_start = false;
                        s.last_cut = Some(now);
                        new_window(&mut s, now);
                        self.cut("refused");
                    }
                }
                Outcome::Answered if self.settings.adaptive && sent >= s.window_start => {
                    let ms = now.duration_since(sent).as_secs_f64() * 1000.0;
                    s.samples.push(ms);
                    if s.samples.len() >= self.cap(&s).max(4) {
                        self.end_window(&mut s, now);
                    }
                }
                Outcome::Answered => {}
            }
            after = self.cap(&s);
        }
        if after > before {
            self.freed.notify_waiters();
        } else {
            self.freed.notify_one();
        }
    }

    /// Counts a cut (`ConcurrencyCut`): operators see a target pushing back.
    fn cut(&self, reason: &str) {
        crate::support::metrics::count(
            "ConcurrencyCut",
            &[("Connection", &self.name), ("Reason", reason)],
        );
    }

    fn end_window(&self, s: &mut State, now: Instant) {
        let max = f64::from(self.settings.max.max(1));
        s.samples.sort_by(f64::total_cmp);
        let median = s.samples[s.samples.len() / 2];
        let no_load = match s.no_load_ms {
            Some(n) => (n * 1.01).min(median),
            None => median,
        };
        s.no_load_ms = Some(no_load);
        let slack = SLACK.as_secs_f64() * 1000.0;
        let queueing = median > no_load * TOLERANCE + slack;
        // Slow start ends at the first calls that queue (the upper quarter
        // of the window slower than 1.25x no-load), before the median shows
        // it: a jump by half past the target's queue would be refused.
        let p75 = s.samples[s.samples.len() * 3 / 4];
        let some_queue = p75 > no_load * 1.25 + slack;
        let used = s.peak + 1 >= self.cap(s);
        if queueing {
            s.limit = (s.limit * 0.9).max(MIN);
            s.slow_start = false;
            self.cut("queueing");
        } else if s.slow_start && some_queue {
            s.slow_start = false;
        } else if used && s.slow_start {
            s.limit = (s.limit * 1.5).min(max);
        } else if used {
            s.limit = (s.limit + 1.0).min(max);
        }
        new_window(s, now);
    }
}

fn new_window(s: &mut State, now: Instant) {
    s.window_start = now;
    s.samples.clear();
    s.peak = s.in_flight;
}

impl Permit<'_> {
    /// Gives the slot back with how the call went.
    pub fn done(mut self, outcome: Outcome) {
        self.finished = true;
        self.limiter.finish(self.sent, outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.limiter.finish(self.sent, Outcome::Unsampled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// Runs `calls` calls through the limiter against a target that serves
    /// `threads` at once in `base` each and queues the rest (a semaphore);
    /// returns the limits seen at the end of each call.
    async fn against_semaphore(
        l: &Limiter,
        threads: usize,
        base: Duration,
        calls: usize,
    ) -> Vec<usize> {
        let target = std::sync::Arc::new(tokio::sync::Semaphore::new(threads));
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = futures_util::stream::FuturesUnordered::new();
        for _ in 0..calls {
            let target = target.clone();
            let seen = seen.clone();
            tasks.push(async move {
                let p = l.acquire(far()).await.unwrap();
                {
                    let _slot = target.acquire().await.unwrap();
                    tokio::time::sleep(base).await;
                }
                p.done(Outcome::Answered);
                seen.lock().unwrap().push(l.snapshot().limit);
            });
        }
        use futures_util::StreamExt;
        while tasks.next().await.is_some() {}
        let v = seen.lock().unwrap().clone();
        v
    }

    #[tokio::test(start_paused = true)]
    async fn grows_to_the_ceiling_when_latency_holds() {
        let l = Limiter::new(
            "test",
            Concurrency {
                max: 40,
                adaptive: true,
            },
        );
        let seen = against_semaphore(&l, 1000, Duration::from_millis(50), 2000).await;
        assert_eq!(*seen.last().unwrap(), 40, "{seen:?}");
        assert_eq!(l.snapshot().overloads, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn settles_near_the_targets_threads_when_calls_queue() {
        let l = Limiter::new(
            "test",
            Concurrency {
                max: 64,
                adaptive: true,
            },
        );
        let seen = against_semaphore(&l, 8, Duration::from_millis(50), 3000).await;
        // Past warm-up the limit stays between the target's threads and the
        // point where queueing doubles the latency.
        let late = &seen[1500..];
        let (lo, hi) = (*late.iter().min().unwrap(), *late.iter().max().unwrap());
        assert!(lo >= 6 && hi <= 16, "limits after warm-up {lo}..{hi}");
    }

    #[tokio::test(start_paused = true)]
    async fn overload_halves_once_per_window() {
        let l = Limiter::new(
            "test",
            Concurrency {
                max: 64,
                adaptive: true,
            },
        );
        // Warm up to a limit of 20 or more.
        against_semaphore(&l, 1000, Duration::from_millis(10), 600).await;
        let before = l.snapshot().limit;
        assert!(before >= 20, "{before}");
        let a = l.acquire(far()).await.unwrap();
        let b = l.acquire(far()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        a.done(Outcome::Overloaded);
        let after = l.snapshot().limit;
        assert_eq!(after, before / 2, "{before} → {after}");
        // The other call sent before the cut was refused the same way: no second cut.
        b.done(Outcome::Overloaded);
        assert_eq!(l.snapshot().limit, after);
        // A refusal of a call sent after the cut cuts again, down to the floor.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let c = l.acquire(far()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
            c.done(Outcome::Overloaded);
        }
        assert_eq!(l.snapshot().limit, MIN as usize);
        assert_eq!(l.snapshot().in_flight, 0);
        assert_eq!(l.snapshot().overloads, 12);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_give_up_at_the_deadline_and_fixed_stays_fixed() {
        let l = Limiter::new(
            "test",
            Concurrency {
                max: 3,
                adaptive: false,
            },
        );
        let held: Vec<_> = futures_util::future::join_all((0..3).map(|_| l.acquire(far())))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let no = l
            .acquire(Instant::now() + Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(
            no,
            NoSlot {
                in_flight: 3,
                limit: 3
            }
        );
        for p in held {
            p.done(Outcome::Overloaded);
        }
        assert_eq!(l.snapshot().limit, 3);
        let _p = l.acquire(far()).await.unwrap();
    }
}
