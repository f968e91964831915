//! Reads a policy file into grpc-go's own policy structs the way Go's `encoding/json` does, so
//! that exactly the files grpc-go loads load here:
//!
//! - unknown fields are errors (grpc-go decodes with `DisallowUnknownFields`);
//! - a key names a field whatever its case (`"Name"`, `"ALLOW_RULES"`), Go's case folding;
//! - `null` leaves a string, a bool or an object as it was, and empties a list;
//! - a key given twice decodes into what the first one left: strings and bools are replaced,
//!   objects are merged, lists are merged element by element and cut to the new length;
//! - only the first JSON value is read: whatever follows it in the file is ignored.
//!
//! (Go can also bring back elements of an earlier, longer duplicate list through a slice's
//! spare capacity; that depends on Go's allocator and is not reproduced.)
//!
//! Every error says where: the path of the field (`allow_rules[2] (rule "admin").request`)
//! and serde_json's line and column.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// grpc-go's `authorizationPolicy`.
#[derive(Debug, Default)]
pub(super) struct RawPolicy {
    pub(super) name: String,
    pub(super) deny_rules: Vec<RawRule>,
    pub(super) allow_rules: Vec<RawRule>,
    pub(super) audit_logging_options: RawAuditOptions,
}

#[derive(Debug, Default)]
pub(super) struct RawRule {
    pub(super) name: String,
    pub(super) source: RawPeer,
    pub(super) request: RawRequest,
}

#[derive(Debug, Default)]
pub(super) struct RawPeer {
    pub(super) principals: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct RawRequest {
    pub(super) paths: Vec<String>,
    pub(super) headers: Vec<RawHeader>,
}

#[derive(Debug, Default)]
pub(super) struct RawHeader {
    pub(super) key: String,
    pub(super) values: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct RawAuditOptions {
    pub(super) audit_condition: String,
    /// Pointers in grpc-go: an element may be `null`.
    pub(super) audit_loggers: Vec<Option<RawLogger>>,
}

#[derive(Debug, Default)]
pub(super) struct RawLogger {
    pub(super) name: String,
    pub(super) config: RawConfig,
    pub(super) is_optional: bool,
}

/// A logger's `config`: any JSON object (a protobuf `Struct` in grpc-go), kept only as the
/// number of its entries.
#[derive(Debug, Default)]
pub(super) struct RawConfig {
    pub(super) entries: Option<usize>,
}

/// Reads `json` as grpc-go's `json.NewDecoder(..).Decode(&policy)` does.
pub(super) fn read(json: &str) -> Result<RawPolicy, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    let mut policy = RawPolicy::default();
    policy.merge(&mut de, "the policy")?;
    // No `de.end()`: Go's decoder reads one value and never looks at what follows it.
    Ok(policy)
}

/// A value decoded into what is already there, as Go decodes into an existing value.
trait Merge {
    fn merge<'de, D: Deserializer<'de>>(&mut self, de: D, at: &str) -> Result<(), D::Error>;
}

/// Merges the next value into `.0`; `.1` is where it is, for messages.
struct MergeInto<'a, T>(&'a mut T, &'a str);

impl<'de, T: Merge> DeserializeSeed<'de> for MergeInto<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        self.0.merge(de, self.1)
    }
}

impl Merge for String {
    fn merge<'de, D: Deserializer<'de>>(&mut self, de: D, at: &str) -> Result<(), D::Error> {
        struct V<'a>(&'a mut String, &'a str);
        impl Visitor<'_> for V<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a string for {}", self.1)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
                v.clone_into(self.0);
                Ok(())
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
        }
        de.deserialize_any(V(self, at))
    }
}

impl Merge for bool {
    fn merge<'de, D: Deserializer<'de>>(&mut self, de: D, at: &str) -> Result<(), D::Error> {
        struct V<'a>(&'a mut bool, &'a str);
        impl Visitor<'_> for V<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "true or false for {}", self.1)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
                *self.0 = v;
                Ok(())
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
        }
        de.deserialize_any(V(self, at))
    }
}

impl<T: Merge + Default> Merge for Vec<T> {
    fn merge<'de, D: Deserializer<'de>>(&mut self, de: D, at: &str) -> Result<(), D::Error> {
        struct V<'a, T>(&'a mut Vec<T>, &'a str);
        impl<'de, T: Merge + Default> Visitor<'de> for V<'_, T> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list for {}", self.1)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let list = self.0;
                let mut len = 0;
                loop {
                    let grown = len == list.len();
                    if grown {
                        list.push(T::default());
                    }
                    let at = format!("{}[{len}]", self.1);
                    if seq.next_element_seed(MergeInto(&mut list[len], &at))?.is_none() {
                        if grown {
                            list.pop();
                        }
                        break;
                    }
                    len += 1;
                }
                list.truncate(len);
                Ok(())
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                self.0.clear();
                Ok(())
            }
        }
        de.deserialize_any(V(self, at))
    }
}

