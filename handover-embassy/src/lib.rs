//! The handover protocol on [embassy-net]: hand-over and failover for Cortex-M
//! firmware, never allocating and never failing on the network.
//!
//! One task owns the [`Peer`] and its UDP socket ([`Runner`]);
//! the application talks to it through a [`Handover`] handle, by way of a [`Shared`]
//! block: one blocking mutex around what each side asks and answers, and the
//! wakers of whoever waits for it. Both, and the socket's buffers ([`Buffers`]), live
//! in `static`s (e.g. `StaticCell`), so the adapter's memory is fixed at link time.
//!
//! ```ignore
//! static SHARED: StaticCell<Shared<CriticalSectionRawMutex>> = StaticCell::new();
//! static BUFFERS: StaticCell<Buffers> = StaticCell::new();
//!
//! let config = handover_proto::Config::new(scope_id(b"pump-controller"), id, 0, seed);
//! let (handover, runner) = handover_embassy::new::<_, 8>(
//!     stack,
//!     BUFFERS.init(Buffers::new()),
//!     SHARED.init(Shared::new()),
//!     config,
//!     Network::default(),
//! )?;
//! spawner.spawn(handover_task(runner))?;    // async fn handover_task(mut r) { r.run().await }
//! handover.ready().await;                   // claim
//! let successor = handover.shutdown_requested().await;
//! // ... stop the work ...
//! handover.shutdown_complete().await;
//! ```
//!
//! **Multicast on real hardware**: joining the group in the stack is not enough: the
//! Ethernet MAC's destination-address filter must also pass the group's MAC address
//! (`01:00:5e` + the low 23 bits of the group), or accept all multicast. With
//! embassy-stm32's Ethernet driver, enable multicast reception in the MAC
//! configuration; otherwise the peer hears nothing but unicast acknowledgements.
//! The RP2040's network chips have filters of their own:
//!
//! - **WIZnet W5500** (W5500-EVB-Pico, or a module on SPI) with embassy-net-wiznet: the
//!   driver opens the chip's raw socket with its MAC filter on (`MFEN`, bit 7 of
//!   `Sn_MR`), which passes only frames to the chip's own address and broadcasts, so
//!   no multicast frame reaches the stack. The RP2040 example
//!   (`examples/rp2040-w5500`) wraps the SPI device and writes that mode without the
//!   bit; the chip then passes every frame of the segment and smoltcp keeps the
//!   group's, at the cost of SPI transfers on a busy LAN. The W5100S has the same
//!   filter (bit 6); the driver opens the W6100 and W6300 without one.
//! - **Infineon CYW43439** (Raspberry Pi Pico W, Wi-Fi) with the `cyw43` crate: the
//!   chip's firmware drops multicast frames whose address is not in its list; add the
//!   group's (`control.add_multicast_address([0x01, 0x00, 0x5e, 0x40, 0x10, 0x10])`
//!   for the default 239.192.16.16; up to 10 addresses) after joining the network.
//!   Wi-Fi delivers multicast at the access point's DTIM interval to stations in
//!   power save: turn power save off (`PowerManagementMode::None`) or keep the
//!   heartbeat's dead interval (3 heartbeats) well above the DTIM period, or a
//!   standby takes over from an active peer whose heartbeats are merely late.
//!
//! What is known from the chips' datasheets and the drivers' sources is above; the
//! W5500 example is built and measured in CI, but no W5500 or CYW43439 is run here.
//!
//! **Crowded LANs**: every device and service of a fleet shares the one group, so the
//! MAC's filter (exact or hash) cannot tell this service's datagrams from the others'
//! (on Linux a socket filter drops them in the kernel; a microcontroller has no
//! kernel). What the MAC cannot drop, the protocol core does from a datagram's first
//! bytes, before decoding: about 160 instructions per datagram of another scope on a
//! Cortex-M4 (1 µs at 168 MHz; against about 1,770 to receive one of its own scope),
//! 250 on a Cortex-M0 (against 2,790), so 1,000 foreign datagrams per second cost
//! about 0.2 % of an RP2040 at 125 MHz. A
//! MAC filter set to the group's address alone (not "all multicast") keeps other
//! groups' traffic out.
//!
//! **Send errors** (no route yet, neighbour resolution pending, a full buffer) are
//! logged and counted, never fatal: the protocol retransmits claims and goodbyes with
//! a backoff of 10 ms upwards, so the datagram smoltcp drops while it resolves a
//! neighbour costs only a retransmission.
//!
//! **Size**: the adapter and the protocol core add about 11 KB of flash on a
//! Cortex-M7 (12.2 KB on the RP2040's Cortex-M0+, whose Thumb-1 code is larger) and
//! 1.6 KB of static RAM (beyond what the same firmware with a plain UDP socket has)
//! to a firmware built with opt-level "z"; authentication about 1.6 KB more (1.5 KB on the M0+) if the firmware also
//! depends on `sha2` with its `force-soft-compact` feature (a compact SHA-256; the
//! default one is faster and 1.6 KB larger), checkpoints about 1.6 KB more (1.7 KB
//! on the M0+), and the event subscription (feature `events`, on by default) about
//! 500 B and 400 B of RAM. Every build fits in 16 KiB on both. handover-lib's
//! protocol (feature `legacy`, off) costs about 300 B more. See `BENCHMARKS.md` for
//! the measurement of every build on both boards.
//!
//! [embassy-net]: https://docs.rs/embassy-net
#![no_std]
#![forbid(unsafe_code)]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("features `defmt` and `log` are exclusive: choose one logger");

