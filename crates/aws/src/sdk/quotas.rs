//! Service Quotas through the SDK: the instance quota of a type, found by name, cached, and kept
//! when a refresh fails (an unknown quota must never lift a clamp).

use std::time::{Duration, Instant};

use asyncscale_core::*;

use super::{SQ, SdkBackend};
use asyncscale_engine::{AwsError, ErrorClass, ErrorKind, QuotaReading};

const QUOTA_SERVICE_CODE: &str = "sagemaker";
/// How long a quota value read from Service Quotas is used before it is read again. A raised
/// quota shows within this time.
pub(super) const QUOTA_TTL: Duration = Duration::from_secs(300);
/// After a failed quota read, how long the failure is served before Service Quotas is asked again
/// (every resource of an instance type shares the reading; GetServiceQuota allows 5 calls a second).
const QUOTA_RETRY_AFTER: Duration = Duration::from_secs(10);

/// A quota as last read, and the latest failure to read it.
#[derive(Debug, Clone, Default)]
pub(super) struct CachedQuota {
    value: Option<(Instant, Quota)>,
    failure: Option<(Instant, AwsError)>,
}

impl SdkBackend {
    pub(super) async fn instance_quota(&self, instance_type: &str) -> QuotaReading {
        let name = quota_name(instance_type);
        let asked = Instant::now();
        if let Some(reading) = self.cached_quota_reading(&name, asked) {
            return reading;
        }
        // One read per quota at a time: the reconciles that find it expired together (a resync
        // of several endpoints of a type) share it instead of each asking Service Quotas.
        let flight = self
            .quota_reads
            .lock()
            .expect("quota cache lock")
            .entry(name.clone())
            .or_default()
            .clone();
        let _flight = flight.lock().await;
        if let Some(reading) = self.cached_quota_reading(&name, asked) {
            return reading;
        }
        let cached = self.cached_quota(&name);
        let default_known = cached
            .value
            .as_ref()
            .is_some_and(|(_, q)| q.source == QuotaSource::Default);
        let failure = match self.resolve_quota(&name, default_known).await {
            // An applied value once read is not expected to disappear (quotas are raised on
            // request, not withdrawn): an answer without one, after one was read, is served
            // as a failed read with the applied value kept, never as a raise to the default.
            Ok(quota)
                if quota.source == QuotaSource::Default
                    && cached
                        .value
                        .as_ref()
                        .is_some_and(|(_, q)| q.source == QuotaSource::Applied) =>
            {
                AwsError::local(
                    ErrorClass::Recoverable,
                    "GetServiceQuota",
                    ErrorKind::AppliedValueMissing,
                    format!(
                        "Service Quotas answered that {name} has no applied value, but one was read before; the applied value is kept"
                    ),
                )
            }
            Ok(quota) => {
                let mut cache = self.quota_values.lock().expect("quota cache lock");
                let entry = cache.entry(name).or_default();
                entry.value = Some((Instant::now(), quota.clone()));
                entry.failure = None;
                return QuotaReading {
                    lookup: QuotaLookup::Known(quota),
                    error: None,
                };
            }
            Err(error) => error,
        };
        self.quota_values
            .lock()
            .expect("quota cache lock")
            .entry(name.clone())
            .or_default()
            .failure = Some((Instant::now(), failure.clone()));
        failed_reading(name, cached.value, failure)
    }

