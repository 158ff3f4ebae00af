//! A queue one task waits on, with that task's waker kept beside it: the task holds no future of its own while it
//! waits, and an empty queue holds no allocation. The device connections' mailboxes and the UDP associations'
//! inboxes are both one of these inside their own lock.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

/// Items for one task, and the waker the next one wakes.
#[derive(Debug)]
pub(crate) struct Waiting<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Waiting {
            queue: VecDeque::new(),
            waker: None,
        }
    }
}

impl<T> Waiting<T> {
    /// Queues `item`, unless `limit` items wait already (then it is given back). Returns the waker to wake, once the
    /// lock around this queue is released.
    pub(crate) fn push(&mut self, item: T, limit: usize) -> Result<Option<Waker>, T> {
        if self.queue.len() >= limit {
            return Err(item);
        }
        self.queue.push_back(item);
        Ok(self.waker.take())
    }

    /// The oldest item. The last one taken gives the queue's memory back: most devices see an item now and then,
    /// not a stream of them.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let item = self.queue.pop_front();
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
        item
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The waker the next item would wake (to wake it for another reason: an end, a kick).
    pub(crate) fn take_waker(&mut self) -> Option<Waker> {
        self.waker.take()
    }

    /// Drops every item and the waker.
    pub(crate) fn clear(&mut self) {
        self.queue = VecDeque::new();
        self.waker = None;
    }

    /// Ready when an item waits or `done`; otherwise the task of `cx` is woken by the next item.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>, done: bool) -> Poll<()> {
        if !self.queue.is_empty() || done {
            return Poll::Ready(());
        }
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::Waiting;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_waiting_task_is_woken_by_the_next_item_and_the_limit_holds() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut q = Waiting::default();
        assert_eq!(q.poll_ready(&mut cx, false), Poll::Pending);
        assert_eq!(q.poll_ready(&mut cx, true), Poll::Ready(()));
        let woken = q.push(1, 2).unwrap();
        woken.expect("the waiting task's waker").wake();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(q.push(2, 2).unwrap().is_none(), "woken once, not per item");
        assert!(
            matches!(q.push(3, 2), Err(3)),
            "past the limit the item comes back"
        );
        assert_eq!(q.poll_ready(&mut cx, false), Poll::Ready(()));
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(1), Some(2), None));
        assert!(q.is_empty());
        assert_eq!(q.queue.capacity(), 0, "an empty queue keeps no allocation");
    }
}
