//! Where the engine reads the time: an injectable clock, so that tests run
//! the loop on tokio's paused clock instead of waiting in real time.

use std::fmt::Debug;

/// A source of the current time, Unix milliseconds.
pub trait Clock: Send + Sync + Debug {
    /// The time now, Unix ms.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        fleetscale_store::now_ms()
    }
}

/// A clock that follows tokio's: `base_ms` plus the time tokio has let pass
/// since the clock was made. On a paused runtime (`start_paused`) it moves
/// only when tokio advances time, so sleeps, timeouts and the engine's idea
/// of "now" stay in step.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_ms: i64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `base_ms` now (needs a tokio runtime).
    pub fn starting_at(base_ms: i64) -> TokioClock {
        TokioClock {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        self.base_ms + self.start.elapsed().as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_moves_with_paused_time_only() {
        let c = TokioClock::starting_at(1_000);
        assert_eq!(c.now_ms(), 1_000);
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(c.now_ms(), 91_000);
    }
}
