//! The condition types, statuses and reasons asyncscale writes, as types: a reason is one of a
//! known set, spelled once. `as_str` gives the text the API and `kubectl` show.

use std::fmt;

macro_rules! named {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }

            /// The value named `text`, as the API spells it.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named! {
    /// The conditions of an AsyncEndpointScaling (all positive polarity).
    ConditionType {
        /// The summary: AWS matches the spec and nothing blocks scaling.
        Ready,
        /// AWS matches the desired configuration.
        Synced,
        /// The quota lowered maxCapacity (or could not be read).
        QuotaClamped,
        /// The newest scaling activity did not fail.
        ScalingHealthy,
    }
}

named! {
    /// A condition's status.
    ConditionStatus { True, False, Unknown }
}

named! {
    /// Why a condition is what it is: CamelCase, as the API conventions ask.
    Reason {
        Reconciling,
        Ready,
        InSync,
        ChangesPending,
        ApplyFailed,
        InvalidSpec,
        Conflict,
        QuotaTooLow,
        WaitingForQuota,
        ObserveFailed,
        RoleNotAssumed,
        DeleteFailed,
        QuotaNotRead,
        QuotaUnknown,
        NotApplied,
        Clamped,
        Shared,
        ClampDisabled,
        EndpointNotFound,
        VariantNotFound,
        NotAsynchronous,
        InstanceTypeMismatch,
        WithinQuota,
        NotObserved,
        NoActivity,
        QuotaExceeded,
        ScalingActivityFailed,
        LastActivityOk,
        EarlierActivityFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_the_api_spells_them() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
        }
        assert_eq!(ConditionType::QuotaClamped.as_str(), "QuotaClamped");
        assert_eq!(
            ConditionStatus::parse("Unknown"),
            Some(ConditionStatus::Unknown)
        );
        assert_eq!(Reason::parse("NoSuchReason"), None);
    }
}
