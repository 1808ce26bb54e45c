//! The in-memory states of one kind of aggregate, each in a slot with its command lock.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use crate::model::Event;

/// One aggregate in memory: its folded state and the lock its commands take.
pub(super) struct Slot<A> {
    /// Held by a command from its decision to the fold of its events.
    pub commands: tokio::sync::Mutex<()>,
    state: RwLock<A>,
    /// A command that runs without the lock for a while (a validation) is under way. Not
    /// persisted: after a restart none is.
    pub busy: AtomicBool,
}

impl<A: Clone> Slot<A> {
    fn new(state: A) -> Self {
        Slot {
            commands: tokio::sync::Mutex::new(()),
            state: RwLock::new(state),
            busy: AtomicBool::new(false),
        }
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> A {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Every aggregate of one kind, by id.
pub(super) struct Table<A> {
    slots: RwLock<BTreeMap<Uuid, Arc<Slot<A>>>>,
}

impl<A: Clone> Table<A> {
    pub fn new(states: BTreeMap<Uuid, A>) -> Self {
        let slots = states
            .into_iter()
            .map(|(id, state)| (id, Arc::new(Slot::new(state))))
            .collect();
        Table {
            slots: RwLock::new(slots),
        }
    }

    pub fn get(&self, id: Uuid) -> Option<Arc<Slot<A>>> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.get(id).is_some()
    }

    /// Every state, in id order (ids are UUIDv7: oldest first).
    pub fn states(&self) -> Vec<A> {
        let slots: Vec<Arc<Slot<A>>> = self
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        slots.iter().map(|s| s.snapshot()).collect()
    }

    /// Up to `limit` states with an id after `after`, oldest first, that pass `keep`.
    pub fn page(&self, after: Option<Uuid>, limit: usize, keep: impl Fn(&A) -> bool) -> Vec<A> {
        let slots: Vec<Arc<Slot<A>>> = {
            let map = self.slots.read().unwrap_or_else(|p| p.into_inner());
            let range = match after {
                Some(after) => {
                    map.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                }
                None => map.range(..),
            };
            range.map(|(_, slot)| slot.clone()).collect()
        };
        slots
            .iter()
            .map(|s| s.snapshot())
            .filter(|a| keep(a))
            .take(limit)
            .collect()
    }

    /// Changes the state of `id` in place, if it exists.
    pub fn update(&self, id: Uuid, change: impl FnOnce(&mut A)) {
        if let Some(slot) = self.get(id) {
            change(&mut slot.state.write().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// Folds `event` into its aggregate, creating the slot from a creating event.
    pub fn fold(
        &self,
        event: &Event,
        create: impl FnOnce(&Event) -> Option<A>,
        apply: impl FnOnce(&mut A, &Event),
    ) {
        if let Some(slot) = self.get(event.aggregate_id) {
            apply(
                &mut slot.state.write().unwrap_or_else(|p| p.into_inner()),
                event,
            );
            return;
        }
        if let Some(state) = create(event) {
            self.slots
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(event.aggregate_id)
                .or_insert_with(|| Arc::new(Slot::new(state)));
        }
    }
}
