//! The CLI's cache of SageMaker endpoint descriptions, on disk, per AWS endpoint, account and
//! region. Under `quota.policy: Share` every run counts the instances of every endpoint of the
//! account, and SageMaker has no bulk read of them: without the cache a run describes each
//! endpoint and its configuration (two calls per endpoint). With it, a run lists the endpoints
//! (100 a page) and describes only those whose status or LastModifiedTime moved since; an
//! instance count changes only through an update, which moves both. Configurations never
//! change under a name. The cache may be lost or stale at any time: it only saves reads, and a
//! moved summary is always read again.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use asyncscale_core::{EndpointConfigState, EndpointState};
use asyncscale_engine::{EndpointMemory, Place};

#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    /// Seconds since the epoch.
    saved_at: u64,
    endpoints: Vec<EndpointState>,
    configs: Vec<EndpointConfigState>,
}

/// What a run recalled for one account and region.
#[derive(Debug, Clone)]
pub struct Recalled {
    pub place: Place,
    pub endpoints: usize,
    pub age: Duration,
}

pub struct DiskEndpointCache {
    dir: PathBuf,
    /// The AWS endpoint URL the calls go to (None: AWS's own): two local endpoints never share.
    aws_endpoint: Option<String>,
    /// The account of the own credentials (None: unknown, and nothing of theirs is cached).
    own_account: Option<String>,
    recalled: Mutex<Vec<Recalled>>,
}

impl DiskEndpointCache {
    pub fn new(dir: PathBuf, aws_endpoint: Option<String>, own_account: Option<String>) -> Self {
        Self {
            dir,
            aws_endpoint,
            own_account,
            recalled: Mutex::new(Vec::new()),
        }
    }

    /// `$XDG_CACHE_HOME/asyncscale`, else `$HOME/.cache/asyncscale`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("asyncscale"))
    }

    /// What this run recalled, per account and region.
    pub fn recalled(&self) -> Vec<Recalled> {
        self.recalled.lock().expect("cache lock").clone()
    }

    /// Per AWS endpoint, account and region; None where the account is unknown.
    fn file(&self, place: &Place) -> Option<PathBuf> {
        let account = place.account.as_ref().or(self.own_account.as_ref())?;
        let key = format!(
            "{}_{account}_{}",
            self.aws_endpoint.as_deref().unwrap_or("aws"),
            place.region
        );
        Some(self.dir.join(format!("endpoints-{}.json", file_key(&key))))
    }
}

/// `text` as a file name's part: letters, digits and `-` kept, the rest `_`.
pub fn file_key(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl EndpointMemory for DiskEndpointCache {
    fn recall(&self, place: &Place) -> Option<(Vec<EndpointState>, Vec<EndpointConfigState>)> {
        let text = std::fs::read(self.file(place)?).ok()?;
        // An unreadable or older-format file is no cache: the run reads AWS.
        let kept: Kept = serde_json::from_slice(&text).ok()?;
        self.recalled.lock().expect("cache lock").push(Recalled {
            place: place.clone(),
            endpoints: kept.endpoints.len(),
            age: Duration::from_secs(now_s().saturating_sub(kept.saved_at)),
        });
        Some((kept.endpoints, kept.configs))
    }

    fn keep(&self, place: &Place, endpoints: &[&EndpointState], configs: &[&EndpointConfigState]) {
        let kept = serde_json::json!({
            "saved_at": now_s(),
            "endpoints": endpoints,
            "configs": configs,
        });
        let Some(file) = self.file(place) else {
            return;
        };
        // Written aside and renamed: a run killed mid-write leaves the old file or none.
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let aside = file.with_extension(format!("json.{}", std::process::id()));
            std::fs::write(&aside, kept.to_string())?;
            std::fs::rename(&aside, &file)
        });
        if let Err(error) = written {
            tracing::warn!(file = %file.display(), %error, "could not keep the endpoint descriptions; the next run reads them again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asyncscale_core::{EndpointSummary, VariantState};

    fn place() -> Place {
        Place {
            account: None,
            region: "us-east-1".into(),
        }
    }

    fn endpoint(name: &str) -> EndpointState {
        EndpointState {
            summary: EndpointSummary {
                name: name.into(),
                status: "InService".into(),
                last_modified: "2026-12-07T00:00:00Z".into(),
            },
            config_name: format!("{name}-config"),
            failure_reason: None,
            variants: vec![VariantState {
                name: "AllTraffic".into(),
                current_instances: Some(1),
                desired_instances: Some(2),
            }],
        }
    }

    /// What one run keeps the next recalls, per AWS endpoint; a damaged file is no cache.
    #[test]
    fn what_a_run_keeps_the_next_recalls_and_a_damaged_file_is_none() {
        let dir =
            std::env::temp_dir().join(format!("asyncscale-cache-test-{}", std::process::id()));
        let one = DiskEndpointCache::new(
            dir.clone(),
            Some("http://127.0.0.1:1".into()),
            Some("111111111111".into()),
        );
        let config = EndpointConfigState {
            name: "e-config".into(),
            asynchronous: true,
            variants: vec![("AllTraffic".into(), Some("ml.g4dn.xlarge".into()))],
        };
        one.keep(&place(), &[&endpoint("e")], &[&config]);
        let (endpoints, configs) = one.recall(&place()).unwrap();
        assert_eq!(endpoints, vec![endpoint("e")]);
        assert_eq!(configs, vec![config]);
        assert_eq!(one.recalled()[0].endpoints, 1);
        // Another local endpoint, or another region, has none.
        let other = DiskEndpointCache::new(
            dir.clone(),
            Some("http://127.0.0.1:2".into()),
            Some("111111111111".into()),
        );
        assert!(other.recall(&place()).is_none());
        // Another account (another profile's credentials) has none; an unknown one keeps none.
        let elsewhere = DiskEndpointCache::new(
            dir.clone(),
            Some("http://127.0.0.1:1".into()),
            Some("222222222222".into()),
        );
        assert!(elsewhere.recall(&place()).is_none());
        let unknown = DiskEndpointCache::new(dir.clone(), Some("http://127.0.0.1:1".into()), None);
        unknown.keep(&place(), &[&endpoint("e")], &[]);
        assert!(unknown.recall(&place()).is_none());
        let west = Place {
            region: "us-west-2".into(),
            ..place()
        };
        assert!(one.recall(&west).is_none());
        std::fs::write(one.file(&place()).unwrap(), "{not json").unwrap();
        assert!(one.recall(&place()).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
