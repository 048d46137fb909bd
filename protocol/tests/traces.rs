//! Real editing traces (shared/traces) replayed through `TextOperation`s into a rope and a `TextTree`, and
//! `friendsforever_flat` through the simulation as two clients taking turns at typing.

use codecollab_protocol::{DocumentLimits, TextTree};
use ropey::Rope;

use crate::simulation::Sim;
use crate::support::trace::{self, replay};

#[test]
fn every_sequential_trace_replays_to_its_end_content() {
    let names = trace::sequential_traces();
    assert!(names.len() >= 4, "expected the sequential traces, found {names:?}");
    for name in names {
        let trace = trace::load(&name);
        let rope = replay(Rope::from_str(&trace.start_content), &trace);
        assert!(rope == trace.end_content.as_str(), "{name} diverged from its endContent in a rope");
        let tree = replay(TextTree::from(trace.start_content.as_str()), &trace);
        assert!(tree.to_string() == trace.end_content, "{name} diverged from its endContent in a TextTree");
        eprintln!("{name}: {} transactions replayed", trace.txns.len());
    }
}

#[test]
fn friendsforever_replays_through_the_simulation_as_two_clients() {
    let trace = trace::load("friendsforever_flat");
    let mut sim = Sim::new(42, 2, &trace.start_content, DocumentLimits { history: 100_000, ..Default::default() });
    let mut typist = 0;
    let mut left_in_turn = 0;
    for txn in &trace.txns {
        if left_in_turn == 0 {
            // The next person starts typing once everything the other typed has reached them. Within a turn,
            // the typist's ops are in flight (buffered and composed while unacknowledged) as the other receives.
            sim.settle();
            typist = sim.rng.below(2);
            left_in_turn = sim.rng.between(1, 60);
        }
        left_in_turn -= 1;
        let op = txn.operation(sim.text(typist).len_chars());
        sim.local_edit(typist, op);
        for _ in 0..sim.rng.below(4) {
            sim.deliver_one();
        }
        let (action, who) = (sim.rng.below(400), sim.rng.below(2));
        match action {
            0 => sim.disconnect(who),
            1..=3 => sim.reconnect(who),
            _ => {}
        }
    }
    sim.settle();
    sim.assert_converged();
    assert!(*sim.text(0) == trace.end_content.as_str(), "the replay reached a different text");
    assert!(sim.stats.disconnects > 10, "{:?}", sim.stats);
}
