//! AWS STS as the local endpoint serves it: AssumeRole and GetCallerIdentity over the awsQuery
//! protocol (form-encoded POST, XML answers), as aws-sdk-sts 1.124 and botocore send them.
//!
//! Each role's account is a simulated account of its own: the session credentials AssumeRole
//! issues route every later request signed with them to that account (by the access key id in
//! the SigV4 `Authorization` header). Requests signed with any other key are the caller's own
//! account, [`crate::account::ACCOUNT_ID`].
//!
//! Behaviour, from the STS API reference (AssumeRole, GetCallerIdentity, Common Errors):
//! - RoleArn 20-2048 characters; RoleSessionName 2-64 of `[\w+=,.@-]`; ExternalId 2-1224 of
//!   `[\w+=,.@:/-]`; DurationSeconds 900-43200 and at most the role's MaxSessionDuration
//!   (3600 unless the role says otherwise), else ValidationError.
//! - A role that does not exist or whose trust policy does not let the caller in (a missing or
//!   wrong external id included) is AccessDenied, 403: "User: <caller arn> is not authorized to
//!   perform: sts:AssumeRole on resource: <role arn>".
//! - Credentials: AccessKeyId (temporary keys start with ASIA), SecretAccessKey, SessionToken,
//!   Expiration; AssumedRoleUser: Arn `arn:aws:sts::<account>:assumed-role/<role name>/<session>`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::account::ACCOUNT_ID;
use crate::aws_error::ApiError;

/// STS's XML namespace, in every answer.
const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// What the caller's own credentials are in the simulated account (GetCallerIdentity).
pub const CALLER_ARN: &str = "arn:aws:iam::123456789012:user/asyncscale-local";
const MAX_SESSION_SECONDS: i64 = 3600;

/// The roles that may be assumed, and the sessions issued.
#[derive(Debug, Default)]
pub struct Roles {
    /// None: any role may be assumed (`sim serve` without `--role`). Some: only these, each with
    /// the external id its trust policy asks for.
    pub declared: Option<BTreeMap<String, Option<String>>>,
    /// Access key id → the session it belongs to.
    pub sessions: BTreeMap<String, Session>,
    issued: u64,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub account: String,
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    /// Epoch seconds.
    pub expiration: i64,
    /// The access key that assumed the role (who is behind the session's requests).
    pub source_key: Option<String>,
}

impl Session {
    pub fn arn(&self) -> String {
        let role_name = self.role_arn.rsplit('/').next().unwrap_or_default();
        format!(
            "arn:{}:sts::{}:assumed-role/{role_name}/{}",
            self.role_arn.split(':').nth(1).unwrap_or("aws"),
            self.account,
            self.session_name
        )
    }

    pub fn snapshot(&self, access_key_id: &str) -> Value {
        json!({
            "accessKeyId": access_key_id,
            "account": self.account,
            "roleArn": self.role_arn,
            "roleSessionName": self.session_name,
            "externalId": self.external_id,
            "expiration": self.expiration,
            "sourceKey": self.source_key,
        })
    }
}

impl Roles {
    /// The account a request signed with `access_key_id` acts in (None: the caller's own).
    pub fn account_of(&self, access_key_id: &str) -> Option<&str> {
        self.sessions
            .get(access_key_id)
            .map(|session| session.account.as_str())
    }

    /// Declares a role that may be assumed (and, from then on, only declared ones may).
    pub fn declare(&mut self, arn: String, external_id: Option<String>) {
        self.declared
            .get_or_insert_with(BTreeMap::new)
            .insert(arn, external_id);
    }

    /// Answers one STS operation. `caller` is the access key id the request was signed with;
    /// `now` epoch seconds. Returns the XML answer.
    pub fn handle(
        &mut self,
        operation: &str,
        input: &BTreeMap<String, String>,
        caller: Option<&str>,
        now: i64,
    ) -> Result<String, ApiError> {
        match operation {
            "AssumeRole" => self.assume_role(input, caller, now),
            "GetCallerIdentity" => Ok(self.caller_identity(caller)),
            _ => Err(ApiError::new(
                "InvalidAction",
                format!("The action {operation} is not valid for this web service."),
            )),
        }
    }

