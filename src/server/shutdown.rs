//! `GracefulShutdown`: stop a server without dropping the calls it is serving.

use std::time::{Duration, Instant};

use futures::future::{self, Either};
use futures_timer::Delay;

use crate::health::HealthService;

/// How long connections stay open after the last call ended (see `GracefulShutdown::run`).
const LINGER: Duration = Duration::from_millis(250);

/// What a graceful shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownOutcome {
    /// From the start of shutdown until the server stopped.
    pub elapsed: Duration,
    /// `true` when calls were still running at the end of the grace period and were cancelled.
    pub cancelled_calls: bool,
}

/// Stops a server in the order load balancers and clients expect:
///
/// 1. health turns NOT_SERVING (watchers hear it at once, then their streams end), so
///    traffic moves elsewhere;
/// 2. if anybody was watching health, the server goes on serving for `drain`: a client
///    balancing over replicas may have picked this one for a call just before it heard,
///    and that call should still be served, not refused (with no drain, 3 comes before 1);
/// 3. the server stops accepting calls (new ones get UNAVAILABLE) and in-flight calls carry on;
/// 4. after `grace`, calls still running are cancelled;
/// 5. a short linger lets the last frames reach the clients, and the server is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulShutdown {
    /// How long in-flight calls may run on after the server stops accepting calls.
    pub grace: Duration,
    /// How long the server keeps accepting calls after health turned NOT_SERVING, when a
    /// client or balancer is watching health.
    pub drain: Duration,
}

impl Default for GracefulShutdown {
    /// A 10 s grace; a 1 s drain, long enough for a health watcher on a LAN to hear
    /// NOT_SERVING and stop picking us, short enough not to hold up a rolling restart.
    fn default() -> Self {
        GracefulShutdown { grace: Duration::from_secs(10), drain: Duration::from_secs(1) }
    }
}

impl GracefulShutdown {
    pub(crate) async fn run(self, server: &mut grpcio::Server, health: &HealthService) -> ShutdownOutcome {
        let started = Instant::now();
        let mut drained = if self.drain.is_zero() {
            // No drain: the server stops accepting before health turns, so a client that
            // has heard NOT_SERVING can no longer start a call here.
            let drained = server.shutdown();
            health.shutdown();
            drained
        } else {
            let watchers = health.shutdown();
            if watchers > 0 {
                log::info!(
                    "health is NOT_SERVING for {watchers} watcher(s); serving on for {:?} while they move away",
                    self.drain
                );
                Delay::new(self.drain).await;
            }
            server.shutdown()
        };
        let cancelled_calls = match future::select(&mut drained, Delay::new(self.grace)).await {
            Either::Left(_) => false,
            Either::Right(_) => {
                log::warn!("grace period of {:?} is over: cancelling the calls still running", self.grace);
                server.cancel_all_calls();
                let _ = drained.await;
                true
            }
        };
        // The last calls' final frames may still be on their way out. Closing a socket
        // whose peer sent something we have not read (a WINDOW_UPDATE, a PING) makes the
        // kernel send RST and drop what was queued, and the client would see UNAVAILABLE
        // for a call that had in fact finished OK. So the connections stay up a moment.
        Delay::new(LINGER).await;
        ShutdownOutcome { elapsed: started.elapsed(), cancelled_calls }
    }
}
