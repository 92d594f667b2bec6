//! Allocator tuning for a process that starts and ends sessions all day.
//!
//! glibc gives each new thread its own malloc arena (up to 8 per core) and keeps freed memory in
//! it. Every session starts fresh render and encode threads that allocate frame-sized buffers,
//! so without a cap the resident size climbs by ~10 MiB per session for dozens of sessions before
//! it levels off (measured by `farview-session-bench`: 183 MiB → 409 MiB over 20 cycles). With
//! two arenas it stays flat; the hot paths reuse their buffers, so arena contention is negligible.
//!
//! What the arenas keep after sessions end is given back with [`release_free_memory`], a couple
//! of seconds after a session ends ([`TrimSchedule`]). Measured by `farview-session-bench`
//! (llvmpipe, 20 standard sessions streaming the Fox, then one standard and one premium): once
//! every session has ended and the host has idled 15 s, RSS is 133 MiB with the trim against
//! 216–218 MiB without it (93 MiB at start).

use std::time::{Duration, Instant};

/// Caps glibc's malloc arenas at two unless `MALLOC_ARENA_MAX` is set. Call it first in `main`,
/// before any thread starts. A no-op on other C libraries.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Gives free heap memory back to the operating system (glibc's `malloc_trim(0)`: free pages in
/// every arena, not only at the top of the heap). glibc keeps what a session's threads freed for
/// reuse, so without it a host settles at several times its idle size after heavy use even when
/// every session has ended. It walks the arenas' free lists (milliseconds on a large heap): call
/// it on a blocking thread. Returns whether memory was released; false on other C libraries.
pub(crate) fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns the allocator's own free pages; it takes each arena's
        // lock, so it is safe to call while other threads allocate.
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// When to call [`release_free_memory`]: `delay` after the last session ended (its render and
/// encode threads have exited and freed their buffers by then), and at most once per
/// `min_interval`, so a host whose sessions come and go all day does not trim constantly.
#[derive(Debug)]
pub(crate) struct TrimSchedule {
    delay: Duration,
    min_interval: Duration,
    due: Option<Instant>,
    last: Option<Instant>,
}

impl TrimSchedule {
    pub(crate) fn new(delay: Duration, min_interval: Duration) -> Self {
        Self {
            delay,
            min_interval,
            due: None,
            last: None,
        }
    }

    /// A session ended (or failed to start) at `now`.
    pub(crate) fn session_ended(&mut self, now: Instant) {
        let mut at = now + self.delay;
        if let Some(last) = self.last {
            at = at.max(last + self.min_interval);
        }
        // One trim after the last of several sessions that end close together.
        self.due = Some(self.due.map_or(at, |d| d.max(at)));
    }

    /// Whether to trim now; a true answer counts as done.
    pub(crate) fn poll(&mut self, now: Instant) -> bool {
        match self.due {
            Some(due) if now >= due => {
                self.due = None;
                self.last = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_sessions_end_and_at_most_once_per_interval() {
        let (delay, interval) = (Duration::from_secs(2), Duration::from_secs(10));
        let mut t = TrimSchedule::new(delay, interval);
        let t0 = Instant::now();
        assert!(!t.poll(t0), "nothing ended");
        t.session_ended(t0);
        assert!(
            !t.poll(t0 + Duration::from_secs(1)),
            "threads may still hold memory"
        );
        // A second session ends meanwhile: one trim, after its own delay.
        t.session_ended(t0 + Duration::from_secs(1));
        assert!(!t.poll(t0 + Duration::from_secs(2)));
        assert!(t.poll(t0 + Duration::from_secs(3)));
        assert!(!t.poll(t0 + Duration::from_secs(4)), "once");
        // Another ends right after the trim: not before the interval is over.
        t.session_ended(t0 + Duration::from_secs(4));
        assert!(!t.poll(t0 + Duration::from_secs(12)));
        assert!(t.poll(t0 + Duration::from_secs(13)));
        assert!(!t.poll(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn trimming_after_a_heap_full_of_small_blocks_is_freed_works() {
        // Allocate and free 64 MiB in small blocks (below the mmap threshold, so they live in
        // the heap), then trim. What comes back is not checked: glibc may have trimmed the top
        // of the heap already.
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 16 << 10]).collect();
        drop(blocks);
        let _ = release_free_memory();
    }
}
