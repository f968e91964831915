//! How a client notices that its server, or the path to it, is gone: HTTP/2 pings on a
//! connection that has gone quiet ([`Keepalive`]).
//!
//! Without them, a stream that is quiet by design (a Chat waiting for its user, a health
//! Watch, a subscription between distant ticks) never learns that the server stopped answering
//! (a hung process, a crashed host, a NAT that forgot the flow): TCP reports nothing while no
//! data is unacknowledged, so the call would wait for its deadline, or for ever.

use std::time::Duration;

use grpcio::ChannelBuilder;

/// The client's keepalive pings (gRFC A8), applied to every connection of a [`Greeter`](crate::Greeter).
///
/// After `time` without reading anything from the server, a connection with a call open sends
/// a PING; when nothing at all comes back within `timeout`, the connection is closed and every
/// call on it ends `UNAVAILABLE`. A dead server is therefore noticed at most `time + timeout`
/// after the last byte it sent: 80 s with the defaults.
///
/// The server must accept pings this often: C-core, grpc-go and grpc-python servers send
/// GOAWAY `too_many_pings` (failing every call on the connection `UNAVAILABLE`) to a client that
/// pings a quiet stream three times in a row more often than their `min_client_ping_interval`
/// (our server's `--min-client-ping-interval`, 30 s by default; 5 minutes in gRFC A8 and in the
/// others' defaults). Against such a server, set `time` above its interval. C-core then doubles
/// `time` for the channel's next connections, as A8 asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// How long a connection may stay quiet (nothing read from it) before it is pinged.
    /// `Duration::MAX`: never ping.
    pub time: Duration,
    /// How long a ping may go unanswered before the connection is given up. Also the
    /// connection's `TCP_USER_TIMEOUT`: data the server's kernel does not acknowledge for this
    /// long closes it too.
    pub timeout: Duration,
    /// Ping connections that have no call open as well. Servers count such pings against the
    /// client unless they permit them (A8: at most one every 2 hours), so it is off.
    pub permit_without_calls: bool,
    /// How many pings C-core sends without a HEADERS or DATA frame of ours in between; 0 is no
    /// limit. C-core's own default, 2, stops pinging a quiet stream after its second ping, which
    /// leaves the call blind to a dead server from then on.
    pub max_pings_without_data: u32,
}

impl Default for Keepalive {
    /// A ping after a minute of quiet, given up after 20 s, only while a call is open, without
    /// a limit on pings between writes.
    fn default() -> Self {
        Keepalive {
            time: Duration::from_secs(60),
            timeout: Duration::from_secs(20),
            permit_without_calls: false,
            max_pings_without_data: 0,
        }
    }
}

impl Keepalive {
    /// No keepalive pings at all (C-core's own default): a dead server goes unnoticed on a
    /// quiet connection until each call's deadline.
    pub fn disabled() -> Self {
        Keepalive { time: Duration::MAX, ..Keepalive::default() }
    }

    /// `builder` with these settings.
    pub(crate) fn apply(&self, builder: ChannelBuilder) -> ChannelBuilder {
        builder
            .keepalive_time(self.time)
            .keepalive_timeout(self.timeout)
            .keepalive_permit_without_calls(self.permit_without_calls)
            .http2_max_pings_without_data(i32::try_from(self.max_pings_without_data).unwrap_or(i32::MAX))
    }
}
