//! The cross-field and immutability rules, shared by the CRD schema (as CEL) and by the Rust
//! validator (as code). Each rule's message is what a user sees from either side.

/// A CEL rule with the message the API server returns when it fails.
#[derive(Debug, Clone, Copy)]
pub struct CelRule {
    /// The JSON path of the object the rule is attached to (`self` in the expression). The Rust
    /// validator reports a rule on `spec` about one schedule at that schedule's field instead.
    pub path: &'static str,
    pub cel: &'static str,
    pub message: &'static str,
}

pub const MIN_NOT_ABOVE_MAX: CelRule = CelRule {
    path: "spec",
    cel: "self.minCapacity <= self.maxCapacity",
    message: "minCapacity must be less than or equal to maxCapacity",
};

pub const ENDPOINT_NAME_IMMUTABLE: CelRule = CelRule {
    path: "spec.endpointName",
    cel: "self == oldSelf",
    message: "endpointName is immutable: create a new AsyncEndpointScaling for another endpoint",
};

pub const VARIANT_NAME_IMMUTABLE: CelRule = CelRule {
    path: "spec.variantName",
    cel: "self == oldSelf",
    message: "variantName is immutable: create a new AsyncEndpointScaling for another variant",
};

/// CloudWatch also takes 10, 20 and 30 s periods, but SageMaker publishes HasBacklogWithoutCapacity
/// once a minute (docs/aws-behaviour.md §1.2): an alarm with a shorter period sees mostly missing data.
pub const ALARM_PERIOD: CelRule = CelRule {
    path: "spec.scaleFromZero.periodSeconds",
    cel: "self % 60 == 0",
    message: "periodSeconds must be a multiple of 60: SageMaker publishes HasBacklogWithoutCapacity once a minute, so a shorter period sees mostly missing data",
};

/// Where asyncscale created things is where it must clean them up: a region change would orphan
/// everything in the old region. An unset region is kept unset (the environment's region).
pub const REGION_IMMUTABLE: CelRule = CelRule {
    path: "spec",
    cel: "has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region)",
    message: "region is immutable (asyncscale would leave everything it created in the old region behind): create a new AsyncEndpointScaling for another region",
};

/// A role's account is where asyncscale created things: another role may land in another
/// account and orphan everything in this one. An unset role is kept unset (the controller's
/// --default-role-arn, or its own credentials).
pub const ROLE_ARN_IMMUTABLE: CelRule = CelRule {
    path: "spec",
    cel: "has(self.roleArn) == has(oldSelf.roleArn) && (!has(self.roleArn) || self.roleArn == oldSelf.roleArn)",
    message: "roleArn is immutable (another role may land in another account, and asyncscale would leave everything it created behind): create a new AsyncEndpointScaling for another role",
};

/// The external id goes with spec.roleArn's AssumeRole; the controller's --default-role-arn is
/// the platform's own role, which takes none.
pub const EXTERNAL_ID_NEEDS_ROLE: CelRule = CelRule {
    path: "spec",
    cel: "!has(self.externalId) || has(self.roleArn)",
    message: "externalId is sent with the AssumeRole of spec.roleArn: set roleArn too, or remove externalId",
};

pub const DATAPOINTS_NOT_ABOVE_PERIODS: CelRule = CelRule {
    path: "spec.scaleFromZero",
    cel: "self.datapointsToAlarm <= self.evaluationPeriods",
    message: "datapointsToAlarm must be less than or equal to evaluationPeriods",
};

pub const ALARM_WINDOW: CelRule = CelRule {
    path: "spec.scaleFromZero",
    cel: "self.periodSeconds * self.evaluationPeriods <= (self.periodSeconds < 3600 ? 86400 : 604800)",
    message: "periodSeconds * evaluationPeriods must be at most 86400 (one day), or 604800 (one week) when periodSeconds is 3600 or more",
};

pub const SCHEDULE_SETS_CAPACITY: CelRule = CelRule {
    path: "spec.schedules[]",
    cel: "has(self.minCapacity) || has(self.maxCapacity)",
    message: "a schedule must set minCapacity, maxCapacity or both",
};

pub const SCHEDULE_MIN_NOT_ABOVE_MAX: CelRule = CelRule {
    path: "spec.schedules[]",
    cel: "!has(self.minCapacity) || !has(self.maxCapacity) || self.minCapacity <= self.maxCapacity",
    message: "a schedule's minCapacity must be less than or equal to its maxCapacity",
};

pub const SCHEDULE_END_AFTER_START: CelRule = CelRule {
    path: "spec.schedules[]",
    cel: "!has(self.startTime) || !has(self.endTime) || timestamp(self.endTime) > timestamp(self.startTime)",
    message: "a schedule's endTime must be after its startTime",
};

/// A schedule that sets only minCapacity leaves MaxCapacity as it is: above maxCapacity the
/// action would fail in AWS (MinCapacity above MaxCapacity). The fix offered works under every
/// quota policy: giving the schedule a maxCapacity as well would, under Share, break
/// [`SCHEDULE_MAX_WITHIN_SHARE`] instead.
pub const SCHEDULE_MIN_WITHIN_SPEC_MAX: CelRule = CelRule {
    path: "spec",
    cel: "!has(self.schedules) || self.schedules.all(s, !has(s.minCapacity) || has(s.maxCapacity) || s.minCapacity <= self.maxCapacity)",
    message: "a schedule that sets only minCapacity must keep it at or below spec.maxCapacity, or its action fails in AWS (MinCapacity above MaxCapacity): lower the schedule's minCapacity to at most spec.maxCapacity, or raise spec.maxCapacity",
};

