//! A small least-recently-used cache of decoded tiles, bounded in bytes, so that
//! neighbouring and overlapping reads do not decode the same tile twice.

use super::codec::Tile;
use lru::LruCache;
use std::sync::{Arc, Mutex};

/// Identifies a tile: the grid it belongs to (a level index) and its column and row.
pub(crate) type TileKey = (usize, u64, u64);

pub(crate) struct TileCache {
    inner: Mutex<Inner>,
}

struct Inner {
    tiles: LruCache<TileKey, Arc<Tile>>,
    bytes: usize,
    capacity: usize,
}

impl TileCache {
    pub fn new(capacity_bytes: usize) -> Self {
        TileCache {
            inner: Mutex::new(Inner {
                tiles: LruCache::unbounded(),
                bytes: 0,
                capacity: capacity_bytes,
            }),
        }
    }

    pub fn get(&self, key: &TileKey) -> Option<Arc<Tile>> {
        self.lock().tiles.get(key).cloned()
    }

    pub fn insert(&self, key: TileKey, tile: Arc<Tile>) {
        let mut inner = self.lock();
        if tile.byte_len() > inner.capacity {
            return;
        }
        inner.bytes += tile.byte_len();
        if let Some(old) = inner.tiles.put(key, tile) {
            inner.bytes -= old.byte_len();
        }
        while inner.bytes > inner.capacity {
            match inner.tiles.pop_lru() {
                Some((_, old)) => inner.bytes -= old.byte_len(),
                None => break,
            }
        }
    }

    pub fn set_capacity(&self, capacity_bytes: usize) {
        let mut inner = self.lock();
        inner.capacity = capacity_bytes;
        while inner.bytes > inner.capacity {
            match inner.tiles.pop_lru() {
                Some((_, old)) => inner.bytes -= old.byte_len(),
                None => break,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the cache inconsistent in a way that
        // matters (worst case a wrong byte count), so recover rather than propagate.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
