//! Giving freed memory back to the system.
//!
//! glibc's allocator keeps what a program frees for its next allocations. Its threads share a
//! handful of arenas (up to eight per core), and an arena gives memory back on its own only
//! from its top, past a threshold: free pages below a block still in use stay resident. A
//! controller's work is bursty and spread over tokio's threads (a fleet refresh parses hundreds
//! of AWS pages, a resync renders hundreds of statuses), so such holes build up. A heap profile
//! of a leader of 300 resources in a soak found its live heap flat (13.8 MB, then 13.3 MB four
//! minutes later) while its resident memory grew; and resident memory is what a container's
//! memory limit counts.
//!
//! `malloc_trim(0)` gives back every whole free page of every arena (glibc 2.8 and later). It
//! runs once a minute on a blocking thread, taking each arena's lock in turn while it walks it;
//! a trim slower than [`SLOW_TRIM`] is logged as a warning. Only glibc builds (the published
//! image runs on glibc) have it; elsewhere nothing is done.

use std::time::Duration;

/// How often freed memory is given back.
pub const TRIM_EVERY: Duration = Duration::from_secs(60);

/// A trim that takes longer holds allocations of the threads it waits for: worth a warning.
pub const SLOW_TRIM: Duration = Duration::from_millis(100);

/// Gives freed pages back to the system; whether the allocator could release any.
#[allow(unsafe_code)] // the workspace's one unsafe call: a C function without arguments.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists, under its own locks.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trims every `every` until the process ends.
pub async fn trim_periodically(every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
        let took = started.elapsed();
        let took_ms = took.as_millis() as u64;
        if took > SLOW_TRIM {
            tracing::warn!(released, took_ms, "giving freed memory back took long");
        } else {
            tracing::debug!(released, took_ms, "freed memory given back");
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu", not(miri)))]
mod tests {
    use super::*;

    fn anonymous_rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    }

    /// A thread fills its arena with small blocks and frees all but one block in 64: the pages
    /// stay resident (the survivors pin the arena's top) until trimmed.
    #[test]
    fn trimming_returns_the_free_pages_a_thread_leaves_behind() {
        let survivors = std::thread::spawn(|| {
            let mut blocks: Vec<Box<[u8; 240]>> =
                (0..200_000).map(|i| Box::new([i as u8; 240])).collect();
            let mut n = 0;
            blocks.retain(|_| {
                n += 1;
                n % 64 == 0
            });
            blocks
        })
        .join()
        .unwrap();
        let before = anonymous_rss();
        assert!(trim(), "the freed pages are released");
        let after = anonymous_rss();
        assert_eq!(survivors.len(), 3125);
        // About 48 MB were allocated, 47 freed: most of it goes back.
        assert!(
            before.saturating_sub(after) > 20_000_000,
            "RssAnon {before} -> {after}"
        );
    }
}
