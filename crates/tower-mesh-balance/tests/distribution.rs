//! How each strategy spreads calls over healthy endpoints.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use support::{call, endpoints, picks, poll_once, Balancer, Mode};
use tower::{Service, ServiceExt};
use tower_mesh_balance::{EndpointView, LoadBalancer, LoadBalancerStrategy, SelectEndpoint};

fn balancer(
    n: usize,
    strategy: LoadBalancerStrategy,
) -> (Balancer, Vec<std::sync::Arc<support::Control>>) {
    let (discover, _handle, controls) = endpoints(n);
    let balancer = LoadBalancer::builder(discover)
        .strategy(strategy)
        .seed(7)
        .build()
        .unwrap();
    (balancer, controls)
}

fn counts(picked: &[usize]) -> HashMap<usize, usize> {
    let mut counts = HashMap::new();
    for &id in picked {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

// ===== round robin =====

#[tokio::test(start_paused = true)]
async fn round_robin_starts_with_the_first_endpoint_and_visits_each_in_order() {
    let (mut balancer, _) = balancer(3, LoadBalancerStrategy::RoundRobin);
    assert_eq!(picks(&mut balancer, 0, 7).await, [0, 1, 2, 0, 1, 2, 0]);
}

#[tokio::test(start_paused = true)]
async fn round_robin_keeps_its_order_while_an_endpoint_is_unhealthy() {
    let (mut balancer, _) = balancer(4, LoadBalancerStrategy::RoundRobin);
    let health = balancer.health_control();
    assert_eq!(picks(&mut balancer, 0, 2).await, [0, 1]);

    health.mark_healthy(2, false);
    assert_eq!(picks(&mut balancer, 2, 5).await, [3, 0, 1, 3, 0]);

    // Back in rotation at its own place, with nothing reshuffled.
    health.mark_healthy(2, true);
    assert_eq!(picks(&mut balancer, 7, 5).await, [1, 2, 3, 0, 1]);
}

// ===== weighted =====

fn weighted(weights: &'static [u32]) -> Balancer {
    let (discover, _handle, _) = endpoints(weights.len());
    LoadBalancer::builder(discover)
        .strategy(LoadBalancerStrategy::Weighted)
        .weight_by(move |key: &usize| weights[*key])
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn weighted_gives_each_endpoint_exactly_its_share_in_every_cycle() {
    let mut balancer = weighted(&[1, 2, 3]);
    let picked = picks(&mut balancer, 0, 600).await;
    for cycle in picked.chunks(6) {
        let shares = counts(cycle);
        assert_eq!(
            (shares[&0], shares[&1], shares[&2]),
            (1, 2, 3),
            "cycle {cycle:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn weighted_spreads_a_heavy_endpoint_instead_of_bunching_it() {
    let mut balancer = weighted(&[5, 1, 1]);
    let picked = picks(&mut balancer, 0, 70).await;
    let longest_run = picked
        .chunk_by(|a, b| a == b)
        .map(<[usize]>::len)
        .max()
        .unwrap();
    assert!(longest_run <= 3, "picks bunched: {picked:?}");
    assert_eq!(counts(&picked)[&0], 50);
}

// ===== random =====

#[tokio::test(start_paused = true)]
async fn random_stays_within_statistical_bounds_with_a_fixed_seed() {
    let (mut balancer, _) = balancer(4, LoadBalancerStrategy::Random);
    let picked = picks(&mut balancer, 0, 40_000).await;
    // Each count is binomial(40 000, 1/4): sd ~ 87; allow five of them.
    for (id, count) in counts(&picked) {
        assert!(
            (9_565..=10_435).contains(&count),
            "endpoint {id} got {count}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn random_repeats_its_picks_for_the_same_seed() {
    let (mut first, _) = balancer(5, LoadBalancerStrategy::Random);
    let (mut second, _) = balancer(5, LoadBalancerStrategy::Random);
    assert_eq!(
        picks(&mut first, 0, 50).await,
        picks(&mut second, 0, 50).await
    );
}

// ===== least connections =====

#[tokio::test(start_paused = true)]
async fn least_connections_sends_each_call_to_the_endpoint_with_fewest_in_flight() {
    let (mut balancer, controls) = balancer(3, LoadBalancerStrategy::LeastConnections);
    for control in &controls {
        control.set_mode(Mode::Hold);
    }
    let held_per_endpoint = |controls: &[std::sync::Arc<support::Control>]| {
        controls.iter().map(|c| c.held()).collect::<Vec<_>>()
    };
    let mut calls = Vec::new();
    // Ties go in turn: one call each, then endpoints 0 and 1 take a second.
    for request in 0..5 {
        calls.push(balancer.ready().await.unwrap().call(request));
    }
    assert_eq!(held_per_endpoint(&controls), [2, 2, 1]);

    // Endpoint 2 has the fewest calls in flight.
    calls.push(balancer.ready().await.unwrap().call(5));
    assert_eq!(held_per_endpoint(&controls), [2, 2, 2]);

    // Endpoint 1 finishes its calls (requests 1 and 4): it takes the next two.
    controls[1].release_all();
    let fourth = calls.remove(4);
    let second = calls.remove(1);
    assert_eq!(fourth.await.unwrap(), (1, 4));
    assert_eq!(second.await.unwrap(), (1, 1));
    for request in 6..8 {
        calls.push(balancer.ready().await.unwrap().call(request));
    }
    assert_eq!(held_per_endpoint(&controls), [2, 2, 2]);
    assert_eq!(controls[1].calls(), 4);
}

// ===== peak EWMA =====

#[tokio::test(start_paused = true)]
async fn peak_ewma_prefers_the_fast_endpoint() {
    let (mut balancer, controls) = balancer(2, LoadBalancerStrategy::PeakEwma);
    controls[0].set_mode(Mode::Delay(Duration::from_millis(80)));
    controls[1].set_mode(Mode::Delay(Duration::from_millis(2)));
    let picked = picks(&mut balancer, 0, 200).await;
    let fast = counts(&picked).get(&1).copied().unwrap_or(0);
    assert!(fast >= 195, "fast endpoint took {fast} of 200");
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_avoids_an_endpoint_with_calls_piling_up() {
    let (mut balancer, controls) = balancer(2, LoadBalancerStrategy::PeakEwma);
    controls[0].set_mode(Mode::Hold);
    // Both start with the same estimate; once endpoint 0 holds calls, its cost
    // is multiplied by its load.
    let _held = balancer.ready().await.unwrap().call(0);
    assert_eq!(controls[0].held() + controls[1].calls(), 1);
    let picked = picks(&mut balancer, 1, 20).await;
    assert!(picked.iter().all(|&id| id == 1), "{picked:?}");
}

// ===== consistent hashing =====

fn hashed(
    n: usize,
) -> (
    Balancer,
    support::DiscoverHandle<usize, support::TestEndpoint>,
) {
    let (discover, handle, _) = endpoints(n);
    let balancer = LoadBalancer::builder(discover)
        .strategy(LoadBalancerStrategy::ConsistentHash)
        .hash_key(|request: &u64| *request)
        .build()
        .unwrap();
    (balancer, handle)
}

async fn owners(balancer: &mut Balancer, keys: u64) -> Vec<usize> {
    picks(balancer, 0, keys).await
}

#[tokio::test(start_paused = true)]
async fn consistent_hash_keeps_each_key_on_its_endpoint() {
    let (mut balancer, _handle) = hashed(10);
    let first = owners(&mut balancer, 2_000).await;
    let second = owners(&mut balancer, 2_000).await;
    assert_eq!(first, second);
    assert_eq!(counts(&first).len(), 10, "every endpoint owns keys");
}

#[tokio::test(start_paused = true)]
async fn consistent_hash_moves_about_one_nth_of_keys_when_one_of_n_leaves() {
    let n = 10;
    let (mut balancer, handle) = hashed(n);
    let before = owners(&mut balancer, 20_000).await;

    handle.remove(3);
    let after = owners(&mut balancer, 20_000).await;

    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let owned_by_leaver = before.iter().filter(|&&owner| owner == 3).count();
    let moved_elsewhere = moved - owned_by_leaver;
    assert!(after.iter().all(|&owner| owner != 3));
    // Every key of the leaver moves; of the others, only a sliver.
    assert!(
        moved as f64 <= 1.3 * 20_000.0 / n as f64,
        "{moved} keys moved"
    );
    assert!(
        moved_elsewhere as f64 <= 0.03 * 20_000.0,
        "{moved_elsewhere} keys moved needlessly"
    );
}

#[tokio::test(start_paused = true)]
async fn consistent_hash_lends_an_unhealthy_endpoints_keys_and_takes_them_back() {
    let (mut balancer, _handle) = hashed(5);
    let health = balancer.health_control();
    let before = owners(&mut balancer, 1_000).await;

    health.mark_healthy(2, false);
    let during = owners(&mut balancer, 1_000).await;
    assert!(during.iter().all(|&owner| owner != 2));
    let disturbed = before
        .iter()
        .zip(&during)
        .filter(|(b, d)| b != d && **b != 2)
        .count();
    assert_eq!(disturbed, 0, "keys of healthy endpoints stay put");

    health.mark_healthy(2, true);
    assert_eq!(owners(&mut balancer, 1_000).await, before);
}

// ===== custom strategies =====

/// Routes request `r` to endpoint `r % len`, to prove the strategy sees requests.
struct Modulo;

impl SelectEndpoint<u64> for Modulo {
    fn select(&mut self, request: &u64, endpoints: &dyn EndpointView) -> Option<usize> {
        Some(*request as usize % endpoints.len())
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_strategy_sees_the_request() {
    let (discover, _handle, _) = endpoints(3);
    let mut balancer: Balancer = LoadBalancer::builder(discover)
        .selector(Modulo)
        .build()
        .unwrap();
    for request in [5, 3, 4, 0, 2] {
        let id = call(&mut balancer, request).await.unwrap();
        assert_eq!(
            keys_in_order(&balancer)[id_index(&balancer, id)],
            request as usize % 3
        );
    }
}

fn keys_in_order(balancer: &Balancer) -> Vec<usize> {
    balancer.keys().copied().collect()
}

fn id_index(balancer: &Balancer, id: usize) -> usize {
    keys_in_order(balancer)
        .iter()
        .position(|&key| key == id)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_strategy_only_picks_healthy_endpoints() {
    use LoadBalancerStrategy::*;
    for strategy in [
        RoundRobin,
        Random,
        Weighted,
        LeastConnections,
        PeakEwma,
        ConsistentHash,
    ] {
        let (discover, _handle, _) = endpoints(6);
        let mut balancer: Balancer = LoadBalancer::builder(discover)
            .strategy(strategy)
            .hash_key(|request: &u64| *request)
            .build()
            .unwrap();
        let health = balancer.health_control();
        health.mark_healthy(1, false);
        health.mark_healthy(4, false);
        assert!(poll_once(&mut balancer).is_ready());
        let seen: HashSet<usize> = picks(&mut balancer, 0, 300).await.into_iter().collect();
        assert_eq!(seen, HashSet::from([0, 2, 3, 5]), "{strategy:?}");
    }
}
