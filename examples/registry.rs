//! Instances registered and deregistered at run time, while traffic flows.
//!
//! Run with `cargo run --example registry`. A `ServiceRegistry` is the origin's
//! register / deregister / mark_healthy API; it is also a discovery source, so a
//! `LoadBalancer` built over it follows every change. The program sends a wave of
//! calls after each change and prints how the calls spread.

use std::collections::BTreeMap;
use std::convert::Infallible;

use tower::{service_fn, Service, ServiceExt};
use tower_mesh_balance::{
    InstanceKey, LoadBalancer, LoadBalancerStrategy, NoHealthyInstanceError, ServiceInstance,
    ServiceRegistry,
};
use tower_mesh_core::BoxError;

/// An in-process endpoint that answers with the id of the instance it stands for.
fn endpoint(
    instance: &ServiceInstance,
) -> impl Service<(), Response = String, Error = Infallible, Future: Send> + Send {
    let id = instance.id.clone();
    service_fn(move |()| {
        let id = id.clone();
        async move { Ok::<_, Infallible>(id) }
    })
}

/// Sends `calls` calls and counts which instance answered each.
async fn wave<S>(balancer: &mut S, calls: usize) -> Result<BTreeMap<String, usize>, BoxError>
where
    S: Service<(), Response = String, Error = BoxError>,
{
    let mut served = BTreeMap::new();
    for _ in 0..calls {
        let id = balancer.ready().await?.call(()).await?;
        *served.entry(id).or_insert(0) += 1;
    }
    Ok(served)
}

async fn report<S>(step: &str, balancer: &mut S)
where
    S: Service<(), Response = String, Error = BoxError>,
{
    match wave(balancer, 12).await {
        Ok(served) => println!("{step:<40} 12 calls served by {served:?}"),
        Err(error) if error.is::<NoHealthyInstanceError>() => {
            println!("{step:<40} calls fail fast: {error}")
        }
        Err(error) => println!("{step:<40} unexpected error: {error}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::Weighted);
    let mut balancer = LoadBalancer::builder(registry.discover(endpoint))
        .strategy(LoadBalancerStrategy::Weighted)
        .weight_by(InstanceKey::weight)
        .build()?;

    report("nothing registered", &mut balancer).await;

    registry.register(ServiceInstance::new("eu-1", "10.0.0.1", 8080))?;
    registry.register(ServiceInstance::new("eu-2", "10.0.0.2", 8080).with_weight(2))?;
    report("eu-1 (weight 1), eu-2 (weight 2)", &mut balancer).await;

    registry.register(ServiceInstance::new("us-1", "10.1.0.1", 8080).with_weight(3))?;
    report("us-1 (weight 3) joins", &mut balancer).await;

    registry.mark_healthy("eu-2", false);
    report("eu-2 marked unhealthy", &mut balancer).await;

    registry.deregister("us-1");
    report("us-1 deregistered", &mut balancer).await;

    registry.mark_healthy("eu-2", true);
    registry.deregister("eu-1");
    report("eu-2 healthy again, eu-1 deregistered", &mut balancer).await;

    // The registry also picks by itself, without tower, as the origin's API did.
    let picked = registry.get_instance()?;
    println!("get_instance() outside tower picks {}", picked.address());
    Ok(())
}
