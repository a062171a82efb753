//! The table of open connections: who holds a slot, which slots may be taken back, and the
//! end of all of them at shutdown.
//!
//! A slot is taken when a connection is accepted, before its TLS handshake and its first
//! request, so idle and slow clients hold slots too. Left alone, one client opening a few
//! thousand connections that send nothing would fill every slot and stall scrapes. So:
//!
//! - one address holds at most [`ServerLimits::max_connections_per_address`] slots; past
//!   that, its own oldest idle connection is closed for the new one (or the new one is
//!   closed when all of its connections are in the middle of a request);
//! - when all slots are taken, the oldest idle connection of any address makes room;
//! - only when every slot serves a request do new clients wait in the listen backlog.
//!
//! "Idle" means no request is being answered: waiting for the TLS handshake, for a request
//! head (however slowly it arrives) or between keep-alive requests. Closing an idle
//! connection loses no answer; a client that reuses a closed keep-alive connection opens a
//! new one, as HTTP clients do.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::site::ServerLimits;

/// Every open connection, oldest first.
pub(super) struct Connections {
    max_total: usize,
    max_per_address: usize,
    table: Mutex<Table>,
    /// Signalled when a slot is given back.
    freed: Notify,
    /// Connections closed to make room, for the server's log and tests.
    reclaimed: AtomicUsize,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Entry>,
    /// Slots per address, not counting connections already told to close.
    per_address: HashMap<IpAddr, usize>,
    /// Open connections not yet told to close.
    live: usize,
    closing_all: bool,
}

struct Entry {
    address: IpAddr,
    state: Arc<SlotState>,
    told_to_close: bool,
}

/// Why a connection got no slot.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The address holds its share of slots, and every one is answering a request.
    AddressBusy,
    /// Every slot is answering a request: wait for [`Connections::room`] and ask again.
    AllBusy,
    /// The server is shutting down.
    ShuttingDown,
}

/// What a connection and the table share about it.
#[derive(Default)]
pub(super) struct SlotState {
    /// A request is being answered.
    busy: AtomicBool,
    close: Notify,
}

/// A connection's place in the table; dropping it gives the slot back.
pub(super) struct Slot {
    id: u64,
    connections: Arc<Connections>,
    state: Arc<SlotState>,
}

impl Connections {
    pub fn new(limits: &ServerLimits) -> Arc<Connections> {
        let max_total = limits.max_connections.max(1);
        Arc::new(Connections {
            max_total,
            max_per_address: limits.max_connections_per_address.clamp(1, max_total),
            table: Mutex::new(Table::default()),
            freed: Notify::new(),
            reclaimed: AtomicUsize::new(0),
        })
    }

    /// Waits until accepting one more connection can succeed: a slot is free or an idle
    /// connection can be closed for it.
    pub async fn room(&self) {
        loop {
            let freed = self.freed.notified();
            {
                let table = self
                    .table
                    .lock()
                    .expect("the connection table is never poisoned");
                if table.live < self.max_total
                    || table.open.values().any(|entry| entry.is_idle_and_open())
                {
                    return;
                }
            }
            freed.await;
        }
    }

    /// A slot for a new connection from `address`, closing an idle connection when that is
    /// needed to make room.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Slot, Refusal> {
        let address = address.to_canonical();
        let mut table = self
            .table
            .lock()
            .expect("the connection table is never poisoned");
        if table.closing_all {
            return Err(Refusal::ShuttingDown);
        }
        let held = table.per_address.get(&address).copied().unwrap_or(0);
        if held >= self.max_per_address {
            if !table.close_oldest_idle(Some(address)) {
                return Err(Refusal::AddressBusy);
            }
            self.reclaimed.fetch_add(1, Ordering::Relaxed);
        } else if table.live >= self.max_total {
            if !table.close_oldest_idle(None) {
                return Err(Refusal::AllBusy);
            }
            self.reclaimed.fetch_add(1, Ordering::Relaxed);
        }
        let id = table.next_id;
        table.next_id += 1;
        let state = Arc::new(SlotState::default());
        table.open.insert(
            id,
            Entry {
                address,
                state: state.clone(),
                told_to_close: false,
            },
        );
        *table.per_address.entry(address).or_insert(0) += 1;
        table.live += 1;
        Ok(Slot {
            id,
            connections: self.clone(),
            state,
        })
    }

    /// Tells every connection to close once its request in progress is answered, and
    /// refuses new ones.
    pub fn close_all(&self) {
        let mut table = self
            .table
            .lock()
            .expect("the connection table is never poisoned");
        table.closing_all = true;
        let ids: Vec<u64> = table.open.keys().copied().collect();
        for id in ids {
            table.tell_to_close(id);
        }
    }

    /// Waits until every connection has closed.
    pub async fn all_closed(&self) {
        loop {
            let freed = self.freed.notified();
            if self
                .table
                .lock()
                .expect("the connection table is never poisoned")
                .open
                .is_empty()
            {
                return;
            }
            freed.await;
        }
    }

    /// How many connections were closed to make room for new ones.
    #[cfg(test)]
    pub fn reclaimed(&self) -> usize {
        self.reclaimed.load(Ordering::Relaxed)
    }
}