    fn caller_arn(&self, caller: Option<&str>) -> String {
        caller
            .and_then(|key| self.sessions.get(key))
            .map_or_else(|| CALLER_ARN.to_string(), Session::arn)
    }

    fn caller_identity(&self, caller: Option<&str>) -> String {
        let session = caller.and_then(|key| self.sessions.get(key));
        let account = session.map_or(ACCOUNT_ID, |s| s.account.as_str());
        let user_id = session.map_or_else(
            || "AIDASIMULATEDLOCAL0001".to_string(),
            |s| format!("AROASIMULATED:{}", s.session_name),
        );
        answer(
            "GetCallerIdentity",
            &format!(
                "<Arn>{}</Arn><UserId>{}</UserId><Account>{account}</Account>",
                escape(&self.caller_arn(caller)),
                escape(&user_id)
            ),
        )
    }

    fn assume_role(
        &mut self,
        input: &BTreeMap<String, String>,
        caller: Option<&str>,
        now: i64,
    ) -> Result<String, ApiError> {
        let invalid = |message: String| ApiError::new("ValidationError", message);
        let role_arn = input
            .get("RoleArn")
            .ok_or_else(|| invalid("1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null".into()))?;
        if !(20..=2048).contains(&role_arn.len()) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{role_arn}' at 'roleArn' failed to satisfy constraint: Member must have length between 20 and 2048"
            )));
        }
        let session_name = input
            .get("RoleSessionName")
            .ok_or_else(|| invalid("1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null".into()))?;
        let name_ok = (2..=64).contains(&session_name.len())
            && session_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
        if !name_ok {
            return Err(invalid(format!(
                "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
            )));
        }
        let external_id = input.get("ExternalId").cloned();
        if let Some(id) = &external_id {
            let ok = (2..=1224).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c));
            if !ok {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{id}' at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:/-]*"
                )));
            }
        }
        let duration = match input.get("DurationSeconds") {
            None => MAX_SESSION_SECONDS,
            Some(text) => text.parse::<i64>().map_err(|_| {
                invalid(format!(
                    "Value '{text}' at 'durationSeconds' is not a number"
                ))
            })?,
        };
        if duration < 900 {
            return Err(invalid(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
            )));
        }
        if duration > MAX_SESSION_SECONDS {
            return Err(invalid(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
                    .into(),
            ));
        }
        let account = role_account(role_arn);
        let trusted = match &self.declared {
            None => true,
            Some(declared) => declared
                .get(role_arn)
                .is_some_and(|wanted| wanted.is_none() || *wanted == external_id),
        };
        let Some(account) = account.filter(|_| trusted) else {
            return Err(ApiError::new(
                "AccessDenied",
                format!(
                    "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                    self.caller_arn(caller)
                ),
            )
            .with_status(403));
        };
        self.issued += 1;
        let access_key_id = format!("ASIASIM{:013}", self.issued);
        let session = Session {
            account: account.to_string(),
            role_arn: role_arn.clone(),
            session_name: session_name.clone(),
            external_id,
            expiration: now + duration,
            source_key: caller.map(str::to_string),
        };
        let body = format!(
            "<Credentials><AccessKeyId>{access_key_id}</AccessKeyId><SecretAccessKey>simulated-secret-{}</SecretAccessKey><SessionToken>simulated-session-token-{}</SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROASIMULATED:{}</AssumedRoleId><Arn>{}</Arn></AssumedRoleUser>",
            self.issued,
            self.issued,
            iso8601(session.expiration),
            escape(session_name),
            escape(&session.arn()),
        );
        self.sessions.insert(access_key_id, session);
        Ok(answer("AssumeRole", &body))
    }
}

/// The twelve-digit account of `arn:<partition>:iam::<account>:role/<name>`, if it is one.
fn role_account(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5].starts_with("role/")
        && parts[5].len() > "role/".len();
    ok.then_some(parts[4])
}

fn answer(operation: &str, result: &str) -> String {
    format!(
        "<{operation}Response xmlns=\"{NAMESPACE}\"><{operation}Result>{result}</{operation}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{operation}Response>",
        request_id()
    )
}

