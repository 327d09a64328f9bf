//! Entity states kept between invocations of one sandbox. `log-processing`
//! is keyed by entity, so a sandbox reading a partition sees the same
//! entities batch after batch; re-reading and re-parsing their JSON state
//! every batch was most of the function's cost.
//!
//! The database stays the truth: an entry is used only when its version is
//! the row's current version (read under the row lock), so a state another
//! sandbox wrote since is loaded again. Entries are taken out for a batch
//! and put back, at their new version, only after that batch committed: a
//! batch that fails leaves nothing stale behind.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use logpipe_detect::EntityState;

pub struct StateCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, (i64, EntityState)>,
    /// Insertion order, for eviction (may name entries already taken).
    order: VecDeque<String>,
}

impl StateCache {
    /// At most `capacity` entities (0: nothing is kept).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Takes the entity's state out if it is held at `version`.
    pub fn take(&self, entity: &str, version: i64) -> Option<EntityState> {
        let mut inner = self.lock();
        match inner.map.remove(entity) {
            Some((v, state)) if v == version => Some(state),
            _ => None,
        }
    }

    /// Puts committed states back, each at the version it was saved as.
    pub fn put(&self, states: impl IntoIterator<Item = (String, i64, EntityState)>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        for (entity, version, state) in states {
            if inner.map.insert(entity.clone(), (version, state)).is_none() {
                inner.order.push_back(entity);
            }
        }
        while inner.map.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.map.remove(&oldest);
        }
        // Names of entries taken out since: drop them once they pile up.
        if inner.order.len() > 2 * self.capacity.max(1) {
            let Inner { map, order } = &mut *inner;
            order.retain(|e| map.contains_key(e));
        }
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The cache holds no invariant a panic could break.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpipe_detect::{Engine, EngineConfig};

    fn state(seen: u64) -> EntityState {
        let mut s = Engine::new(EngineConfig::default()).new_state();
        s.records_seen = seen;
        s
    }

    #[test]
    fn a_state_is_used_only_at_its_version_and_only_once() {
        let c = StateCache::new(10);
        c.put([("a".to_string(), 3, state(7))]);
        assert!(c.take("a", 2).is_none(), "another sandbox wrote since");
        // The stale entry is gone: the next batch loads from the database.
        assert!(c.take("a", 3).is_none());
        c.put([("a".to_string(), 4, state(8))]);
        assert_eq!(c.take("a", 4).map(|s| s.records_seen), Some(8));
        assert!(c.take("a", 4).is_none(), "taken for the batch");
    }

    #[test]
    fn the_oldest_entries_go_first_and_zero_keeps_nothing() {
        let c = StateCache::new(2);
        for (i, e) in ["a", "b", "c"].iter().enumerate() {
            c.put([(e.to_string(), 1, state(i as u64))]);
        }
        assert_eq!(c.len(), 2);
        assert!(c.take("a", 1).is_none());
        assert!(c.take("c", 1).is_some());
        let off = StateCache::new(0);
        off.put([("a".to_string(), 1, state(0))]);
        assert!(off.is_empty());
    }
}