/// A pointer: `null` makes it nil; a value decodes into what it points to, made if nil.
impl<T: Merge + Default> Merge for Option<T> {
    fn merge<'de, D: Deserializer<'de>>(&mut self, de: D, at: &str) -> Result<(), D::Error> {
        struct V<'a, T>(&'a mut Option<T>, &'a str);
        impl<'de, T: Merge + Default> Visitor<'de> for V<'_, T> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an object for {}", self.1)
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                *self.0 = None;
                Ok(())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
                self.0.get_or_insert_with(T::default).merge(de::value::MapAccessDeserializer::new(map), self.1)
            }
        }
        de.deserialize_any(V(self, at))
    }
}

impl Merge for RawConfig {
    fn merge<'de, D: Deserializer<'de>>(&mut self, de: D, at: &str) -> Result<(), D::Error> {
        struct V<'a>(&'a mut RawConfig, &'a str);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an object for {}", self.1)
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                self.0.entries = None;
                Ok(())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                let mut entries = 0;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    entries += 1;
                }
                self.0.entries = Some(entries);
                Ok(())
            }
        }
        de.deserialize_any(V(self, at))
    }
}

/// A Go struct: its JSON field names, and how to decode the field at an index.
trait GoStruct {
    const FIELDS: &'static [&'static str];
    fn merge_field<'de, A: MapAccess<'de>>(&mut self, field: usize, map: &mut A, at: &str) -> Result<(), A::Error>;
}

impl<S: GoStruct> Merge for S {
    fn merge<'de, D: Deserializer<'de>>(&mut self, de: D, at: &str) -> Result<(), D::Error> {
        struct V<'a, S>(&'a mut S, &'a str);
        impl<'de, S: GoStruct> Visitor<'de> for V<'_, S> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an object for {}", self.1)
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some(key) = map.next_key::<String>()? {
                    let Some(field) = S::FIELDS.iter().position(|name| go_names_match(&key, name)) else {
                        let known = S::FIELDS.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ");
                        return Err(de::Error::custom(format_args!(
                            "{}: unknown field {key:?} (grpc-go accepts only {known} here)",
                            self.1
                        )));
                    };
                    self.0.merge_field(field, &mut map, self.1)?;
                }
                Ok(())
            }
        }
        de.deserialize_any(V(self, at))
    }
}

/// Decodes the next value of `map` into `into`, at `at.field`.
fn next<'de, A: MapAccess<'de>, T: Merge>(map: &mut A, into: &mut T, at: &str, field: &str) -> Result<(), A::Error> {
    let at = if at == "the policy" { field.to_owned() } else { format!("{at}.{field}") };
    map.next_value_seed(MergeInto(into, &at))
}

impl GoStruct for RawPolicy {
    const FIELDS: &'static [&'static str] = &["name", "deny_rules", "allow_rules", "audit_logging_options"];
    fn merge_field<'de, A: MapAccess<'de>>(&mut self, field: usize, map: &mut A, at: &str) -> Result<(), A::Error> {
        match field {
            0 => next(map, &mut self.name, at, "name"),
            1 => next(map, &mut self.deny_rules, at, "deny_rules"),
            2 => next(map, &mut self.allow_rules, at, "allow_rules"),
            _ => next(map, &mut self.audit_logging_options, at, "audit_logging_options"),
        }
    }
}

impl GoStruct for RawRule {
    const FIELDS: &'static [&'static str] = &["name", "source", "request"];
    fn merge_field<'de, A: MapAccess<'de>>(&mut self, field: usize, map: &mut A, at: &str) -> Result<(), A::Error> {
        // Once the rule's name is known, messages name the rule too.
        let at = if self.name.is_empty() { at.to_owned() } else { format!("{at} (rule {:?})", self.name) };
        match field {
            0 => next(map, &mut self.name, &at, "name"),
            1 => next(map, &mut self.source, &at, "source"),
            _ => next(map, &mut self.request, &at, "request"),
        }
    }
}

impl GoStruct for RawPeer {
    const FIELDS: &'static [&'static str] = &["principals"];
    fn merge_field<'de, A: MapAccess<'de>>(&mut self, _: usize, map: &mut A, at: &str) -> Result<(), A::Error> {
        next(map, &mut self.principals, at, "principals")
    }
}