#[macro_use]
mod fmt;

use core::cell::RefCell;
use core::future::poll_fn;
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::task::{Context, Poll};

use embassy_futures::select::{select3, Either3};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpAddress, IpEndpoint, Stack};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::waitqueue::WakerRegistration;
use embassy_time::Timer;
/// The protocol core, whose types this crate's API hands out: one dependency is enough.
pub use handover_proto as proto;
use handover_proto::wire::{self, MAX_DATAGRAM, MAX_STATE};
use handover_proto::{
    Config, Destination, Event, Instant, Peer, State, StateError, Stats, Successor,
};
use heapless::Vec;

/// Datagrams the socket buffers in each direction.
pub const QUEUE: usize = 4;
/// Events buffered for the subscriber; one that falls further behind loses the
/// oldest (counted in [`Events::missed`]). A shutdown request is never lost: see
/// [`Handover::shutdown_requested`].
#[cfg(feature = "events")]
pub const EVENT_QUEUE: usize = 4;

/// The UDP socket's buffers ([`QUEUE`] datagrams of up to [`MAX_DATAGRAM`] bytes each
/// way) and the runner's scratch space for one datagram each way.
pub struct Buffers {
    rx_meta: [PacketMetadata; QUEUE],
    rx: [u8; QUEUE * MAX_DATAGRAM],
    tx_meta: [PacketMetadata; QUEUE],
    tx: [u8; QUEUE * MAX_DATAGRAM],
    scratch: Scratch,
}

/// One datagram in, one out.
struct Scratch {
    rx: [u8; MAX_DATAGRAM],
    tx: [u8; MAX_DATAGRAM],
}

impl Buffers {
    /// Empty buffers.
    pub const fn new() -> Self {
        Buffers {
            rx_meta: [PacketMetadata::EMPTY; QUEUE],
            rx: [0; QUEUE * MAX_DATAGRAM],
            tx_meta: [PacketMetadata::EMPTY; QUEUE],
            tx: [0; QUEUE * MAX_DATAGRAM],
            scratch: Scratch {
                rx: [0; MAX_DATAGRAM],
                tx: [0; MAX_DATAGRAM],
            },
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the protocol runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Network {
    /// Multicast group.
    pub group: Ipv4Addr,
    /// UDP port (also the source port of everything sent).
    pub port: u16,
    /// handover-lib's group and port, where v1 claims go in legacy mode (with the
    /// `legacy` feature).
    pub legacy: SocketAddrV4,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            group: Ipv4Addr::from(wire::DEFAULT_GROUP),
            port: wire::DEFAULT_PORT,
            legacy: SocketAddrV4::new(Ipv4Addr::from(wire::DEFAULT_GROUP), wire::LEGACY_PORT),
        }
    }
}

/// What the application asks of the runner: flags, not a queue of messages, so that
/// asking never waits and asking twice is asking once. The runner takes them all
/// at once and acts in this order.
mod request {
    /// `set_state`: the state is in [`Exchange::app_state`](super::Exchange).
    pub(super) const SET_STATE: u8 = 1;
    pub(super) const READY: u8 = 2;
    pub(super) const SHUTDOWN_COMPLETE: u8 = 4;
    pub(super) const LEAVE: u8 = 8;
    /// Either way of finishing: both end with the goodbye.
    pub(super) const FINISH: u8 = SHUTDOWN_COMPLETE | LEAVE;
}

/// The adapter's view of the peer, kept current by the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status {
    /// Lifecycle state.
    pub state: State,
    /// The peer in charge, as far as this one knows.
    pub leader: Option<u64>,
    /// Datagram counters of the protocol.
    pub stats: Stats,
    /// Datagrams the stack refused to send (no route, buffer full).
    pub send_failed: u32,
    /// Datagrams received longer than the largest valid one ([`MAX_DATAGRAM`]):
    /// dropped before the protocol sees them.
    pub dropped_oversized: u32,
}

