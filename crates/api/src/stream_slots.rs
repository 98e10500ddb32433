//! How many event streams each user holds open on this instance, bounded
//! (`KEEL_EVENTS_MAX_STREAMS_PER_USER`): every open stream holds a socket, a subscription and
//! a task, so one account must not be able to open them without end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// The open streams per user, shared by the stream handlers of one instance.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    per_user: usize,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// One open stream's place; dropping it frees the place.
#[derive(Debug)]
pub struct StreamSlot {
    user: Uuid,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl StreamSlots {
    pub fn new(per_user: usize) -> Self {
        Self {
            per_user,
            open: Arc::default(),
        }
    }

    /// How many streams one user may hold open.
    pub fn per_user(&self) -> usize {
        self.per_user
    }

    /// A place for one more of `user`'s streams; `None` when they hold the most already.
    pub fn take(&self, user: Uuid) -> Option<StreamSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(user).or_insert(0);
        if *count >= self.per_user {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            user,
            open: Arc::clone(&self.open),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_the_bound_and_a_closed_stream_frees_its_place() {
        let slots = StreamSlots::new(2);
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let first = slots.take(ann).unwrap();
        let _second = slots.take(ann).unwrap();
        assert!(slots.take(ann).is_none(), "the third of Ann's streams is refused");
        assert!(slots.take(bob).is_some(), "others are not affected");
        drop(first);
        assert!(slots.take(ann).is_some(), "a closed stream frees its place");
    }
}
