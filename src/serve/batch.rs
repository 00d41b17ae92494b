//! Dynamic batching, as TEI and Triton do it: requests put their items (preprocessed images,
//! texts) into one bounded queue per model tower; a dedicated model thread takes up to
//! `max_batch` of them, waiting at most `max_wait` for a batch to fill after the first one
//! arrives, runs them as one forward and answers each item on its own channel. While a batch
//! runs, the next one forms in the queue.
//!
//! Backpressure is at admission: a request whose items do not fit into the queue is refused at
//! once ([`Overloaded`]), so memory is bounded by the queue size. Items whose requester has gone
//! (client disconnect, timeout) are dropped before they reach the model.
use super::metrics::{Metrics, QueueLabels};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A batch's outputs, one per item in order, or why the batch failed.
pub type BatchResult<O> = std::result::Result<Vec<O>, String>;

/// How the queue forms batches.
#[derive(Clone, Copy, Debug)]
pub struct BatchPolicy {
    /// Items per forward, at most.
    pub max_batch: usize,
    /// How long the first item of a batch waits for others.
    pub max_wait: Duration,
    /// Items queued at most (across all requests); more are refused.
    pub max_queue: usize,
}

/// The queue is full: the request was not admitted.
#[derive(Debug)]
pub struct Overloaded {
    pub queued: usize,
    pub capacity: usize,
}

struct Job<I, O> {
    item: I,
    reply: oneshot::Sender<std::result::Result<O, String>>,
}

struct Queue<I, O> {
    jobs: VecDeque<Job<I, O>>,
    /// Slots promised to requests still decoding their images (see [`Batcher::reserve`]).
    reserved: usize,
    closed: bool,
}

struct Shared<I, O> {
    queue: Mutex<Queue<I, O>>,
    ready: Condvar,
}

/// One tower's queue and its model thread.
pub struct Batcher<I, O> {
    shared: Arc<Shared<I, O>>,
    policy: BatchPolicy,
    labels: QueueLabels,
    metrics: Arc<Metrics>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the model thread, which calls `run` on each batch (its items in queue order).
    pub fn start(
        labels: QueueLabels,
        policy: BatchPolicy,
        metrics: Arc<Metrics>,
        mut run: impl FnMut(Vec<I>) -> BatchResult<O> + Send + 'static,
    ) -> std::io::Result<Self> {
        let policy = BatchPolicy {
            max_batch: policy.max_batch.max(1),
            max_queue: policy.max_queue.max(1),
            ..policy
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                reserved: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let (s, m, l) = (shared.clone(), metrics.clone(), labels.clone());
        let thread = std::thread::Builder::new()
            .name(format!("tessera-{}-{}", labels.model, labels.queue))
            .spawn(move || {
                while let Some(batch) = next_batch(&s, &policy, &m, &l) {
                    let (items, replies): (Vec<I>, Vec<_>) =
                        batch.into_iter().map(|j| (j.item, j.reply)).unzip();
                    let n = items.len();
                    let t0 = Instant::now();
                    // A panicking model must not take the thread (and every later request)
                    // with it: the batch fails, the queue goes on.
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(items)))
                        .unwrap_or_else(|_| Err("the model panicked on this batch".into()));
                    m.batch_done(&l, n, t0.elapsed());
                    match out {
                        Ok(outs) if outs.len() == n => {
                            for (r, o) in replies.into_iter().zip(outs) {
                                let _ = r.send(Ok(o));
                            }
                        }
                        Ok(outs) => {
                            let msg =
                                format!("the model gave {} outputs for {n} inputs", outs.len());
                            for r in replies {
                                let _ = r.send(Err(msg.clone()));
                            }
                        }
                        Err(msg) => {
                            for r in replies {
                                let _ = r.send(Err(msg.clone()));
                            }
                        }
                    }
                }
            })?;
        Ok(Batcher {
            shared,
            policy,
            labels,
            metrics,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `items` as one request (all or none), returning a receiver per item.
    pub fn submit(&self, items: Vec<I>) -> std::result::Result<Receivers<O>, Overloaded> {
        self.reserve(items.len())?.submit(items)
    }

    /// Takes `n` queue slots for a request before it decodes its images, or refuses at once
    /// when they are not free: an overloaded server sheds without spending work, and a burst
    /// cannot overfill the queue while its requests decode. Dropping the reservation frees
    /// the slots.
    pub fn reserve(&self, n: usize) -> std::result::Result<Reservation<'_, I, O>, Overloaded> {
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        let queued = q.jobs.len() + q.reserved;
        if q.closed || queued + n > self.policy.max_queue {
            drop(q);
            self.metrics.rejected(&self.labels);
            return Err(Overloaded {
                queued,
                capacity: self.policy.max_queue,
            });
        }
        q.reserved += n;
        Ok(Reservation { batcher: self, n })
    }

    /// Items waiting now.
    pub fn depth(&self) -> usize {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .jobs
            .len()
    }

    /// Stops admitting, lets the model thread finish what is queued, and waits for it.
    pub fn close(&self) {
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.closed = true;
        }
        self.shared.ready.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl<I, O> Drop for Batcher<I, O> {
    fn drop(&mut self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.closed = true;
        }
        self.shared.ready.notify_all();
    }
}

/// One receiver per queued item.
pub type Receivers<O> = Vec<oneshot::Receiver<std::result::Result<O, String>>>;

/// Queue slots held for one request (see [`Batcher::reserve`]).
pub struct Reservation<'a, I, O> {
    batcher: &'a Batcher<I, O>,
    n: usize,
}