/// The state shared between the [`Runner`] and its [`Handover`] handle. Put it in a
/// `StaticCell`: a plain `static` works too, but a few non-zero initial bytes put the
/// whole block in `.data`, whose initial image costs its size in flash again.
pub struct Shared<M: RawMutex> {
    exchange: Mutex<M, RefCell<Exchange>>,
}

/// What the application and the runner say to each other. Plain fields under one
/// lock: a channel or a signal for each kind of message cost a Cortex-M0+ firmware
/// about 1.4 KB more flash for the same few words.
struct Exchange {
    /// [`request`] flags the runner has yet to take.
    requests: u8,
    /// The state of the latest `set_state`.
    app_state: Vec<u8, MAX_STATE>,
    /// Who took over, once one did (kept: every wait for it returns at once).
    shutdown: Option<Successor>,
    /// Set when the goodbye is out (`Ok`, kept: the runner has returned) or
    /// `shutdown_complete` was refused (until the next request to finish).
    finished: Option<Result<(), StateError>>,
    status: Option<Status>,
    /// The one subscriber's events, oldest first (one consumer is what a firmware
    /// has).
    #[cfg(feature = "events")]
    events: heapless::Deque<Event, EVENT_QUEUE>,
    /// Whether the event subscription is taken, and the events it lost.
    #[cfg(feature = "events")]
    subscription: (bool, u64),
    /// The subscriber, waiting for an event.
    #[cfg(feature = "events")]
    events_waiter: WakerRegistration,
    /// The runner, waiting for requests.
    runner: WakerRegistration,
    /// The application, waiting for a shutdown request; and waiting for `finished`
    /// (two tasks may wait for one each).
    shutdown_waiter: WakerRegistration,
    finished_waiter: WakerRegistration,
}

impl<M: RawMutex> Shared<M> {
    /// An empty block.
    pub const fn new() -> Self {
        Shared {
            exchange: Mutex::new(RefCell::new(Exchange {
                requests: 0,
                app_state: Vec::new(),
                shutdown: None,
                finished: None,
                status: None,
                #[cfg(feature = "events")]
                events: heapless::Deque::new(),
                #[cfg(feature = "events")]
                subscription: (false, 0),
                #[cfg(feature = "events")]
                events_waiter: WakerRegistration::new(),
                runner: WakerRegistration::new(),
                shutdown_waiter: WakerRegistration::new(),
                finished_waiter: WakerRegistration::new(),
            })),
        }
    }

    /// Runs `f` on the exchange, under the lock.
    fn with<R>(&self, f: impl FnOnce(&mut Exchange) -> R) -> R {
        self.exchange.lock(|exchange| f(&mut exchange.borrow_mut()))
    }

    /// The application asks `requests` of the runner.
    fn request(&self, requests: u8) {
        self.with(|e| {
            if requests & request::FINISH != 0 {
                e.finished = e.finished.filter(|result| result.is_ok());
            }
            e.requests |= requests;
            e.runner.wake();
        })
    }

    /// The runner: the requests made since it last took them, once there are any.
    fn poll_requests(&self, cx: &mut Context<'_>) -> Poll<u8> {
        self.with(|e| match core::mem::take(&mut e.requests) {
            0 => {
                e.runner.register(cx.waker());
                Poll::Pending
            }
            requests => Poll::Ready(requests),
        })
    }

