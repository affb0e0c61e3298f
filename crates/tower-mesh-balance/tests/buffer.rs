//! The balancer behind `tower::buffer::Buffer` on a multi-threaded runtime: many
//! callers at once while endpoints come and go.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use support::{discover, endpoint, Balancer};
use tower::buffer::Buffer;
use tower::ServiceExt;
use tower_mesh_balance::LoadBalancer;

fn assert_send<T: Send + 'static>(_: &T) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_through_a_buffer_are_each_answered_once_during_churn() {
    let (discover, handle) = discover();
    for key in 0..4 {
        handle.insert(key, endpoint(key).0);
    }
    let balancer: Balancer = LoadBalancer::new(discover);
    assert_send(&balancer);
    let service = Buffer::new(balancer, 64);

    // Endpoints 4.. come in while 0.. leave, always keeping some in the set.
    let churn = tokio::spawn(async move {
        for key in 4..40 {
            handle.insert(key, endpoint(key).0);
            handle.remove(key - 4);
            tokio::task::yield_now().await;
        }
    });

    // Four callers at once on this task; the buffer's worker drives the balancer
    // on the runtime's other thread.
    let answered = Arc::new(Mutex::new(HashSet::new()));
    let callers = (0..4u64).map(|caller| {
        let service = service.clone();
        let answered = answered.clone();
        async move {
            for n in 0..250u64 {
                let request = caller * 1_000 + n;
                let (_, echoed) = service.clone().oneshot(request).await.unwrap();
                assert_eq!(echoed, request);
                assert!(
                    answered.lock().unwrap().insert(request),
                    "{request} answered twice"
                );
            }
        }
    });
    // A lost call would hang its caller: a time limit turns that into a failure.
    let all = futures_util::future::join_all(callers);
    tokio::time::timeout(std::time::Duration::from_secs(20), all)
        .await
        .expect("every call is answered");
    churn.await.unwrap();
    assert_eq!(answered.lock().unwrap().len(), 1_000);
}