pub const SCHEDULE_MAX_NOT_BELOW_SPEC_MIN: CelRule = CelRule {
    path: "spec",
    cel: "!has(self.schedules) || self.schedules.all(s, !has(s.maxCapacity) || has(s.minCapacity) || s.maxCapacity >= self.minCapacity)",
    message: "a schedule that sets only maxCapacity must keep it at or above minCapacity: set the schedule's minCapacity too",
};

/// A share is never above maxCapacity (crate::share in asyncscale-core): a scheduled raise past it
/// could never take effect, and asyncscale would lower it again after every run.
pub const SCHEDULE_MAX_WITHIN_SHARE: CelRule = CelRule {
    path: "spec",
    cel: "!has(self.schedules) || !has(self.quota) || !has(self.quota.policy) || self.quota.policy != 'Share' || self.schedules.all(s, !has(s.maxCapacity) || s.maxCapacity <= self.maxCapacity)",
    message: "with quota.policy Share a schedule's maxCapacity must be at most maxCapacity (an endpoint's share never exceeds maxCapacity): raise maxCapacity and let a schedule lower it, or use quota.policy Clamp",
};

/// After a schedule that sets minCapacity, one that sets only maxCapacity (or the other way
/// round) would leave MinCapacity above MaxCapacity, and AWS fails that run.
pub const SCHEDULES_AGREE: CelRule = CelRule {
    path: "spec",
    cel: "!has(self.schedules) || self.schedules.all(a, !has(a.minCapacity) || self.schedules.all(b, !has(b.maxCapacity) || a.minCapacity <= b.maxCapacity || (has(a.maxCapacity) && has(b.minCapacity))))",
    message: "one schedule's minCapacity is above another's maxCapacity, and one of the two does not set both: whichever runs second would fail in AWS (MinCapacity above MaxCapacity); set both capacities in each, or bring them in line",
};

/// Every rule, for tests that compare the schema with the Rust validator.
pub const ALL: &[CelRule] = &[
    MIN_NOT_ABOVE_MAX,
    ENDPOINT_NAME_IMMUTABLE,
    VARIANT_NAME_IMMUTABLE,
    REGION_IMMUTABLE,
    ROLE_ARN_IMMUTABLE,
    EXTERNAL_ID_NEEDS_ROLE,
    ALARM_PERIOD,
    DATAPOINTS_NOT_ABOVE_PERIODS,
    ALARM_WINDOW,
    SCHEDULE_SETS_CAPACITY,
    SCHEDULE_MIN_NOT_ABOVE_MAX,
    SCHEDULE_END_AFTER_START,
    SCHEDULE_MIN_WITHIN_SPEC_MAX,
    SCHEDULE_MAX_NOT_BELOW_SPEC_MIN,
    SCHEDULE_MAX_WITHIN_SHARE,
    SCHEDULES_AGREE,
];

/// SageMaker's endpoint and variant name pattern (CreateEndpoint / ProductionVariant API).
pub const SAGEMAKER_NAME_PATTERN: &str = "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$";
/// `ml.<family>.<size>`, e.g. `ml.g4dn.xlarge`.
pub const INSTANCE_TYPE_PATTERN: &str = "^ml\\.[a-z0-9-]+\\.[a-z0-9]+$";
/// AWS region names, e.g. `us-east-1`, `us-gov-west-1`.
pub const REGION_PATTERN: &str = "^[a-z]{2}(-[a-z]+)+-[0-9]+$";
/// An IAM role ARN, `arn:<partition>:iam::<account>:role/<path/><name>`: AWS's partitions,
/// IAM's role name (1-64 characters) and path (at most 512 characters with its leading `/`,
/// which the ARN leaves out).
pub const ROLE_ARN_PATTERN: &str = "^arn:aws(-cn|-us-gov|-iso|-iso-[bef]|-eusc)?:iam::[0-9]{12}:role/([!-~]{1,510}/)?[A-Za-z0-9+=,.@_-]{1,64}$";
/// STS AssumeRole's ExternalId characters, `[\w+=,.@:/-]` (2-1224 of them: the schema's length
/// bounds, as RE2 allows no repeat count above 1000).
pub const EXTERNAL_ID_PATTERN: &str = "^[A-Za-z0-9_+=,.@:/-]+$";
/// A schedule's name: asyncscale's scheduled action is `asyncscale-<name>`.
pub const SCHEDULE_NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// The shape of the three schedule expressions; the Rust validator checks every field.
pub const SCHEDULE_PATTERN: &str = "^(at\\([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\)|rate\\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\\)|cron\\([^ ()]+( [^ ()]+){5}\\))$";
/// An IANA time zone name such as `Europe/Berlin`, `UTC` or `America/Argentina/Buenos_Aires`.
pub const TIME_ZONE_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$";