    /// The application: who took over, once one did.
    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<Successor> {
        self.with(|e| match e.shutdown {
            Some(successor) => Poll::Ready(successor),
            None => {
                e.shutdown_waiter.register(cx.waker());
                Poll::Pending
            }
        })
    }

    /// The application: how its `shutdown_complete` or `leave` ended, once it did.
    fn poll_finished(&self, cx: &mut Context<'_>) -> Poll<Result<(), StateError>> {
        self.with(|e| match e.finished {
            Some(result) => Poll::Ready(result),
            None => {
                e.finished_waiter.register(cx.waker());
                Poll::Pending
            }
        })
    }

    /// The runner: a newer instance took over.
    fn shut_down(&self, successor: Successor) {
        self.with(|e| {
            e.shutdown = Some(successor);
            e.shutdown_waiter.wake();
        })
    }

    /// The runner: the goodbye is out, or the request was refused.
    fn finish(&self, result: Result<(), StateError>) {
        self.with(|e| {
            e.finished = Some(result);
            e.finished_waiter.wake();
        })
    }
}

#[cfg(feature = "events")]
impl<M: RawMutex> Shared<M> {
    /// Queues `event` for the subscriber: a slow one loses its oldest event, never
    /// the newest.
    fn publish(&self, event: Event) {
        self.with(|e| {
            if e.events.is_full() {
                e.events.pop_front();
                e.subscription.1 += 1;
            }
            let _ = e.events.push_back(event);
            e.events_waiter.wake();
        })
    }

    /// The subscriber: the oldest event, once there is one.
    fn poll_event(&self, cx: &mut Context<'_>) -> Poll<Event> {
        self.with(|e| match e.events.pop_front() {
            Some(event) => Poll::Ready(event),
            None => {
                e.events_waiter.register(cx.waker());
                Poll::Pending
            }
        })
    }
}

impl<M: RawMutex> Default for Shared<M> {
    fn default() -> Self {
        Self::new()
    }
}

/// The application's handle.
pub struct Handover<'a, M: RawMutex> {
    shared: &'a Shared<M>,
}

impl<M: RawMutex> Clone for Handover<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: RawMutex> Copy for Handover<'_, M> {}

impl<'a, M: RawMutex> Handover<'a, M> {
    /// The service is ready: claim (hand-over) or stand by (failover).
    pub async fn ready(&self) {
        self.shared.request(request::READY);
    }

    /// Waits until a newer instance has taken over and this one must shut down;
    /// returns who took over (at once if one already did). Never missed, even if
    /// events were not drained.
    pub async fn shutdown_requested(&self) -> Successor {
        poll_fn(|cx| self.shared.poll_shutdown(cx)).await
    }

    /// The application has stopped its work after
    /// [`shutdown_requested`](Self::shutdown_requested):
    /// send the goodbye, and wait until it was delivered (or given up on).
    pub async fn shutdown_complete(&self) -> Result<(), StateError> {
        self.shared.request(request::SHUTDOWN_COMPLETE);
        poll_fn(|cx| self.shared.poll_finished(cx)).await
    }

    /// Leaves at once (failover: a standby takes over without waiting), and waits
    /// until the goodbyes are sent.
    pub async fn leave(&self) -> Result<(), StateError> {
        self.shared.request(request::LEAVE);
        poll_fn(|cx| self.shared.poll_finished(cx)).await
    }

    /// Application state carried by heartbeats while active, at most [`MAX_STATE`]
    /// bytes (longer is refused). A later call replaces a state the runner has not
    /// taken yet.
    pub async fn set_state(&self, state: &[u8]) -> Result<(), handover_proto::StateTooLong> {
        let state = Vec::from_slice(state)
            .map_err(|_| handover_proto::StateTooLong { len: state.len() })?;
        self.shared.with(|e| e.app_state = state);
        self.shared.request(request::SET_STATE);
        Ok(())
    }

