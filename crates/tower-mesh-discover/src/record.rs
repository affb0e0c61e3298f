//! Instance records: the JSON an etcd key (or a static configuration file) holds
//! for one instance.
//!
//! ```json
//! {"id": "users-1", "host": "10.0.0.7", "port": 8080, "weight": 3, "metadata": {"zone": "a"}}
//! ```
//!
//! `host` and `port` are required; `weight` defaults to 1 and `metadata` to none.
//! Where the record is stored under a key, `id` defaults to the key's name. Fields
//! this version does not know are ignored, so writers can add some.
//!
//! Records come from outside the process, so reading one never panics: anything
//! unexpected is a [`RecordError`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use tower_mesh_balance::ServiceInstance;

/// The serialized shape of an instance.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    host: String,
    port: u16,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
}

fn default_weight() -> u32 {
    1
}

impl Record {
    /// The instance, with `default_id` when the record names none.
    pub(crate) fn into_instance(
        self,
        default_id: Option<&str>,
    ) -> Result<ServiceInstance, RecordError> {
        let id = match (self.id, default_id) {
            (Some(id), _) => id,
            (None, Some(id)) => id.to_owned(),
            (None, None) => return Err(RecordError::invalid("the record has no `id`")),
        };
        if id.is_empty() {
            return Err(RecordError::invalid("`id` is empty"));
        }
        if self.host.is_empty() {
            return Err(RecordError::invalid("`host` is empty"));
        }
        if self.port == 0 {
            return Err(RecordError::invalid("`port` is 0"));
        }
        if self.weight == 0 {
            return Err(RecordError::invalid("`weight` is 0; it must be at least 1"));
        }
        let mut instance = ServiceInstance::new(id, self.host, self.port).with_weight(self.weight);
        instance.metadata = self.metadata;
        Ok(instance)
    }
}

/// Reads one instance record; `default_id` is the id when the record has none.
///
/// ```
/// use tower_mesh_discover::parse_record;
///
/// let record = br#"{"host": "10.0.0.7", "port": 8080, "metadata": {"zone": "a"}}"#;
/// let instance = parse_record(record, Some("users-1"))?;
/// assert_eq!(instance.id, "users-1");
/// assert_eq!(instance.address(), "10.0.0.7:8080");
/// assert_eq!(instance.weight, 1);
///
/// assert!(parse_record(b"{\"host\": \"h\", \"port\": 70000}", Some("x")).is_err());
/// # Ok::<(), tower_mesh_discover::RecordError>(())
/// ```
///
/// # Errors
///
/// A [`RecordError`] when the bytes are not a JSON object of this shape, or when
/// the instance would be unusable: no id, an empty host, port 0 or weight 0.
pub fn parse_record(json: &[u8], default_id: Option<&str>) -> Result<ServiceInstance, RecordError> {
    let record: Record = serde_json::from_slice(json).map_err(RecordError::syntax)?;
    record.into_instance(default_id)
}

/// Writes `instance` as a record that [`parse_record`] reads back.
///
/// ```
/// use tower_mesh_balance::ServiceInstance;
/// use tower_mesh_discover::{parse_record, to_record};
///
/// let instance = ServiceInstance::new("a", "::1", 9000).with_weight(2).with_metadata("v", "2");
/// assert_eq!(parse_record(to_record(&instance).as_bytes(), None)?, instance);
/// # Ok::<(), tower_mesh_discover::RecordError>(())
/// ```
pub fn to_record(instance: &ServiceInstance) -> String {
    let record = Record {
        id: Some(instance.id.clone()),
        host: instance.host.clone(),
        port: instance.port,
        weight: instance.weight,
        metadata: instance.metadata.clone(),
    };
    // Serializing strings, integers and a string map cannot fail.
    serde_json::to_string(&record).unwrap_or_default()
}

/// An instance record that could not be read; see [`parse_record`].
#[derive(Debug)]
pub struct RecordError {
    reason: Reason,
}

#[derive(Debug)]
enum Reason {
    Syntax(serde_json::Error),
    Invalid(&'static str),
}

impl RecordError {
    fn syntax(error: serde_json::Error) -> Self {
        RecordError {
            reason: Reason::Syntax(error),
        }
    }

    fn invalid(reason: &'static str) -> Self {
        RecordError {
            reason: Reason::Invalid(reason),
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            Reason::Syntax(error) => write!(f, "malformed instance record: {error}"),
            Reason::Invalid(reason) => write!(f, "unusable instance record: {reason}"),
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            Reason::Syntax(error) => Some(error),
            Reason::Invalid(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_bytes_never_panic() {
        let inputs: [&[u8]; 9] = [
            b"",
            b"null",
            b"[]",
            b"\xff\xfe",
            br#"{"host": 5, "port": 1}"#,
            br#"{"host": "h", "port": -1}"#,
            br#"{"host": "h", "port": 1, "weight": 0}"#,
            br#"{"host": "", "port": 1}"#,
            br#"{"id": "", "host": "h", "port": 1}"#,
        ];
        for input in inputs {
            assert!(parse_record(input, Some("k")).is_err(), "{input:?}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_the_record_id_wins() {
        let json = br#"{"id": "mine", "host": "h", "port": 1, "region": "x"}"#;
        assert_eq!(parse_record(json, Some("key")).unwrap().id, "mine");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let error = parse_record(br#"{"host": "h", "port": 1}"#, None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unusable instance record: the record has no `id`"
        );
        let error = parse_record(b"{", None).unwrap_err();
        assert!(error.to_string().starts_with("malformed instance record: "));
    }
}
