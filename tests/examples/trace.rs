use core::time::Duration;
use handover_proto::sim::{Network, Sim};
fn main() {
    let seed: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let hb = Duration::from_secs(1);
    let mut sim = Sim::new(seed, Network::lossy(0.3));
    let new_wall = [0, -55 * 365 * 24 * 3_600_000i64, -3 * 3_600_000][(seed % 3) as usize];
    let old = sim.add(0);
    sim.ready(old);
    sim.run_for(hb * 5);
    let new = sim.add(new_wall);
    sim.run_for(Duration::from_millis(seed % 1500));
    sim.ready(new);
    println!("ready at {:?}", sim.now());
    sim.run_for(hb * 12);
    for r in sim.records() { println!("{:>10} n{} g{} {:?}", r.at.as_micros()/1000, r.node, r.rank.generation, r.event); }
    println!("{:?} {:?} {:?}", sim.state(old), sim.state(new), sim.node(old).peer.stats());
}