impl GoStruct for RawRequest {
    const FIELDS: &'static [&'static str] = &["paths", "headers"];
    fn merge_field<'de, A: MapAccess<'de>>(&mut self, field: usize, map: &mut A, at: &str) -> Result<(), A::Error> {
        match field {
            0 => next(map, &mut self.paths, at, "paths"),
            _ => next(map, &mut self.headers, at, "headers"),
        }
    }
}

impl GoStruct for RawHeader {
    const FIELDS: &'static [&'static str] = &["key", "values"];
    fn merge_field<'de, A: MapAccess<'de>>(&mut self, field: usize, map: &mut A, at: &str) -> Result<(), A::Error> {
        match field {
            0 => next(map, &mut self.key, at, "key"),
            _ => next(map, &mut self.values, at, "values"),
        }
    }
}

impl GoStruct for RawAuditOptions {
    const FIELDS: &'static [&'static str] = &["audit_condition", "audit_loggers"];
    fn merge_field<'de, A: MapAccess<'de>>(&mut self, field: usize, map: &mut A, at: &str) -> Result<(), A::Error> {
        match field {
            0 => next(map, &mut self.audit_condition, at, "audit_condition"),
            _ => next(map, &mut self.audit_loggers, at, "audit_loggers"),
        }
    }
}

impl GoStruct for RawLogger {
    const FIELDS: &'static [&'static str] = &["name", "config", "is_optional"];
    fn merge_field<'de, A: MapAccess<'de>>(&mut self, field: usize, map: &mut A, at: &str) -> Result<(), A::Error> {
        match field {
            0 => next(map, &mut self.name, at, "name"),
            1 => next(map, &mut self.config, at, "config"),
            _ => next(map, &mut self.is_optional, at, "is_optional"),
        }
    }
}

/// Whether JSON key `key` names the Go field whose JSON name is `field` (ASCII): equal under
/// Go's case folding, in which the Kelvin sign folds to `K` and the long s to `S`.
fn go_names_match(key: &str, field: &str) -> bool {
    let fold = |c: char| match c {
        '\u{212A}' => 'K',
        '\u{17F}' => 'S',
        c => c.to_ascii_uppercase(),
    };
    key.chars().map(fold).eq(field.chars().map(fold))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_whatever_their_case_as_in_go() {
        assert!(go_names_match("allow_rules", "allow_rules"));
        assert!(go_names_match("ALLOW_RULES", "allow_rules"));
        assert!(go_names_match("\u{17F}ource", "source"));
        assert!(go_names_match("\u{212A}ey", "key"));
        assert!(!go_names_match("allowrules", "allow_rules"));
        assert!(!go_names_match("allow_rules ", "allow_rules"));
    }

    #[test]
    fn a_duplicate_key_decodes_into_what_the_first_left() {
        let raw = read(
            r#"{"name": "p", "allow_rules": [{"name": "a", "request": {"paths": ["/x"]}}, {"name": "b"}],
                "allow_rules": [{"name": "c"}], "NAME": "q"}"#,
        )
        .unwrap();
        assert_eq!(raw.name, "q");
        assert_eq!(raw.allow_rules.len(), 1);
        assert_eq!(raw.allow_rules[0].name, "c");
        // The first list's first element is decoded into, not replaced.
        assert_eq!(raw.allow_rules[0].request.paths, ["/x"]);
    }

    #[test]
    fn null_keeps_strings_and_objects_and_empties_lists() {
        let raw = read(r#"{"name": "p", "name": null, "allow_rules": [{"name": "a"}], "allow_rules": null}"#).unwrap();
        assert_eq!(raw.name, "p");
        assert!(raw.allow_rules.is_empty());
    }

    #[test]
    fn what_follows_the_first_value_is_ignored_as_by_go() {
        assert_eq!(read(r#"{"name": "p"} and then anything"#).unwrap().name, "p");
    }

    #[test]
    fn errors_say_where() {
        let err = read("{\"name\": \"p\",\n \"allow_rules\": [{\"name\": \"r\", \"request\": {\"path\": []}}]}")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "allow_rules[0] (rule \"r\").request: unknown field \"path\" (grpc-go accepts only \"paths\", \
             \"headers\" here) at line 2 column 49"
        );
        let err = read("{\"name\": 5}").unwrap_err().to_string();
        assert_eq!(err, "invalid type: integer `5`, expected a string for name at line 1 column 10");
        let err = read("{\"name\": \"p\",").unwrap_err().to_string();
        assert_eq!(err, "EOF while parsing a value at line 1 column 13");
    }
}
