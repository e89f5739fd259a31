//! Protocol scenarios on the real instruction set: `cargo run --release` runs them in
//! `qemu-system-arm -machine mps2-an386` (Cortex-M4), and
//! `cargo run --release --target thumbv6m-none-eabi` in `-machine microbit` (the
//! Cortex-M0 of an nRF51822: Armv6-M, as the RP2040's Cortex-M0+); each exits with its
//! verdict.
//!
//! Two `Peer`s exchange datagrams through memory on a virtual clock: a hand-over, a
//! failover after the active peer dies, and the hand-over again with a group key.
//! Then it measures the cost of handling a heartbeat, with and without a key, in
//! emulated instructions: QEMU runs with `-icount shift=0` (one instruction = 1 ns of
//! virtual time) and SysTick counts the board's core clock (25 MHz on mps2-an386, 16
//! MHz on the micro:bit), so a tick is a fixed number of instructions, measured first
//! on a loop of known length; averages over many datagrams resolve well below a tick.
//! (QEMU counts instructions, not cycles: it models no pipeline or wait states.)
#![no_std]
#![no_main]

use core::net::{Ipv4Addr, SocketAddr};
use core::time::Duration;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use handover_proto::wire::{self, MAX_DATAGRAM};
use handover_proto::{Auth, Config, Event, Instant, Peer, Policy, State};

type P = Peer<4>;

const SCOPE: u32 = wire::scope_id(b"qemu");
const HEARTBEAT: Duration = Duration::from_millis(100);

fn config(id: u64, policy: Policy, priority: u8, keyed: bool) -> Config {
    let mut c = Config::new(SCOPE, id, 1_700_000_000_000, id);
    c.policy = policy;
    c.priority = priority;
    c.heartbeat = HEARTBEAT;
    if keyed {
        c.auth = Some(Auth::new([0x42; 32]));
    }
    c
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, i), wire::DEFAULT_PORT))
}

/// Two peers on a lossless in-memory link, with what each has seen.
struct Pair {
    peers: [P; 2],
    alive: [bool; 2],
    now: Instant,
    shutdown: [bool; 2],
    predecessor_done: [bool; 2],
    elected: [u32; 2],
}

impl Pair {
    fn new(a: Config, b: Config) -> Self {
        let (Ok(pa), Ok(pb)) = (P::new(a, Instant::ZERO), P::new(b, Instant::ZERO)) else {
            fail("configuration refused");
        };
        Pair {
            peers: [pa, pb],
            alive: [true, true],
            now: Instant::ZERO,
            shutdown: [false; 2],
            predecessor_done: [false; 2],
            elected: [0; 2],
        }
    }

    /// Delivers every output until both peers are quiet.
    fn settle(&mut self) {
        let mut buf = [0u8; MAX_DATAGRAM];
        let mut moved = true;
        while moved {
            moved = false;
            for i in 0..2 {
                if !self.alive[i] {
                    continue;
                }
                while let Some(t) = self.peers[i].poll_transmit(self.now, &mut buf) {
                    moved = true;
                    let other = 1 - i;
                    if self.alive[other] {
                        self.peers[other].handle_datagram(
                            self.now,
                            addr(i as u8 + 1),
                            &buf[..t.len],
                        );
                    }
                }
                while let Some(e) = self.peers[i].poll_event() {
                    moved = true;
                    match e {
                        Event::Shutdown { .. } => {
                            self.shutdown[i] = true;
                            let _ = self.peers[i].shutdown_complete(self.now);
                        }
                        Event::PredecessorDone { .. } => self.predecessor_done[i] = true,
                        Event::Elected => self.elected[i] += 1,
                        _ => {}
                    }
                }
            }
        }
    }

