//! End to end: the plugin frees a client's state at disconnect, so 10 000 connect /
//! disconnect cycles leave the broker's resident memory where warm-up left it.

use test_support::fixture_tokens::{jwks, SigningKey};
use test_support::mosquitto::Broker;
use test_support::raw_mqtt::connect_cycle;

#[test]
fn ten_thousand_connect_cycles_do_not_grow_memory() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let tokens: Vec<(String, String)> = (0..100)
        .map(|i| {
            let client = format!("cycler-{i}");
            let token = key.device_token("888", &client, 3600);
            (client, token)
        })
        .collect();
    let cycle = |n: usize| {
        let (client, token) = &tokens[n % tokens.len()];
        assert_eq!(
            connect_cycle(broker.port(), client, client, token),
            0,
            "cycle {n} admitted"
        );
    };

    for n in 0..1_000 {
        cycle(n);
    }
    let after_warm_up = broker.rss_kib();
    for n in 1_000..10_000 {
        cycle(n);
    }
    // Refused attempts allocate nothing that stays either.
    for n in 0..500 {
        assert_eq!(
            connect_cycle(broker.port(), "x", "x", "garbage"),
            5,
            "attempt {n} refused"
        );
    }
    let after_cycles = broker.rss_kib();
    let growth = after_cycles.saturating_sub(after_warm_up);
    eprintln!(
        "broker RSS: {after_warm_up} KiB after warm-up, {after_cycles} KiB after 10 000 cycles"
    );
    assert!(growth < 1024, "RSS grew by {growth} KiB over 9 000 cycles");
}