    fn cached_quota(&self, name: &str) -> CachedQuota {
        self.quota_values
            .lock()
            .expect("quota cache lock")
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// What the cache answers without asking Service Quotas: a value younger than the TTL, a
    /// failure younger than its hold, or whatever a read that ended after `asked` found (the
    /// read this caller waited for).
    fn cached_quota_reading(&self, name: &str, asked: Instant) -> Option<QuotaReading> {
        let cached = self.cached_quota(name);
        if let Some((read_at, quota)) = &cached.value
            && (read_at.elapsed() < self.quota_ttl || *read_at >= asked)
        {
            return Some(QuotaReading {
                lookup: QuotaLookup::Known(quota.clone()),
                error: None,
            });
        }
        let (failed_at, error) = cached.failure?;
        (failed_at.elapsed() < QUOTA_RETRY_AFTER || failed_at >= asked)
            .then(|| failed_reading(name.to_string(), cached.value, error))
    }
}

/// A failed read: the last value read, if any, served as stale.
fn failed_reading(name: String, last: Option<(Instant, Quota)>, error: AwsError) -> QuotaReading {
    let reason = error.to_string();
    let lookup = match last {
        Some((_, quota)) => QuotaLookup::Stale { quota, reason },
        None => QuotaLookup::Unknown { name, reason },
    };
    QuotaReading {
        lookup,
        error: Some(error),
    }
}

impl SdkBackend {
    /// GetServiceQuota; on NoSuchResourceException, GetAWSDefaultServiceQuota (docs/aws-behaviour.md §5.1).
    /// The quota code is found by name through ListServiceQuotas, then ListAWSDefaultServiceQuotas.
    /// `default_known`: the last read found no applied value, so one more such answer is no news.
    pub(super) async fn resolve_quota(
        &self,
        name: &str,
        default_known: bool,
    ) -> Result<Quota, AwsError> {
        let code = self.quota_code(name).await?;
        let get_applied = || {
            self.call(SQ, "GetServiceQuota", || {
                self.quotas
                    .get_service_quota()
                    .service_code(QUOTA_SERVICE_CODE)
                    .quota_code(&code)
                    .send()
            })
        };
        let mut applied = get_applied().await;
        // AWS's default may be above the applied value: one answer that there is no applied value
        // is not enough to fall back to it. It is asked once more, unless the last read already
        // took two such answers as the truth (then each re-read asks once).
        if !default_known
            && applied
                .as_ref()
                .is_err_and(|e| e.class == ErrorClass::NotFound)
        {
            applied = get_applied().await;
        }
        let (value, source) = match applied {
            Ok(out) => (out.quota().and_then(|q| q.value()), QuotaSource::Applied),
            Err(e) if e.class == ErrorClass::NotFound => {
                let out = self
                    .call(SQ, "GetAWSDefaultServiceQuota", || {
                        self.quotas
                            .get_aws_default_service_quota()
                            .service_code(QUOTA_SERVICE_CODE)
                            .quota_code(&code)
                            .send()
                    })
                    .await?;
                (out.quota().and_then(|q| q.value()), QuotaSource::Default)
            }
            Err(e) => return Err(e),
        };
        let value = value.ok_or_else(|| {
            AwsError::local(
                ErrorClass::Recoverable,
                "GetServiceQuota",
                ErrorKind::NoQuotaValue,
                format!("Service Quotas returned no value for {name} ({code})"),
            )
        })?;
        Ok(Quota {
            name: name.to_string(),
            code,
            value,
            source,
        })
    }

    pub(super) async fn quota_code(&self, name: &str) -> Result<String, AwsError> {
        if let Some(code) = self.quota_codes.lock().expect("quota cache lock").get(name) {
            return Ok(code.clone());
        }
        let found = match self.find_code(name, false).await? {
            Some(code) => Some(code),
            None => self.find_code(name, true).await?,
        };
        let code = found.ok_or_else(|| {
            AwsError::local(
                ErrorClass::Terminal,
                "ListServiceQuotas",
                ErrorKind::NoSuchQuota,
                format!("no Service Quota named '{name}' in service {QUOTA_SERVICE_CODE}: check spec.instanceType"),
            )
        })?;
        self.quota_codes
            .lock()
            .expect("quota cache lock")
            .insert(name.to_string(), code.clone());
        Ok(code)
    }

    /// Pages through ListServiceQuotas (or ListAWSDefaultServiceQuotas); caches every code seen.
    pub(super) async fn find_code(
        &self,
        name: &str,
        defaults: bool,
    ) -> Result<Option<String>, AwsError> {
        let mut token: Option<String> = None;
        loop {
            // The two list operations differ only in their request and output types.
            macro_rules! page {
                ($operation:literal, $method:ident) => {{
                    let out = self
                        .call(SQ, $operation, || {
                            self.quotas
                                .$method()
                                .service_code(QUOTA_SERVICE_CODE)
                                .max_results(100)
                                .set_next_token(token.clone())
                                .send()
                        })
                        .await?;
                    (out.quotas().to_vec(), out.next_token().map(str::to_string))
                }};
            }
            let (quotas, next) = if defaults {
                page!(
                    "ListAWSDefaultServiceQuotas",
                    list_aws_default_service_quotas
                )
            } else {
                page!("ListServiceQuotas", list_service_quotas)
            };
            let mut cache = self.quota_codes.lock().expect("quota cache lock");
            for q in &quotas {
                if let (Some(n), Some(c)) = (q.quota_name(), q.quota_code()) {
                    cache.insert(n.to_string(), c.to_string());
                }
            }
            if let Some(code) = cache.get(name) {
                return Ok(Some(code.clone()));
            }
            drop(cache);
            token = next.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(None);
            }
        }
    }
}