    /// Advances the virtual clock by `d`, firing timers on the way.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.settle();
            let next = (0..2)
                .filter(|&i| self.alive[i])
                .filter_map(|i| self.peers[i].poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for i in 0..2 {
                        if self.alive[i]
                            && self.peers[i].poll_timeout().is_some_and(|t| t <= self.now)
                        {
                            self.peers[i].handle_timeout(self.now);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = end;
        self.settle();
    }
}

fn fail(why: &str) -> ! {
    hprintln!("FAIL: {}", why);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

fn check(ok: bool, why: &str) {
    if !ok {
        fail(why);
    }
}

fn hand_over(keyed: bool) {
    let mut pair = Pair::new(
        config(1, Policy::HandOver, 100, keyed),
        config(2, Policy::HandOver, 100, keyed),
    );
    let now = pair.now;
    check(pair.peers[0].ready(now).is_ok(), "old ready");
    pair.run_for(HEARTBEAT * 2);
    check(pair.peers[0].state() == State::Active, "old active");
    let now = pair.now;
    check(pair.peers[1].ready(now).is_ok(), "new ready");
    pair.run_for(Duration::from_millis(1));
    check(pair.shutdown[0], "old told to shut down within 1 ms");
    pair.run_for(HEARTBEAT * 2);
    check(pair.peers[0].is_finished(), "old finished");
    check(
        pair.predecessor_done[1],
        "new learns its predecessor is done",
    );
    check(pair.peers[1].state() == State::Active, "new active");
    check(!pair.shutdown[1], "new keeps running");
}

fn failover() {
    let fo = Policy::Failover { preempt: false };
    let mut pair = Pair::new(config(1, fo, 200, false), config(2, fo, 100, false));
    let now = pair.now;
    check(pair.peers[0].ready(now).is_ok(), "active ready");
    check(pair.peers[1].ready(now).is_ok(), "standby ready");
    pair.run_for(HEARTBEAT * 10);
    check(
        pair.peers[0].state() == State::Active,
        "priority 200 active",
    );
    check(
        pair.peers[1].state() == State::Standby,
        "priority 100 standby",
    );
    pair.alive[0] = false;
    // Dead interval 3 × 100 ms + skew, plus a heartbeat.
    pair.run_for(HEARTBEAT * 5);
    check(pair.peers[1].state() == State::Active, "standby took over");
    check(pair.elected[1] == 1, "elected once");
}

/// Instructions per received heartbeat (decode, verify if keyed, handle), for a
/// standby of the same scope, or (`foreign`) for a peer of another scope sharing the
/// LAN, which drops it; `clock` is [`instructions_per_tick`]'s measure.
fn cost_per_heartbeat(keyed: bool, foreign: bool, clock: (u64, u64)) -> u32 {
    const ROUNDS: u32 = 100;
    let fo = Policy::Failover { preempt: false };
    let mut pair = Pair::new(config(1, fo, 200, keyed), config(2, fo, 100, keyed));
    let now = pair.now;
    let _ = pair.peers[0].ready(now);
    pair.run_for(HEARTBEAT * 10);
    // Heartbeats of the active peer, captured first so that only receiving is timed.
    let mut datagrams = [([0u8; MAX_DATAGRAM], 0usize); 16];
    let mut now = pair.now;
    for (d, len) in datagrams.iter_mut() {
        now = now + HEARTBEAT;
        pair.peers[0].handle_timeout(now);
        while let Some(t) = pair.peers[0].poll_transmit(now, d) {
            *len = t.len;
        }
        while pair.peers[0].poll_event().is_some() {}
    }
    let mut ticks: u64 = 0;
    let mut handled = 0u32;
    for _ in 0..ROUNDS {
        // A fresh standby each round: repeated heartbeats would be dropped as replays.
        let mut standby_config = config(2, fo, 100, keyed);
        if foreign {
            standby_config.scope = wire::scope_id(b"another device/another service");
        }
        let mut standby = P::new(standby_config, Instant::ZERO).unwrap_or_else(|_| fail("peer"));
        let _ = standby.ready(now);
        while standby
            .poll_transmit(now, &mut [0u8; MAX_DATAGRAM])
            .is_some()
        {}
        while standby.poll_event().is_some() {}
        for (d, len) in &datagrams {
            ticks += ticks_of(|| standby.handle_datagram(now, addr(1), &d[..*len]));
            while standby.poll_event().is_some() {}
            handled += 1;
        }
        let stats = standby.stats();
        if foreign {
            check(stats.dropped_foreign_scope == 16, "every heartbeat dropped");
        } else {
            check(stats.accepted == 16, "every heartbeat accepted");
        }
    }
    let (instructions, per) = clock;
    (ticks * instructions / (per * u64::from(handled))) as u32
}

/// Starts SysTick counting down from its largest value on the core clock.
fn start_systick() {
    // SAFETY: nothing else uses SysTick.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(0x00ff_ffff);
    syst.enable_counter();
}

/// SysTick ticks taken by `f` (less than one wrap of its 24 bits).
fn ticks_of(f: impl FnOnce()) -> u64 {
    // SAFETY: nothing else uses SysTick.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    syst.clear_current();
    let before = cortex_m::peripheral::SYST::get_current();
    f();
    let after = cortex_m::peripheral::SYST::get_current();
    // SysTick counts down.
    u64::from(before.wrapping_sub(after) & 0x00ff_ffff)
}

/// Instructions per SysTick tick on this board, as a ratio (instructions, ticks): a
/// loop of two instructions run `LOOPS` times, timed.
fn instructions_per_tick() -> (u64, u64) {
    const LOOPS: u32 = 100_000;
    let ticks = ticks_of(|| unsafe {
        // SAFETY: counts r0 down to zero and touches nothing else.
        core::arch::asm!("2:", "subs r0, #1", "bne 2b", inout("r0") LOOPS => _, options(nomem, nostack));
    });
    (2 * u64::from(LOOPS), ticks.max(1))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("FAIL: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

#[entry]
fn main() -> ! {
    hand_over(false);
    hprintln!("ok: hand-over");
    failover();
    hprintln!("ok: failover after the active peer died");
    hand_over(true);
    hprintln!("ok: hand-over with a group key");
    start_systick();
    let clock = instructions_per_tick();
    let plain = cost_per_heartbeat(false, false, clock);
    let keyed = cost_per_heartbeat(true, false, clock);
    let foreign = cost_per_heartbeat(false, true, clock);
    hprintln!(
        "size: Peer<8> is {} bytes on this target",
        core::mem::size_of::<Peer<8>>()
    );
    let (instructions, ticks) = clock;
    hprintln!(
        "clock: {} instructions per 100 SysTick ticks",
        instructions * 100 / ticks
    );
    hprintln!("cost: receive heartbeat ~{} instructions", plain);
    hprintln!(
        "cost: receive heartbeat with a key ~{} instructions (authentication ~{})",
        keyed,
        keyed.saturating_sub(plain)
    );
    hprintln!(
        "cost: drop another scope's heartbeat ~{} instructions",
        foreign
    );
    debug::exit(debug::EXIT_SUCCESS);
    loop {}
}
