//! What the simulator's inputs can get wrong: the flags and files a person writes (times, load
//! profiles, assumptions, quotas), and bodies a client sends. Each message names the input and
//! the fix.

/// An input the simulator cannot use, by kind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A time such as `90s`, `5m`, `2h`.
    #[error("{0}")]
    Time(String),
    /// A load profile (`burst:N@T`, `rate:R/m@T1-T2`).
    #[error("{0}")]
    Load(String),
    /// A modelling assumption `NAME=VALUE`.
    #[error("{0}")]
    Assumption(String),
    /// A quota flag `TYPE=N`.
    #[error("{0}")]
    QuotaFlag(String),
    /// A chart that cannot be drawn.
    #[error("{0}")]
    Chart(String),
    /// A request body that is not CBOR.
    #[error("{0}")]
    Cbor(String),
}
