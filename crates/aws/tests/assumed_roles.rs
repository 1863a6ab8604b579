//! The backend pool with IAM roles, against the local endpoint's STS: a backend per role acts in
//! the role's account, is built once (one AssumeRole), and a role STS refuses fails with STS's
//! words, held for a few seconds so that its resources do not each ask STS again.

use std::sync::Arc;

use asyncscale_aws::{AwsOptions, SdkBackendPool};
use asyncscale_core::{ScalableTarget, SuspendedState};
use asyncscale_engine::{AssumedRole, BackendSource, CallCounter, ErrorKind, Placement};

const GRANTED: &str = "arn:aws:iam::111111111111:role/asyncscale";
const REFUSED: &str = "arn:aws:iam::333333333333:role/asyncscale";

fn in_role(arn: &str) -> Placement {
    Placement {
        region: None,
        role: Some(AssumedRole::new(arn)),
    }
}

#[tokio::test]
async fn a_backend_per_role_acts_in_the_roles_account_and_a_refusal_is_held() {
    let sim = asyncscale_sim::start(
        "127.0.0.1:0".parse().unwrap(),
        asyncscale_sim::QuotaTable::default(),
    )
    .await
    .unwrap();
    sim.roles.lock().unwrap().declare(GRANTED.to_string(), None);
    let calls = CallCounter::default();
    let options = AwsOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(sim.url()),
        default_role: Some(AssumedRole::new(GRANTED)),
        credentials: Some(aws_credential_types::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        )),
        ..AwsOptions::default()
    };
    let pool = SdkBackendPool::new(options, calls.clone());
    let assumed = || calls.count(|op| op == "AssumeRole");

    // The default role applies to a placement without one; one session for both.
    let by_default = pool.backend(&Placement::default()).await.unwrap();
    let named = pool.backend(&in_role(GRANTED)).await.unwrap();
    assert!(Arc::ptr_eq(&by_default, &named));
    assert_eq!(assumed(), 1);
    assert_eq!(named.account(), Some("111111111111"));
    assert_eq!(named.place().to_string(), "account 111111111111, us-east-1");
    named
        .register_target(
            &ScalableTarget {
                resource_id: "endpoint/e/variant/AllTraffic".into(),
                min_capacity: 0,
                max_capacity: 2,
                suspended: SuspendedState::default(),
            },
            None,
        )
        .await
        .unwrap();
    let in_account = |id: &str| {
        let tenant = sim.tenant(id);
        let mut account = tenant.account.lock().unwrap();
        account.snapshot("us-east-1")["ScalableTargets"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(
        (in_account("111111111111"), in_account("123456789012")),
        (1, 0)
    );
    // The endpoint's call log says who made the write: the session's key, and behind it the
    // key that assumed the role (a soak's one-writer check relies on it).
    let log = sim.log_since(0);
    let write = log
        .iter()
        .find(|e| e.operation == "RegisterScalableTarget")
        .expect("the write is logged");
    assert!(write.write && write.error.is_none());
    assert!(
        write.key.as_deref().unwrap().starts_with("ASIA"),
        "{write:?}"
    );
    assert_eq!(write.source_key.as_deref(), Some("AKIDTEST"));
    assert_eq!(write.account, "111111111111");
    assert_eq!(
        write.names,
        "ResourceId=endpoint/e/variant/AllTraffic MinCapacity=0 MaxCapacity=2"
    );
    assert!(write.answered_at >= write.received_at);
    let assume = log.iter().find(|e| e.operation == "AssumeRole").unwrap();
    assert_eq!(
        (assume.key.as_deref(), assume.account.as_str()),
        (Some("AKIDTEST"), "123456789012")
    );

    // Refused: STS's words, and the same error again without asking STS.
    let refused = pool.backend(&in_role(REFUSED)).await.err().unwrap();
    assert_eq!((refused.service, refused.operation), ("sts", "AssumeRole"));
    assert_eq!(
        refused.kind,
        ErrorKind::RoleRefused(Box::new(ErrorKind::Aws("AccessDenied".into())))
    );
    assert!(
        refused.message.contains(&format!(
            "could not assume the role {REFUSED} with asyncscale's own credentials: AccessDenied: User: arn:aws:iam::123456789012:user/asyncscale-local is not authorized to perform: sts:AssumeRole on resource: {REFUSED}"
        )),
        "{}",
        refused.message
    );
    assert!(refused.is_role_refusal());
    assert_eq!(assumed(), 2);
    let again = pool.backend(&in_role(REFUSED)).await.err().unwrap();
    assert_eq!(again, refused);
    assert_eq!(assumed(), 2, "held: STS not asked again at once");

    // Granted later: asked again once the hold is over.
    sim.roles.lock().unwrap().declare(REFUSED.to_string(), None);
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let now_granted = pool.backend(&in_role(REFUSED)).await.unwrap();
    assert_eq!(now_granted.account(), Some("333333333333"));
    assert_eq!(assumed(), 3);
}

/// An AssumeRole STS never answers holds none of its callers longer than the pool's wait, and
/// another role's resources are served meanwhile.
#[tokio::test]
async fn a_hung_assume_role_holds_its_callers_briefly_and_no_other_role() {
    const HUNG: &str = "arn:aws:iam::444444444444:role/asyncscale";
    let sim = asyncscale_sim::start(
        "127.0.0.1:0".parse().unwrap(),
        asyncscale_sim::QuotaTable::default(),
    )
    .await
    .unwrap();
    let hang: asyncscale_sim::Fault = serde_json::from_value(serde_json::json!({
        "service": "sts", "operation": "AssumeRole", "delaySeconds": 120, "count": 0,
        "inputHas": ["RoleArn", HUNG],
    }))
    .unwrap();
    sim.account.lock().unwrap().faults.push(hang);
    let options = AwsOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(sim.url()),
        credentials: Some(aws_credential_types::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        )),
        ..AwsOptions::default()
    };
    let pool = SdkBackendPool::new(options, CallCounter::default())
        .with_build_wait(std::time::Duration::from_secs(3));
    let pool = Arc::new(pool);
    let started = std::time::Instant::now();
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.backend(&in_role(HUNG)).await.err().unwrap() })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let other = pool.backend(&in_role(GRANTED)).await.unwrap();
    assert_eq!(other.account(), Some("111111111111"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "another role is not held up: {:?}",
        started.elapsed()
    );
    for caller in callers {
        let error = caller.await.unwrap();
        assert!(error.is_role_refusal());
        assert!(
            error.message.contains("no answer within 3s"),
            "{}",
            error.message
        );
    }
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(5),
        "each caller waits at most the pool's bound: {waited:?}"
    );
}
