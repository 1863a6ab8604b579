//! What every AWS request meets, whichever protocol carried it: the request rates and faults
//! first, then the account's services or, for SageMaker, the scaling model.

use serde_json::Value;

use super::tenants::{SharedAccount, SharedWorld};
use crate::account::ApiError;

/// The rate limits and faults a request meets before it is served (a delay, an error, or both).
pub(super) async fn admit(
    account: &SharedAccount,
    service: &str,
    operation: &str,
    input: &Value,
    region: &str,
) -> Result<(), ApiError> {
    let fault = {
        let mut account = account.lock().expect("account lock");
        if let Err(error) = account.rate_limits.admit(region, service, operation) {
            account.record_call(service, operation);
            *account
                .throttled
                .entry(service.to_string())
                .or_default()
                .entry(operation.to_string())
                .or_default() += 1;
            tracing::debug!(
                service,
                operation,
                "throttled: over the configured request rate"
            );
            return Err(error);
        }
        if let Some(error) = account
            .random_faults
            .as_mut()
            .and_then(|faults| faults.draw(service))
        {
            account.record_call(service, operation);
            *account
                .injected
                .entry(service.to_string())
                .or_default()
                .entry(operation.to_string())
                .or_default() += 1;
            return Err(error);
        }
        account.take_fault(service, operation, input)
    };
    if let Some(fault) = &fault {
        if fault.delay_seconds > 0.0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(fault.delay_seconds)).await;
        }
        if let Some(error) = fault.error() {
            account
                .lock()
                .expect("account lock")
                .record_call(service, operation);
            tracing::debug!(service, operation, code = %error.code, "injected AWS error");
            return Err(error);
        }
    }
    Ok(())
}

/// Serves one operation, after any fault injected for it.
pub(super) async fn run(
    account: &SharedAccount,
    world: &SharedWorld,
    service: &str,
    operation: &str,
    input: &Value,
    region: &str,
) -> Result<Value, ApiError> {
    admit(account, service, operation, input, region).await?;
    let result = if service == "sagemaker" {
        // SageMaker's endpoints are the scaling model's.
        let world = world.lock().expect("world lock");
        let mut account = account.lock().expect("account lock");
        account.record_call(service, operation);
        crate::sagemaker::handle(&world, operation, input, region, &account.id)
    } else {
        account
            .lock()
            .expect("account lock")
            .handle(service, operation, input, region)
    };
    tracing::debug!(
        service,
        operation,
        ok = result.is_ok(),
        "simulated AWS call"
    );
    // AWS applies a new MinCapacity/MaxCapacity when the call returns, not at the next minute.
    if result.is_ok() && operation == "RegisterScalableTarget" {
        let mut world = world.lock().expect("world lock");
        let mut account = account.lock().expect("account lock");
        world.follow_configuration(&mut account);
    }
    result
}