impl Table {
    /// Tells the oldest idle connection (of `address`, when given) to close; `false` when
    /// there is none.
    fn close_oldest_idle(&mut self, address: Option<IpAddr>) -> bool {
        let oldest = self
            .open
            .iter()
            .find(|(_, entry)| {
                entry.is_idle_and_open() && address.is_none_or(|address| entry.address == address)
            })
            .map(|(id, _)| *id);
        match oldest {
            Some(id) => {
                self.tell_to_close(id);
                true
            }
            None => false,
        }
    }

    fn tell_to_close(&mut self, id: u64) {
        let Some(entry) = self.open.get_mut(&id) else {
            return;
        };
        if entry.told_to_close {
            return;
        }
        entry.told_to_close = true;
        entry.state.close.notify_one();
        let address = entry.address;
        self.forget_live(address);
    }

    fn forget_live(&mut self, address: IpAddr) {
        self.live -= 1;
        if let Some(held) = self.per_address.get_mut(&address) {
            *held -= 1;
            if *held == 0 {
                self.per_address.remove(&address);
            }
        }
    }
}

impl Entry {
    fn is_idle_and_open(&self) -> bool {
        !self.told_to_close && !self.state.busy.load(Ordering::Acquire)
    }
}

impl Slot {
    /// The shared state, for the connection's request handler.
    pub fn state(&self) -> Arc<SlotState> {
        self.state.clone()
    }

    /// Completes when the connection should close (to make room, or at shutdown).
    pub async fn told_to_close(&self) {
        self.state.close.notified().await;
    }
}

impl SlotState {
    /// Marks the connection as answering a request until the returned guard is dropped.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.store(true, Ordering::Release);
        BusyGuard(self.clone())
    }
}

/// Marks a connection idle again when dropped.
pub(super) struct BusyGuard(Arc<SlotState>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self
            .connections
            .table
            .lock()
            .expect("the connection table is never poisoned");
        if let Some(entry) = table.open.remove(&self.id)
            && !entry.told_to_close
        {
            table.forget_live(entry.address);
        }
        drop(table);
        self.connections.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(total: usize, per_address: usize) -> ServerLimits {
        ServerLimits {
            max_connections: total,
            max_connections_per_address: per_address,
            ..ServerLimits::default()
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    /// Past its share, an address loses its oldest idle connection; busy ones are kept,
    /// and when all of its connections are busy the newcomer is refused.
    #[tokio::test]
    async fn an_address_past_its_share_loses_its_oldest_idle_connection() {
        let connections = Connections::new(&limits(10, 2));
        let first = connections.admit(A).unwrap();
        let second = connections.admit(A).unwrap();
        let _busy = second.state().busy();
        let third = connections.admit(A).expect("room is made");
        tokio::time::timeout(Duration::from_secs(5), first.told_to_close())
            .await
            .expect("the oldest idle connection is told to close");
        let _also_busy = third.state().busy();
        assert_eq!(connections.admit(A).err(), Some(Refusal::AddressBusy));
        assert!(
            connections.admit(B).is_ok(),
            "other addresses are not affected"
        );
        assert_eq!(connections.reclaimed(), 1);
    }

    /// When every slot is taken, the oldest idle connection of any address makes room.
    #[tokio::test]
    async fn a_full_table_reclaims_the_oldest_idle_slot() {
        let connections = Connections::new(&limits(2, 2));
        let busy = connections.admit(A).unwrap();
        let _guard = busy.state().busy();
        let idle = connections.admit(A).unwrap();
        let newcomer = connections.admit(B).expect("the idle slot is reclaimed");
        let _busy_newcomer = newcomer.state().busy();
        tokio::time::timeout(Duration::from_secs(5), idle.told_to_close())
            .await
            .expect("the idle connection is told to close");
        assert_eq!(connections.admit(B).err(), Some(Refusal::AllBusy));
        assert_eq!(connections.reclaimed(), 1);
    }
}
