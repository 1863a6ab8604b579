//! The Application Auto Scaling calls of the SDK adapter against moto (`moto[server]`), a
//! third-party AWS emulator, as a cross-check of the local endpoint. moto 5 implements
//! RegisterScalableTarget, DescribeScalableTargets, PutScalingPolicy, DescribeScalingPolicies,
//! DeleteScalingPolicy and DeregisterScalableTarget, but not tags or scaling activities, and it
//! cannot decode CloudWatch's RPC v2 CBOR; those are covered against the local endpoint only.
//!
//! Needs `moto_server` on PATH. Without it the test says so and passes, unless
//! ASYNCSCALE_REQUIRE_MOTO=1 (set by .ci/run), which makes a missing moto a failure.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use asyncscale_engine::AutoscalingBackend;

mod support;
use support::{backend_at, desired};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_moto() -> Option<(Moto, String)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => Moto(c),
        Err(e) => {
            assert!(
                std::env::var("ASYNCSCALE_REQUIRE_MOTO").is_err(),
                "moto_server is required but cannot start: {e}"
            );
            eprintln!(
                "SKIPPED: moto_server not found ({e}); install with pip install 'moto[server]'"
            );
            return None;
        }
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, format!("http://127.0.0.1:{port}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start listening on port {port}");
}

#[tokio::test]
async fn application_auto_scaling_calls_agree_with_moto() {
    let Some((_moto, url)) = start_moto().await else {
        return;
    };
    let aws = backend_at(&url).await;
    let d = desired("{targetValue: 5}");
    let rid = d.names.resource_id.clone();

    assert_eq!(aws.describe_target(&rid).await.unwrap(), None);
    // moto 5.2 accepts a policy on an unregistered target, where AWS answers
    // ObjectNotFoundException (docs/aws-behaviour.md §2.14); that rule is tested against the local endpoint.

    aws.register_target(&d.target, None).await.unwrap();
    let seen = aws
        .describe_target(&rid)
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(seen.target, d.target);

    let mut bigger = d.target.clone();
    bigger.max_capacity = 8;
    aws.register_target(&bigger, None).await.unwrap();
    assert_eq!(
        aws.describe_target(&rid)
            .await
            .unwrap()
            .unwrap()
            .target
            .max_capacity,
        8,
        "register updates in place"
    );

    let tt_arn = aws.put_policy(&d.target_tracking).await.unwrap();
    let step = &d.scale_from_zero.as_ref().unwrap().policy;
    let step_arn = aws.put_policy(step).await.unwrap();
    assert!(
        step_arn.contains(":policyName/asyncscale-scale-from-zero"),
        "{step_arn}"
    );
    let policies = aws.describe_policies(&rid).await.unwrap();
    let by_name = |n: &str| {
        policies
            .iter()
            .find(|p| p.policy.name == n)
            .unwrap_or_else(|| panic!("{n}"))
            .clone()
    };
    assert_eq!(
        by_name(&d.target_tracking.name).policy,
        d.target_tracking,
        "moto reads back what we wrote"
    );
    assert_eq!(by_name(&step.name).policy, *step);
    assert_eq!(by_name(&d.target_tracking.name).arn, tt_arn);

    aws.delete_policy(&rid, &step.name).await.unwrap();
    assert_eq!(aws.describe_policies(&rid).await.unwrap().len(), 1);
    aws.deregister_target(&rid).await.unwrap();
    assert_eq!(aws.describe_target(&rid).await.unwrap(), None);
    // moto answers a second deregister with ValidationException where the AWS API reference
    // documents ObjectNotFoundException (docs/aws-behaviour.md §2.14); the local endpoint follows AWS.
    assert!(aws.deregister_target(&rid).await.is_err());
    // AWS deletes a target's policies with it (docs/aws-behaviour.md §2.4); moto 5.2 keeps them, so
    // that rule, too, is tested against the local endpoint only.
}
