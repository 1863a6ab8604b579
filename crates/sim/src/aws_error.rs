//! An AWS error as the endpoint answers it. A module of its own so that the account's services,
//! the validation they share, the request-rate limits, STS and SageMaker all return it without
//! depending on one another.

use serde_json::Value;

/// An AWS error: code, message and HTTP status, as AWS sends them.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub status: u16,
}

impl ApiError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status: 400,
        }
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    pub(crate) fn not_found_cw(message: impl Into<String>) -> Self {
        Self {
            code: "ResourceNotFound".into(),
            message: message.into(),
            status: 404,
        }
    }
    /// Whether the client caused it (for awsQuery-compatible error headers).
    pub fn is_sender_fault(&self) -> bool {
        self.status < 500
    }
}

pub type ApiResult = Result<Value, ApiError>;