impl<I, O> Reservation<'_, I, O> {
    /// Queues `items` (at most the reserved count) in the reserved slots.
    pub fn submit(mut self, items: Vec<I>) -> std::result::Result<Receivers<O>, Overloaded> {
        let b = self.batcher;
        let mut q = b.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.reserved -= std::mem::take(&mut self.n);
        if q.closed || items.len() + q.jobs.len() + q.reserved > b.policy.max_queue {
            let queued = q.jobs.len() + q.reserved;
            drop(q);
            b.metrics.rejected(&b.labels);
            return Err(Overloaded {
                queued,
                capacity: b.policy.max_queue,
            });
        }
        let mut rxs = Vec::with_capacity(items.len());
        for item in items {
            let (reply, rx) = oneshot::channel();
            q.jobs.push_back(Job { item, reply });
            rxs.push(rx);
        }
        b.metrics.queue_depth(&b.labels, q.jobs.len());
        drop(q);
        b.shared.ready.notify_one();
        Ok(rxs)
    }
}

impl<I, O> Drop for Reservation<'_, I, O> {
    fn drop(&mut self) {
        if self.n > 0 {
            let mut q = self
                .batcher
                .shared
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            q.reserved -= self.n;
        }
    }
}

/// Blocks until a batch is ready: the first live item, then more until `max_batch` or
/// `max_wait` after the first; `None` once the queue is closed and empty.
fn next_batch<I, O>(
    s: &Shared<I, O>,
    policy: &BatchPolicy,
    metrics: &Metrics,
    labels: &QueueLabels,
) -> Option<Vec<Job<I, O>>> {
    let mut q = s.queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        // Requesters that have gone (disconnect, timeout) are not computed for.
        let before = q.jobs.len();
        q.jobs.retain(|j| !j.reply.is_closed());
        metrics.cancelled(labels, before - q.jobs.len());
        if !q.jobs.is_empty() {
            break;
        }
        if q.closed {
            metrics.queue_depth(labels, 0);
            return None;
        }
        q = s.ready.wait(q).unwrap_or_else(|p| p.into_inner());
    }
    let deadline = Instant::now() + policy.max_wait;
    while q.jobs.len() < policy.max_batch && !q.closed {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        q = s
            .ready
            .wait_timeout(q, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    let mut batch = Vec::with_capacity(policy.max_batch.min(q.jobs.len()));
    let mut cancelled = 0;
    while batch.len() < policy.max_batch {
        match q.jobs.pop_front() {
            Some(j) if j.reply.is_closed() => cancelled += 1,
            Some(j) => batch.push(j),
            None => break,
        }
    }
    metrics.cancelled(labels, cancelled);
    metrics.queue_depth(labels, q.jobs.len());
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> QueueLabels {
        QueueLabels {
            model: "m".into(),
            queue: "q".into(),
        }
    }

    fn policy(max_batch: usize, max_wait_ms: u64, max_queue: usize) -> BatchPolicy {
        BatchPolicy {
            max_batch,
            max_wait: Duration::from_millis(max_wait_ms),
            max_queue,
        }
    }

    #[test]
    fn items_queued_together_run_as_one_batch_in_order() {
        let sizes = Arc::new(Mutex::new(vec![]));
        let seen = sizes.clone();
        let b = Batcher::start(
            labels(),
            policy(8, 200, 64),
            Metrics::new(),
            move |xs: Vec<u32>| {
                seen.lock().unwrap().push(xs.len());
                Ok(xs.iter().map(|x| x * 10).collect())
            },
        )
        .unwrap();
        let rxs = b.submit((0..5).collect()).unwrap();
        let out: Vec<u32> = rxs
            .into_iter()
            .map(|r| r.blocking_recv().unwrap().unwrap())
            .collect();
        assert_eq!(out, vec![0, 10, 20, 30, 40]);
        b.close();
        assert_eq!(*sizes.lock().unwrap(), vec![5]);
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_recovers() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g = gate.clone();
        let b = Batcher::start(
            labels(),
            policy(1, 0, 3),
            Metrics::new(),
            move |xs: Vec<u32>| {
                let (m, c) = &*g;
                let mut open = m.lock().unwrap();
                while !*open {
                    open = c.wait(open).unwrap();
                }
                Ok(xs)
            },
        )
        .unwrap();
        let first = b.submit(vec![1]).unwrap();
        // The model thread holds item 1; three more fill the queue.
        while b.depth() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let queued = b.submit(vec![2, 3, 4]).unwrap();
        let refused = b.submit(vec![5]).unwrap_err();
        assert_eq!((refused.queued, refused.capacity), (3, 3));
        {
            let (m, c) = &*gate;
            *m.lock().unwrap() = true;
            c.notify_all();
        }
        let got: Vec<u32> = first
            .into_iter()
            .chain(queued)
            .map(|r| r.blocking_recv().unwrap().unwrap())
            .collect();
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert!(b.submit(vec![6]).is_ok());
        b.close();
    }

    #[test]
    fn reservations_hold_slots_until_submitted_or_dropped() {
        let b = Batcher::start(labels(), policy(4, 0, 4), Metrics::new(), |xs: Vec<u32>| {
            Ok(xs)
        })
        .unwrap();
        let r1 = b.reserve(3).unwrap();
        assert!(b.reserve(2).is_err(), "3 of 4 slots are promised");
        let r2 = b.reserve(1).unwrap();
        drop(r2);
        let r3 = b.reserve(1).unwrap();
        let rx = r1.submit(vec![1, 2, 3]).unwrap();
        let got: Vec<u32> = rx
            .into_iter()
            .map(|r| r.blocking_recv().unwrap().unwrap())
            .collect();
        assert_eq!(got, vec![1, 2, 3]);
        drop(r3);
        assert!(b.reserve(4).is_ok());
        b.close();
    }

    #[test]
    fn items_whose_requester_left_are_not_computed() {
        let ran = Arc::new(Mutex::new(vec![]));
        let r = ran.clone();
        let gate = Arc::new(std::sync::Barrier::new(2));
        let g = gate.clone();
        let b = Batcher::start(
            labels(),
            policy(4, 0, 64),
            Metrics::new(),
            move |xs: Vec<u32>| {
                if xs == [0] {
                    g.wait();
                }
                r.lock().unwrap().extend(xs.iter().copied());
                Ok(xs)
            },
        )
        .unwrap();
        let hold = b.submit(vec![0]).unwrap();
        while b.depth() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(b.submit(vec![1, 2]).unwrap()); // the client went away
        let kept = b.submit(vec![3]).unwrap();
        gate.wait();
        assert_eq!(
            kept.into_iter().next().unwrap().blocking_recv().unwrap(),
            Ok(3)
        );
        drop(hold);
        b.close();
        assert_eq!(*ran.lock().unwrap(), vec![0, 3]);
    }

    #[test]
    fn a_failing_or_panicking_batch_answers_every_item_and_the_queue_goes_on() {
        let b = Batcher::start(
            labels(),
            policy(4, 50, 64),
            Metrics::new(),
            |xs: Vec<u32>| {
                if xs.contains(&7) {
                    panic!("boom");
                }
                if xs.contains(&8) {
                    return Err("bad batch".into());
                }
                Ok(xs)
            },
        )
        .unwrap();
        for (x, want) in [(7, "the model panicked on this batch"), (8, "bad batch")] {
            let r = b
                .submit(vec![x])
                .unwrap()
                .remove(0)
                .blocking_recv()
                .unwrap();
            assert_eq!(r, Err(want.to_string()));
        }
        assert_eq!(
            b.submit(vec![1])
                .unwrap()
                .remove(0)
                .blocking_recv()
                .unwrap(),
            Ok(1)
        );
        b.close();
    }
}
