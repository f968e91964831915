//! What the process's malloc heap holds, to tell a leak from an allocator keeping memory.
//!
//! RSS alone cannot say which: both grow it. [`usage`]'s `in_use` grows only when memory is
//! allocated and never given back (a leak, or a cache still filling); `free` is memory freed
//! but kept in malloc's arenas, which RSS counts too once its pages have been touched.
//! `/metrics` shows both (`greeter_malloc_in_use_bytes`, `greeter_malloc_free_bytes`), and
//! `bench/soak` plots them beside RSS (docs/operations.md, "Memory over a long run").

/// One reading of the process's malloc heap, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeapUsage {
    /// Handed out by malloc and not freed yet (small blocks plus mmapped large ones).
    pub(crate) in_use: u64,
    /// Freed, but kept by malloc in its arenas instead of returned to the kernel.
    pub(crate) free: u64,
}

/// Whether [`usage`] can tell anything on this platform (glibc), known at compile time.
pub(crate) const AVAILABLE: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// The current usage, where the C library can tell (glibc 2.33 or later); `None` elsewhere.
/// `mallinfo2` walks every arena under its lock: fine once per scrape, not once per call.
pub(crate) fn usage() -> Option<HeapUsage> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and only reads malloc's own state.
        let info = unsafe { libc::mallinfo2() };
        Some(HeapUsage { in_use: (info.uordblks + info.hblkhd) as u64, free: info.fordblks as u64 })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// 32 MiB allocated shows in `in_use` and, once freed, leaves it again.
    #[test]
    fn in_use_follows_what_is_allocated_and_freed() {
        let before = usage().unwrap();
        let blocks: Vec<Vec<u8>> = (0..1024).map(|_| vec![1u8; 32 * 1024]).collect();
        let during = usage().unwrap();
        drop(blocks);
        let after = usage().unwrap();
        // Other tests allocate in parallel: allow them 8 MiB either way.
        let slack = 8 << 20;
        assert!(during.in_use + slack > before.in_use + (32 << 20), "{before:?} → {during:?}");
        assert!(after.in_use < during.in_use - (24 << 20), "{during:?} → {after:?}");
    }
}
