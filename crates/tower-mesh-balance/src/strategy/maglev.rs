//! Consistent hashing on a Maglev lookup table.
//!
//! Every endpoint ranks the table's slots in its own pseudo-random order (derived
//! from the hash of its key), and endpoints take turns claiming their most
//! preferred free slot until the table is full. A lookup is one array access.
//! Because the preferences depend only on keys, removing one of `n` endpoints
//! mostly reassigns that endpoint's slots, about `1/n` of the keys.

use super::{first_available, EndpointView};
use crate::rand::mix;

/// Slots per endpoint; the Maglev paper keeps load imbalance near 1% above 100.
const SLOTS_PER_ENDPOINT: usize = 101;
const MIN_TABLE: usize = 1_021;
/// The table stops growing here (512 KiB of two-byte entries), so that lookups
/// stay in cache: past about 2,600 endpoints each owns fewer than 101 slots, and
/// the load imbalance grows from about 1% to about 4% at 10,000 endpoints.
const MAX_TABLE: usize = 262_144;
/// Rehashes tried when a key's owner is unavailable, before scanning.
const STAND_IN_TRIES: u64 = 4;
const OFFSET_SEED: u64 = 0x6A09_E667_F3BC_C908;
const SKIP_SEED: u64 = 0xBB67_AE85_84CA_A73B;

/// The table of the `ConsistentHash` strategy.
#[derive(Debug, Default)]
pub(crate) struct Maglev {
    table: Table,
    stale: bool,
    built_for: usize,
}

/// Endpoint indexes, in two bytes each while they fit: a smaller table stays in
/// cache longer, and a lookup is one cache miss at most.
#[derive(Debug)]
enum Table {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Default for Table {
    fn default() -> Self {
        Table::Narrow(Vec::new())
    }
}

impl Table {
    fn from_wide(wide: Vec<u32>, endpoints: usize) -> Self {
        if endpoints <= usize::from(u16::MAX) {
            Table::Narrow(wide.into_iter().map(|index| index as u16).collect())
        } else {
            Table::Wide(wide)
        }
    }

    fn len(&self) -> usize {
        match self {
            Table::Narrow(table) => table.len(),
            Table::Wide(table) => table.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, slot: usize) -> usize {
        match self {
            Table::Narrow(table) => usize::from(table[slot]),
            Table::Wide(table) => table[slot] as usize,
        }
    }
}

impl Maglev {
    pub(crate) fn invalidate(&mut self) {
        self.stale = true;
    }

    pub(crate) fn pick<V: EndpointView + ?Sized>(&mut self, view: &V, hash: u64) -> Option<usize> {
        if self.stale || self.built_for != view.len() || self.table.is_empty() {
            self.rebuild(view);
        }
        let owner = self.lookup(hash);
        if view.is_available(owner) {
            return Some(owner);
        }
        // The owner is away: a few rehashes spread its keys over the others.
        for attempt in 1..=STAND_IN_TRIES {
            let stand_in = self.lookup(mix(hash ^ attempt));
            if view.is_available(stand_in) {
                return Some(stand_in);
            }
        }
        first_available(view, owner)
    }

    fn lookup(&self, hash: u64) -> usize {
        if self.table.is_empty() {
            return 0;
        }
        let slot = (hash % self.table.len() as u64) as usize;
        self.table.get(slot)
    }

    fn rebuild<V: EndpointView + ?Sized>(&mut self, view: &V) {
        let wanted = (view.len() * SLOTS_PER_ENDPOINT).clamp(MIN_TABLE, MAX_TABLE);
        // Every endpoint needs a slot, whatever the cap.
        let size = next_prime(wanted.max(view.len()));
        self.table = Table::from_wide(populate(view, size), view.len());
        self.stale = false;
        self.built_for = view.len();
    }
}

/// Fills a table of `size` slots (a prime) with endpoint indexes.
fn populate<V: EndpointView + ?Sized>(view: &V, size: usize) -> Vec<u32> {
    const EMPTY: u32 = u32::MAX;
    if view.is_empty() {
        return Vec::new();
    }
    let size64 = size as u64;
    // Claim in key order, so the table does not depend on the endpoints' indexes.
    let mut order: Vec<usize> = (0..view.len()).collect();
    order.sort_by_key(|&index| view.key_hash(index));
    let mut cursors: Vec<(u64, u64)> = order
        .iter()
        .map(|&index| {
            let key = view.key_hash(index);
            let offset = mix(key ^ OFFSET_SEED) % size64;
            let skip = mix(key ^ SKIP_SEED) % (size64 - 1) + 1;
            (offset, skip)
        })
        .collect();

    let mut table = vec![EMPTY; size];
    let mut filled = 0;
    while filled < size {
        for (turn, &index) in order.iter().enumerate() {
            let (position, skip) = &mut cursors[turn];
            while table[*position as usize] != EMPTY {
                *position = (*position + *skip) % size64;
            }
            table[*position as usize] = index as u32;
            filled += 1;
            if filled == size {
                break;
            }
        }
    }
    table
}

fn next_prime(from: usize) -> usize {
    (from..).find(|&n| is_prime(n)).unwrap_or(from)
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_prime_finds_the_next_prime() {
        assert_eq!(next_prime(1_021), 1_021);
        assert_eq!(next_prime(1_022), 1_031);
        assert_eq!(next_prime(1_010_000), 1_010_003);
    }
}
