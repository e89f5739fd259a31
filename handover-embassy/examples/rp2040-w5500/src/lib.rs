//! What both firmwares share: the RP2040, its W5500 Ethernet chip on SPI0 (wired as
//! on WIZnet's W5500-EVB-Pico) and the network stack.
#![no_std]

use embassy_executor::Spawner;
use embassy_net::{Stack, StackResources};
use embassy_net_wiznet::chip::W5500;
use embassy_net_wiznet::{Device, Runner, State};
use embassy_rp::clocks::RoscRng;
use embassy_rp::gpio::{Input, Level, Output, Pull};
use embassy_rp::peripherals::{DMA_CH0, DMA_CH1, SPI0};
use embassy_rp::spi::{self, Async, Spi};
use embassy_rp::{bind_interrupts, dma};
use embassy_time::Delay;
use embedded_hal_async::spi::{Operation, SpiDevice};
use embedded_hal_bus::spi::ExclusiveDevice;
use static_cell::StaticCell;

bind_interrupts!(struct Irqs {
    DMA_IRQ_0 => dma::InterruptHandler<DMA_CH0>, dma::InterruptHandler<DMA_CH1>;
});

type Bus = MulticastW5500<ExclusiveDevice<Spi<'static, SPI0, Async>, Output<'static>, Delay>>;

#[embassy_executor::task]
async fn ethernet_task(runner: Runner<'static, W5500, Bus, Input<'static>, Output<'static>>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device<'static>>) -> ! {
    runner.run().await
}

/// The W5500's SPI device, with the chip's MAC filter left off.
///
/// embassy-net-wiznet opens the W5500's raw socket with its MAC filter on (`MFEN`),
/// which passes only frames to the chip's own address and broadcasts: multicast
/// frames, and so the group's heartbeats, never reach the stack. This wrapper passes
/// every transaction through unchanged, except the one that writes that socket's mode,
/// which it writes without the filter bit. The stack then filters by the groups it
/// joined; the chip hands it every frame on the segment, which costs SPI time on a
/// busy LAN.
pub struct MulticastW5500<D>(pub D);

/// The W5500 write of socket 0's mode register (`Sn_MR`, address 0x0000): the
/// address, then the control byte (socket 0's register block, write).
const SOCKET0_MODE_WRITE: [&[u8]; 2] = [&[0x00, 0x00], &[0x01 << 3 | 0x04]];
/// MACRAW, with `MFEN` (bit 7) on, as the driver writes it.
const MACRAW_FILTERED: u8 = 0x84;
/// MACRAW, every frame passed on.
const MACRAW_OPEN: [u8; 1] = [0x04];

impl<D: embedded_hal_async::spi::ErrorType> embedded_hal_async::spi::ErrorType
    for MulticastW5500<D>
{
    type Error = D::Error;
}

impl<D: SpiDevice> SpiDevice for MulticastW5500<D> {
    async fn transaction(
        &mut self,
        operations: &mut [Operation<'_, u8>],
    ) -> Result<(), Self::Error> {
        if let [Operation::Write(address), Operation::Write(control), Operation::Write(value)] =
            operations
        {
            if [*address, *control] == SOCKET0_MODE_WRITE && *value == [MACRAW_FILTERED] {
                *value = &MACRAW_OPEN;
            }
        }
        self.0.transaction(operations).await
    }
}

/// Brings up the W5500 and a DHCP-configured stack; returns the stack and a random
/// seed (from the ring oscillator: the RP2040 has no other source of randomness).
pub async fn network(spawner: Spawner) -> (Stack<'static>, u64) {
    let p = embassy_rp::init(Default::default());
    let seed = RoscRng.next_u64();

    let mut config = spi::Config::default();
    config.frequency = 50_000_000;
    let spi = Spi::new(
        p.SPI0, p.PIN_18, p.PIN_19, p.PIN_16, p.DMA_CH0, p.DMA_CH1, Irqs, config,
    );
    let cs = Output::new(p.PIN_17, Level::High);
    let interrupt = Input::new(p.PIN_21, Pull::Up);
    let reset = Output::new(p.PIN_20, Level::High);

    // A locally administered MAC address derived from the seed.
    let s = seed.to_le_bytes();
    let mac = [0x02, s[0], s[1], s[2], s[3], s[4]];
    static STATE: StaticCell<State<4, 4>> = StaticCell::new();
    // Setting an RP2040 pin cannot fail.
    let Ok(spi) = ExclusiveDevice::new(spi, cs, Delay);
    let Ok((device, runner)) = embassy_net_wiznet::new(
        mac,
        STATE.init(State::new()),
        MulticastW5500(spi),
        interrupt,
        reset,
    )
    .await
    else {
        defmt::panic!("no W5500 answered");
    };
    spawner.spawn(ethernet_task(runner).unwrap());

    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        seed,
    );
    spawner.spawn(net_task(runner).unwrap());
    stack.wait_config_up().await;
    (stack, seed)
}