/// The awsQuery error document.
pub fn error_xml(error: &ApiError) -> String {
    let fault = if error.is_sender_fault() {
        "Sender"
    } else {
        "Receiver"
    };
    format!(
        "<ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>{fault}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        escape(&error.code),
        escape(&error.message),
        request_id()
    )
}

fn request_id() -> String {
    "00000000-0000-4000-8000-000000000000".to_string()
}

fn iso8601(epoch_seconds: i64) -> String {
    jiff::Timestamp::from_second(epoch_seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_session_routes_to_the_roles_account() {
        let mut roles = Roles::default();
        let xml = roles
            .handle(
                "AssumeRole",
                &input(&[
                    ("RoleArn", "arn:aws:iam::222222222222:role/team-b"),
                    ("RoleSessionName", "asyncscale"),
                ]),
                None,
                1_800_000_000,
            )
            .unwrap();
        assert!(xml.contains("<AccessKeyId>ASIASIM0000000000001</AccessKeyId>"));
        assert!(
            xml.contains("<Expiration>2027-01-15T09:00:00Z</Expiration>"),
            "{xml}"
        );
        assert!(xml.contains("arn:aws:sts::222222222222:assumed-role/team-b/asyncscale"));
        assert_eq!(
            roles.account_of("ASIASIM0000000000001"),
            Some("222222222222")
        );
        let me = roles
            .handle(
                "GetCallerIdentity",
                &input(&[]),
                Some("ASIASIM0000000000001"),
                0,
            )
            .unwrap();
        assert!(me.contains("<Account>222222222222</Account>"));
        let own = roles
            .handle("GetCallerIdentity", &input(&[]), None, 0)
            .unwrap();
        assert!(own.contains("<Account>123456789012</Account>"));
    }

    #[test]
    fn declared_roles_need_their_external_id() {
        let mut roles = Roles::default();
        let arn = "arn:aws:iam::222222222222:role/team-b";
        roles.declare(arn.into(), Some("tenant-42".into()));
        let ask = |external: Option<&str>| {
            let mut i = input(&[("RoleArn", arn), ("RoleSessionName", "asyncscale")]);
            if let Some(id) = external {
                i.insert("ExternalId".into(), id.into());
            }
            i
        };
        let denied = roles.handle("AssumeRole", &ask(None), None, 0).unwrap_err();
        assert_eq!((denied.code.as_str(), denied.status), ("AccessDenied", 403));
        assert_eq!(
            denied.message,
            format!(
                "User: {CALLER_ARN} is not authorized to perform: sts:AssumeRole on resource: {arn}"
            )
        );
        assert!(
            roles
                .handle("AssumeRole", &ask(Some("wrong-id")), None, 0)
                .is_err()
        );
        assert!(
            roles
                .handle("AssumeRole", &ask(Some("tenant-42")), None, 0)
                .is_ok()
        );
        let other = input(&[
            ("RoleArn", "arn:aws:iam::333333333333:role/undeclared"),
            ("RoleSessionName", "asyncscale"),
        ]);
        assert_eq!(
            roles
                .handle("AssumeRole", &other, None, 0)
                .unwrap_err()
                .code,
            "AccessDenied"
        );
    }

    #[test]
    fn bad_input_is_a_validation_error() {
        let mut roles = Roles::default();
        for (pairs, part) in [
            (vec![("RoleSessionName", "x1")], "roleArn"),
            (
                vec![
                    ("RoleArn", "arn:aws:iam::222222222222:role/b"),
                    ("RoleSessionName", "a b"),
                ],
                "roleSessionName",
            ),
            (
                vec![
                    ("RoleArn", "arn:aws:iam::222222222222:role/b"),
                    ("RoleSessionName", "ab"),
                    ("DurationSeconds", "7200"),
                ],
                "MaxSessionDuration",
            ),
            (
                vec![
                    ("RoleArn", "arn:aws:iam::222222222222:role/b"),
                    ("RoleSessionName", "ab"),
                    ("DurationSeconds", "60"),
                ],
                "durationSeconds",
            ),
        ] {
            let error = roles
                .handle("AssumeRole", &input(&pairs), None, 0)
                .unwrap_err();
            assert_eq!(error.code, "ValidationError");
            assert!(error.message.contains(part), "{}", error.message);
        }
    }
}
