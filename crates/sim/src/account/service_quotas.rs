//! Service Quotas for SageMaker (docs/aws-behaviour.md §5): applied values and AWS's defaults.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::arn::partition;
use super::input::{page, required, s, with_token};
use super::state::Account;
use crate::aws_error::{ApiError, ApiResult};
use crate::quotas::known_quota_code;

impl Account {
    pub(super) fn quota_json(&self, region: &str, name: &str, code: &str, value: f64) -> Value {
        json!({
            "ServiceCode": "sagemaker", "ServiceName": "Amazon SageMaker",
            "QuotaArn": format!("arn:{}:servicequotas:{region}:{}:sagemaker/{code}", partition(region), self.id),
            "QuotaCode": code, "QuotaName": name, "Value": value, "Unit": "None",
            "Adjustable": true, "GlobalQuota": false, "QuotaAppliedAtLevel": "ACCOUNT",
        })
    }

    /// The applied or default quotas of the requested service; only SageMaker's exist here.
    pub(super) fn quota_table(
        &self,
        input: &Value,
        default: bool,
    ) -> Result<&BTreeMap<String, f64>, ApiError> {
        let service = required(input, "ServiceCode")?;
        if service != "sagemaker" {
            let message = format!(
                "The request failed because the specified service {service} does not exist."
            );
            return Err(ApiError::new("NoSuchResourceException", message));
        }
        Ok(if default {
            &self.quotas.defaults
        } else {
            &self.quotas.applied
        })
    }

    /// §5.1: an applied value that does not exist answers NoSuchResourceException; the caller
    /// falls back to the AWS default.
    pub(super) fn get_service_quota(
        &mut self,
        input: &Value,
        region: &str,
        default: bool,
    ) -> ApiResult {
        let table = self.quota_table(input, default)?;
        let code = required(input, "QuotaCode")?;
        check_quota_code(code)?;
        let found = table.iter().find(|(name, _)| quota_code(name) == code);
        match found {
            Some((name, value)) => {
                Ok(json!({ "Quota": self.quota_json(region, name, code, *value) }))
            }
            None => Err(ApiError::new(
                "NoSuchResourceException",
                format!("The request failed because the specified quota {code} does not exist."),
            )),
        }
    }

    pub(super) fn list_service_quotas(
        &mut self,
        input: &Value,
        region: &str,
        default: bool,
    ) -> ApiResult {
        let table = self.quota_table(input, default)?;
        // ListServiceQuotas filters by QuotaCode; ListAWSDefaultServiceQuotas has no such member.
        let only = if default { None } else { s(input, "QuotaCode") };
        if let Some(code) = only {
            check_quota_code(code)?;
        }
        if !default {
            crate::validation::one_of(
                crate::validation::Service::ServiceQuotas,
                s(input, "QuotaAppliedAtLevel"),
                "quotaAppliedAtLevel",
                crate::validation::QUOTA_APPLIED_LEVELS,
            )?;
        }
        let items: Vec<Value> = table
            .iter()
            .map(|(name, value)| (name, value, quota_code(name)))
            .filter(|(_, _, code)| only.is_none_or(|o| o == code))
            .map(|(name, value, code)| self.quota_json(region, name, &code, *value))
            .collect();
        // §5.5: MaxResults 1-100. ASSUMPTION: AWS's default page size is not documented; 100.
        let (items, next) = page(items, input, "MaxResults", 100, 100)?;
        Ok(with_token(json!({ "Quotas": items }), next))
    }
}

/// The QuotaCode pattern of the Service Quotas API model.
fn check_quota_code(code: &str) -> Result<(), ApiError> {
    if crate::quotas::is_quota_code(code) {
        return Ok(());
    }
    Err(ApiError::new(
        "ValidationException",
        format!(
            "1 validation error detected: Value '{code}' at 'quotaCode' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][a-zA-Z0-9-]{{1,128}}"
        ),
    ))
}

fn quota_code(name: &str) -> String {
    known_quota_code(name)
}
