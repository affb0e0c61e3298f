//! The instance records under a key prefix, as last read or watched.

use std::collections::BTreeMap;

use tower_mesh_balance::ServiceInstance;

use crate::changes::InstanceSet;
use crate::record::parse_record;
use crate::telemetry::Telemetry;

/// The good records under a prefix, by key.
///
/// A record that cannot be read is skipped with a `warn!`: it never enters the
/// set, and when it overwrites a good record, the good one is kept, since the
/// instance it describes may well be alive.
#[derive(Debug)]
pub(crate) struct Records {
    prefix: String,
    by_key: BTreeMap<String, ServiceInstance>,
    telemetry: Telemetry,
}

impl Records {
    pub(crate) fn new(prefix: String, telemetry: Telemetry) -> Self {
        Records {
            prefix,
            by_key: BTreeMap::new(),
            telemetry,
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Replaces every record with the `(key, value)` pairs of a full read.
    pub(crate) fn replace_all<'a>(
        &mut self,
        pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) {
        let mut fresh = BTreeMap::new();
        for (key, value) in pairs {
            let Some(key) = self.key_name(key) else {
                continue;
            };
            match self.parse(&key, value) {
                Some(instance) => {
                    fresh.insert(key, instance);
                }
                None => {
                    if let Some(kept) = self.by_key.remove(&key) {
                        fresh.insert(key, kept);
                    }
                }
            }
        }
        self.by_key = fresh;
    }

    /// Applies a put; `true` when the records changed.
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) -> bool {
        let Some(key) = self.key_name(key) else {
            return false;
        };
        let Some(instance) = self.parse(&key, value) else {
            return false;
        };
        self.by_key.insert(key, instance.clone()) != Some(instance)
    }

    /// Applies a delete; `true` when the records changed.
    pub(crate) fn delete(&mut self, key: &[u8]) -> bool {
        match std::str::from_utf8(key) {
            Ok(key) => self.by_key.remove(key).is_some(),
            Err(_) => false,
        }
    }

    /// The instances the records describe, by id. Should two records claim one
    /// id, the one under the first key wins.
    pub(crate) fn wanted(&self) -> InstanceSet {
        let mut wanted = InstanceSet::new();
        for (key, instance) in &self.by_key {
            if let Some(first) = wanted.get(&instance.id) {
                let id = &first.id;
                tracing::warn!(
                    prefix = %self.prefix, %key, %id,
                    "another record already has this instance id; skipping it"
                );
                continue;
            }
            wanted.insert(instance.id.clone(), instance.clone());
        }
        self.telemetry.instances(wanted.len());
        wanted
    }

    /// The key as text, when it is; a record's default id is the key without
    /// the prefix.
    fn key_name(&self, key: &[u8]) -> Option<String> {
        match std::str::from_utf8(key) {
            Ok(key) => Some(key.to_owned()),
            Err(_) => {
                let key = String::from_utf8_lossy(key);
                tracing::warn!(
                    prefix = %self.prefix, %key,
                    "skipping a record whose key is not UTF-8"
                );
                self.telemetry.rejected();
                None
            }
        }
    }

    fn parse(&self, key: &str, value: &[u8]) -> Option<ServiceInstance> {
        let default_id = key.strip_prefix(self.prefix.as_str()).unwrap_or(key);
        let default_id = default_id.trim_start_matches('/');
        let default_id = (!default_id.is_empty()).then_some(default_id);
        match parse_record(value, default_id) {
            Ok(instance) => Some(instance),
            Err(error) => {
                tracing::warn!(
                    prefix = %self.prefix, %key, %error,
                    "skipping a malformed instance record"
                );
                self.telemetry.rejected();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Records {
        Records::new("/svc/".to_owned(), Telemetry::new("etcd", "/svc/"))
    }

    fn ids(records: &Records) -> Vec<(String, u32)> {
        let wanted = records.wanted().into_values();
        wanted
            .map(|instance| (instance.id, instance.weight))
            .collect()
    }

    const GOOD: &[u8] = br#"{"host": "10.0.0.1", "port": 80}"#;

    #[test]
    fn the_id_defaults_to_the_key_without_the_prefix() {
        let mut records = records();
        assert!(records.put(b"/svc/a", GOOD));
        assert_eq!(ids(&records), [("a".to_owned(), 1)]);
        assert!(
            !records.put(b"/svc/a", GOOD),
            "the same record again changes nothing"
        );
        assert!(records.delete(b"/svc/a"));
        assert!(!records.delete(b"/svc/a"));
    }

    #[test]
    fn a_malformed_record_never_replaces_a_good_one() {
        let mut records = records();
        records.put(b"/svc/a", GOOD);
        assert!(!records.put(b"/svc/a", b"{not json"));
        assert!(!records.put(b"/svc/b", br#"{"host": "", "port": 80}"#));
        assert!(!records.put(b"/svc/\xff", GOOD));
        assert_eq!(ids(&records), [("a".to_owned(), 1)]);

        // A full read keeps the good record too, and drops keys that are gone.
        let pairs: [(&[u8], &[u8]); 2] = [(b"/svc/a", b"garbage"), (b"/svc/c", GOOD)];
        records.replace_all(pairs);
        assert_eq!(ids(&records), [("a".to_owned(), 1), ("c".to_owned(), 1)]);
        records.replace_all([(b"/svc/c".as_slice(), GOOD)]);
        assert_eq!(ids(&records), [("c".to_owned(), 1)]);
    }

    #[test]
    fn two_records_with_one_id_keep_the_first() {
        let mut records = records();
        records.put(
            b"/svc/a",
            br#"{"id": "x", "host": "h", "port": 1, "weight": 2}"#,
        );
        records.put(b"/svc/b", br#"{"id": "x", "host": "h", "port": 2}"#);
        assert_eq!(ids(&records), [("x".to_owned(), 2)]);
    }
}
