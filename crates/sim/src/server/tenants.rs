//! The simulated accounts one endpoint holds (the caller's own, and each assumed role's), which
//! one a request acts in, its region, the log of answered requests, and the clock they share.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, header};
use serde_json::Value;

use crate::account::{ACCOUNT_ID, Account, ApiError, QuotaTable};
use crate::call_log::{CallLog, Entry};
use crate::model::World;
use crate::model::assumptions::Assumptions;
use crate::sts::Roles;

pub type SharedAccount = Arc<Mutex<Account>>;
pub type SharedWorld = Arc<Mutex<World>>;

/// One simulated account: its AWS state and its scaling model.
#[derive(Clone)]
pub struct Tenant {
    pub account: SharedAccount,
    pub world: SharedWorld,
}

#[derive(Clone)]
pub(super) struct Shared {
    /// The caller's own account (requests signed with any key STS did not issue).
    pub(super) own: Tenant,
    /// The accounts of assumed roles, by account id, created on first use.
    pub(super) others: Arc<Mutex<BTreeMap<String, Tenant>>>,
    pub(super) roles: Arc<Mutex<Roles>>,
    /// What a new account starts with (shared: every request clones `Shared`, and the table
    /// holds every instance type's default).
    pub(super) quotas: Arc<QuotaTable>,
    pub(super) log: Arc<Mutex<CallLog>>,
}

impl Shared {
    /// The account `id` (the caller's own for its id), created on first use with the own
    /// account's quotas and clock.
    pub(super) fn tenant(&self, id: &str) -> Tenant {
        if id == ACCOUNT_ID {
            return self.own.clone();
        }
        let mut others = self.others.lock().expect("accounts lock");
        others
            .entry(id.to_string())
            .or_insert_with(|| {
                let world = self.own.world.lock().expect("world lock");
                let mut fresh = World::new(Assumptions::default(), world.epoch);
                fresh.now = world.now;
                // The request rates `sim serve` enforces hold in every account, each with its
                // own buckets.
                let own = self.own.account.lock().expect("account lock");
                let mut account = Account::with_id(id, QuotaTable::clone(&self.quotas));
                account.rate_limits = own.rate_limits.fresh();
                account.random_faults = own
                    .random_faults
                    .as_ref()
                    .map(|faults| crate::account::RandomFaults::new(faults.rate(), 1));
                Tenant {
                    account: Arc::new(Mutex::new(account)),
                    world: Arc::new(Mutex::new(fresh)),
                }
            })
            .clone()
    }

    /// The account a request acts in: the session's, when signed with keys STS issued.
    pub(super) fn tenant_of(&self, headers: &HeaderMap) -> Tenant {
        let account = access_key_id(headers).and_then(|key| {
            let roles = self.roles.lock().expect("roles lock");
            roles.account_of(&key).map(str::to_string)
        });
        match account {
            Some(id) => self.tenant(&id),
            None => self.own.clone(),
        }
    }

    /// Logs one answered request (see [`crate::call_log`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn log_call(
        &self,
        headers: &HeaderMap,
        received_at: f64,
        account: &SharedAccount,
        service: &str,
        operation: &str,
        input: &Value,
        error: Option<&ApiError>,
    ) {
        let key = access_key_id(headers);
        let source_key = key.as_deref().and_then(|k| {
            let roles = self.roles.lock().expect("roles lock");
            roles.sessions.get(k).and_then(|s| s.source_key.clone())
        });
        let account = account.lock().expect("account lock").id.clone();
        self.log.lock().expect("log lock").push(Entry {
            seq: 0,
            received_at,
            answered_at: crate::account::now(),
            key,
            source_key,
            account,
            region: region(headers),
            service: service.to_string(),
            operation: operation.to_string(),
            write: !crate::call_log::is_read(operation),
            error: error.map(|e| e.code.clone()),
            names: crate::call_log::names_of(input),
        });
    }

    pub(super) fn all_tenants(&self) -> Vec<Tenant> {
        let mut all = vec![self.own.clone()];
        all.extend(self.others.lock().expect("accounts lock").values().cloned());
        all
    }
}

/// Moves every account's clock (each account's scaling model) by `seconds`.
pub(super) fn advance_all(shared: &Shared, seconds: f64) -> f64 {
    let mut now = 0.0;
    for tenant in shared.all_tenants() {
        let mut world = tenant.world.lock().expect("world lock");
        let mut account = tenant.account.lock().expect("account lock");
        world.advance(&mut account, seconds);
        now = f64::max(now, world.now);
    }
    now
}

/// The access key id of a SigV4 `Authorization` header's credential.
pub(super) fn access_key_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split('/').next())
        .map(str::to_string)
}

/// The region from a SigV4 `Authorization` header's credential scope; us-east-1 when unsigned.
pub(super) fn region(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split('/').nth(2))
        .unwrap_or("us-east-1")
        .to_string()
}