    /// The subscription to the events (failover and election events included): the
    /// first call has it, later ones get `None`. Events wait for it from the start, the
    /// oldest lost past [`EVENT_QUEUE`]. With the `events` feature (on by default).
    #[cfg(feature = "events")]
    pub fn events(&self) -> Option<Events<'a, M>> {
        let taken = self
            .shared
            .with(|e| core::mem::replace(&mut e.subscription.0, true));
        (!taken).then_some(Events {
            shared: self.shared,
        })
    }

    /// The runner's latest status (`None` before it first ran).
    pub fn status(&self) -> Option<Status> {
        self.shared.with(|e| e.status)
    }
}

/// The subscription to a peer's events, from [`Handover::events`].
#[cfg(feature = "events")]
pub struct Events<'a, M: RawMutex> {
    shared: &'a Shared<M>,
}

#[cfg(feature = "events")]
impl<M: RawMutex> Events<'_, M> {
    /// The next event.
    pub async fn next(&mut self) -> Event {
        poll_fn(|cx| self.shared.poll_event(cx)).await
    }

    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.shared.with(|e| e.events.pop_front())
    }

    /// Events lost by falling more than [`EVENT_QUEUE`] behind.
    pub fn missed(&self) -> u64 {
        self.shared.with(|e| e.subscription.1)
    }
}

/// Why the adapter could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The protocol configuration was refused.
    Config(handover_proto::ConfigError),
    /// The port is taken.
    Bind,
    /// The stack could not join the group (too many groups, or no multicast support).
    Join,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Bind => f.write_str("port: already bound"),
            Error::Join => f.write_str("group: the stack could not join it"),
        }
    }
}

impl core::error::Error for Error {}

/// The task that owns the peer and its socket: run it with [`Runner::run`].
pub struct Runner<'a, M: RawMutex, const N: usize> {
    peer: Peer<N>,
    socket: UdpSocket<'a>,
    scratch: &'a mut Scratch,
    shared: &'a Shared<M>,
    network: Network,
    epoch: embassy_time::Instant,
    send_failed: u32,
    dropped_oversized: u32,
}

/// Opens the socket on `stack`, joins the group and creates the peer.
pub fn new<'a, M: RawMutex, const N: usize>(
    stack: Stack<'a>,
    buffers: &'a mut Buffers,
    shared: &'a Shared<M>,
    config: Config,
    network: Network,
) -> Result<(Handover<'a, M>, Runner<'a, M, N>), Error> {
    let peer = Peer::new(config, Instant::ZERO).map_err(Error::Config)?;
    let Buffers {
        rx_meta,
        rx,
        tx_meta,
        tx,
        scratch,
    } = buffers;
    let mut socket = UdpSocket::new(stack, rx_meta, rx, tx_meta, tx);
    socket.bind(network.port).map_err(|_| Error::Bind)?;
    match stack.join_multicast_group(IpAddress::Ipv4(network.group)) {
        Ok(()) => {}
        Err(e) => {
            debug!("joining the group failed: {:?}", e);
            return Err(Error::Join);
        }
    }
    let runner = Runner {
        peer,
        socket,
        scratch,
        shared,
        network,
        epoch: embassy_time::Instant::now(),
        send_failed: 0,
        dropped_oversized: 0,
    };
    Ok((Handover { shared }, runner))
}

