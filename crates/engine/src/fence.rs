//! The leader's write fence: AWS writes go through only while the caller may write.

use std::sync::Arc;

use crate::error::{AwsError, ErrorClass, ErrorKind};

/// Lets AWS writes through only while the caller may write: a controller replica while its
/// leader Lease is valid. Checked before every write, so a replica that lost the Lease (or the
/// connection that renews it) stops writing even in the middle of a plan.
#[derive(Clone, Default)]
pub struct Fence(Option<Arc<dyn Fn() -> Result<(), String> + Send + Sync>>);

impl Fence {
    /// A fence that is always open (the CLI, a controller without leader election).
    pub fn open() -> Self {
        Self(None)
    }

    /// `permits` answers Err(why) when writes must stop.
    pub fn new<E: std::fmt::Display>(
        permits: impl Fn() -> Result<(), E> + Send + Sync + 'static,
    ) -> Self {
        Self(Some(Arc::new(move || {
            permits().map_err(|why| why.to_string())
        })))
    }

    pub fn check(&self) -> Result<(), AwsError> {
        match &self.0 {
            Some(permits) => permits().map_err(|why| {
                AwsError::local(
                    ErrorClass::Recoverable,
                    "WriteFence",
                    ErrorKind::NotLeader,
                    why,
                )
            }),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Fence(checked)"
        } else {
            "Fence(open)"
        })
    }
}