impl<M: RawMutex, const N: usize> Runner<'_, M, N> {
    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros())
    }

    /// The protocol's counters.
    pub fn stats(&self) -> &Stats {
        self.peer.stats()
    }

    /// Drives the protocol until this instance has finished (after its goodbye). Takes
    /// `&mut self` so that a task holding the runner does not store it twice.
    pub async fn run(&mut self) {
        loop {
            self.flush().await;
            if self.peer.is_finished() {
                self.shared.finish(Ok(()));
                return;
            }
            let now = self.now();
            let deadline = self.peer.poll_timeout();
            if deadline.is_some_and(|d| d <= now) {
                self.peer.handle_timeout(now);
                continue;
            }
            let timer = match deadline {
                Some(d) => {
                    Timer::at(self.epoch + embassy_time::Duration::from_micros(d.as_micros()))
                }
                // Nothing scheduled: wake up now and then anyway.
                None => Timer::after_secs(3600),
            };
            match select3(
                self.socket.recv_from(&mut self.scratch.rx),
                poll_fn(|cx| self.shared.poll_requests(cx)),
                timer,
            )
            .await
            {
                Either3::First(Ok((n, meta))) => {
                    let now = self.now();
                    let from = socket_addr(meta.endpoint);
                    self.peer.handle_datagram(now, from, &self.scratch.rx[..n]);
                }
                Either3::First(Err(_)) => {
                    // Longer than the largest valid datagram: dropped, and counted.
                    self.dropped_oversized = self.dropped_oversized.wrapping_add(1);
                    trace!("oversized datagram dropped");
                }
                Either3::Second(requests) => self.requested(requests),
                Either3::Third(()) => {
                    let now = self.now();
                    self.peer.handle_timeout(now);
                }
            }
        }
    }

    /// Acts on the application's [`request`]s, in their lifecycle's order.
    fn requested(&mut self, requests: u8) {
        let now = self.now();
        let peer = &mut self.peer;
        if requests & request::SET_STATE != 0 {
            // Checked against MAX_STATE by the handle already.
            let _ = self.shared.with(|e| peer.set_state(&e.app_state));
        }
        if requests & request::READY != 0 {
            if let Err(e) = peer.ready(now) {
                warn!("ready ignored in state {:?}", e.state);
            }
        }
        let mut finishing = Ok(());
        if requests & request::SHUTDOWN_COMPLETE != 0 {
            finishing = peer.shutdown_complete(now);
        }
        // Leaving works in any state but the last; asked together, it follows a
        // refused `shutdown_complete`.
        if requests & request::LEAVE != 0 && peer.state() != State::Done {
            finishing = peer.leave(now);
        }
        // A request made while the goodbye is going out ends with it, as the first.
        if let (Err(e), false) = (finishing, peer.state() == State::Done) {
            self.shared.finish(Err(e));
        }
    }

    /// Sends what is queued, then hands events to the application.
    async fn flush(&mut self) {
        let now = self.now();
        let buf = &mut self.scratch.tx;
        while let Some(t) = self.peer.poll_transmit(now, buf) {
            let to = match t.destination {
                Destination::Group => {
                    IpEndpoint::new(IpAddress::Ipv4(self.network.group), self.network.port)
                }
                Destination::LegacyGroup => IpEndpoint::new(
                    IpAddress::Ipv4(*self.network.legacy.ip()),
                    self.network.legacy.port(),
                ),
                Destination::Reply(SocketAddr::V4(a)) => {
                    IpEndpoint::new(IpAddress::Ipv4(*a.ip()), a.port())
                }
                Destination::Reply(SocketAddr::V6(_)) => continue,
            };
            if let Err(e) = self.socket.send_to(&buf[..t.len], to).await {
                // The protocol retransmits what matters.
                self.send_failed = self.send_failed.wrapping_add(1);
                debug!("send failed: {:?}", e);
            }
        }
        while let Some(event) = self.peer.poll_event() {
            if let Event::Shutdown { successor } = event {
                self.shared.shut_down(successor);
            }
            #[cfg(feature = "events")]
            self.shared.publish(event);
        }
        let status = Status {
            state: self.peer.state(),
            leader: self.peer.leader(),
            stats: *self.peer.stats(),
            send_failed: self.send_failed,
            dropped_oversized: self.dropped_oversized,
        };
        self.shared.with(|e| e.status = Some(status));
    }
}

fn socket_addr(endpoint: IpEndpoint) -> SocketAddr {
    match endpoint.addr {
        IpAddress::Ipv4(a) => SocketAddr::V4(SocketAddrV4::new(a, endpoint.port)),
    }
}

#[cfg(all(test, feature = "events"))]
mod tests {
    extern crate std;

    use super::*;
    use embassy_sync::blocking_mutex::raw::NoopRawMutex;

    #[test]
    fn one_subscription_that_loses_the_oldest_events_never_the_newest() {
        let shared = Shared::<NoopRawMutex>::new();
        let handover = Handover { shared: &shared };
        for id in 1..=6 {
            shared.publish(Event::PeerDown { id });
        }
        let mut events = handover.events().expect("the subscription");
        assert!(handover.events().is_none(), "a second subscription");
        let kept: std::vec::Vec<Event> = core::iter::from_fn(|| events.try_next()).collect();
        let newest: std::vec::Vec<Event> = (3..=6).map(|id| Event::PeerDown { id }).collect();
        assert_eq!(kept, newest);
        assert_eq!(events.missed(), 2);
    }
}
