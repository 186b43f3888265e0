//! serde over the span-aware tree: typed specs with errors that know where they are.
//!
//! The derived `Deserialize` impls report problems through [`DeError`]; each
//! level of this deserializer attaches the path and position of the node it
//! was working on when the error passed through, so the innermost wins.
//! Unknown keys come with the list of expected names, which gives "did you mean".

use super::yaml::{Entry, Node, Value};
use crate::diag::{Mark, did_you_mean};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub message: String,
    pub hint: Option<String>,
    pub path: Option<String>,
    pub mark: Option<Mark>,
}

impl DeError {
    fn new(message: String) -> Self {
        DeError { message, hint: None, path: None, mark: None }
    }

    fn located(mut self, path: &str, mark: Mark) -> Self {
        if self.mark.is_none() {
            self.mark = Some(mark);
            self.path = Some(path.to_string());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

fn expected_list(expected: &[&str]) -> String {
    expected.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = match did_you_mean(field, expected.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if expected.is_empty() => "no keys are allowed here".to_string(),
            None => format!("expected one of {}", expected_list(expected)),
        };
        DeError { hint: Some(hint), ..DeError::new(format!("unknown key `{field}`")) }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let hint = match did_you_mean(variant, expected.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("expected one of {}", expected_list(expected)),
        };
        DeError { hint: Some(hint), ..DeError::new(format!("unknown value `{variant}`")) }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(format!("missing required key `{field}`"))
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("expected {exp}, found {unexp}"))
    }
}

/// Deserializes `T` from `node`; `root_path` names the node in error paths.
pub fn from_node<'a, T: de::Deserialize<'a>>(node: &'a Node, root_path: &str) -> Result<T, DeError> {
    T::deserialize(NodeDe { node, path: root_path.to_string() })
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

fn child_path(parent: &str, seg: &str) -> String {
    if parent.is_empty() { seg.to_string() } else { format!("{parent}.{seg}") }
}

impl<'a> NodeDe<'a> {
    fn err(&self, message: String) -> DeError {
        DeError::new(message).located(&self.path, self.node.mark)
    }

    fn found(&self) -> String {
        match &self.node.value {
            Value::Null => "nothing".to_string(),
            Value::Scalar { text, .. } => format!("`{text}`"),
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => "a mapping".to_string(),
        }
    }

    fn scalar(&self, what: &str) -> Result<&'a str, DeError> {
        match &self.node.value {
            Value::Scalar { text, .. } => Ok(text),
            _ => Err(self.err(format!("expected {what}, found {}", self.found()))),
        }
    }

    fn int<T: std::str::FromStr>(&self, what: &str) -> Result<T, DeError> {
        let text = self.scalar(what)?;
        text.replace('_', "").parse::<T>().map_err(|_| self.err(format!("expected {what}, found `{text}`")))
    }

    fn locate<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.located(&self.path, self.node.mark))
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty, $what:expr) => {
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            let n: $ty = self.int($what)?;
            self.locate(v.$visit(n))
        }
    };
}

impl<'de, 'a: 'de> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Null => v.visit_unit(),
            Value::Scalar { text, plain: true } => match text.as_str() {
                "true" | "True" | "TRUE" => v.visit_bool(true),
                "false" | "False" | "FALSE" => v.visit_bool(false),
                t => {
                    if let Ok(n) = t.parse::<u64>() {
                        v.visit_u64(n)
                    } else if let Ok(n) = t.parse::<i64>() {
                        v.visit_i64(n)
                    } else if let Some(f) = t.parse::<f64>().ok().filter(|f| f.is_finite()) {
                        v.visit_f64(f)
                    } else {
                        v.visit_str(t)
                    }
                }
            },
            Value::Scalar { text, plain: false } => v.visit_str(text),
            Value::Seq(items) => v.visit_seq(Seq { items: items.iter(), path: &self.path, index: 0 }),
            Value::Map(entries) => v.visit_map(Map { entries: entries.iter(), path: &self.path, value: None }),
        };
        self.locate(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let b = match self.scalar("true or false")? {
            "true" | "True" | "TRUE" => true,
            "false" | "False" | "FALSE" => false,
            other => return Err(self.err(format!("expected true or false, found `{other}`"))),
        };
        self.locate(v.visit_bool(b))
    }

    int_method!(deserialize_u8, visit_u8, u8, "a whole number");
    int_method!(deserialize_u16, visit_u16, u16, "a whole number");
    int_method!(deserialize_u32, visit_u32, u32, "a whole number");
    int_method!(deserialize_u64, visit_u64, u64, "a whole number");
    int_method!(deserialize_i8, visit_i8, i8, "a whole number");
    int_method!(deserialize_i16, visit_i16, i16, "a whole number");
    int_method!(deserialize_i32, visit_i32, i32, "a whole number");
    int_method!(deserialize_i64, visit_i64, i64, "a whole number");
    int_method!(deserialize_f32, visit_f32, f32, "a number");
    int_method!(deserialize_f64, visit_f64, f64, "a number");

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let s = self.scalar("text")?;
        self.locate(v.visit_str(s))
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.node.value == Value::Null {
            self.locate(v.visit_none())
        } else {
            let mark = self.node.mark;
            let path = self.path.clone();
            v.visit_some(self).map_err(|e| e.located(&path, mark))
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => self.locate(v.visit_unit()),
            _ => Err(self.err(format!("expected nothing, found {}", self.found()))),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, DeError> {
        let mark = self.node.mark;
        let path = self.path.clone();
        v.visit_newtype_struct(self).map_err(|e| e.located(&path, mark))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => self.locate(v.visit_seq(Seq { items: items.iter(), path: &self.path, index: 0 })),
            Value::Null => self.locate(v.visit_seq(Seq { items: [].iter(), path: &self.path, index: 0 })),
            _ => Err(self.err(format!("expected a list, found {}", self.found()))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, _: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    /// An empty value (`orders-dlq:`) reads as an empty mapping, like `{}`.
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => {
                self.locate(v.visit_map(Map { entries: entries.iter(), path: &self.path, value: None }))
            }
            Value::Null => self.locate(v.visit_map(Map { entries: [].iter(), path: &self.path, value: None })),
            _ => Err(self.err(format!("expected a mapping, found {}", self.found()))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar { text, .. } => {
                let de: de::value::StrDeserializer<'_, DeError> = text.as_str().into_deserializer();
                self.locate(v.visit_enum(de))
            }
            Value::Map(entries) if entries.len() == 1 => {
                let e = &entries[0];
                let r = v.visit_enum(Enum { entry: e, path: child_path(&self.path, &e.key) });
                r.map_err(|err| err.located(&child_path(&self.path, &e.key), e.key_mark))
            }
            _ => Err(self.err(format!("expected a name or a one-key mapping, found {}", self.found()))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

struct Seq<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    path: &'p str,
    index: usize,
}

impl<'de, 'a: 'de> SeqAccess<'de> for Seq<'a, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else { return Ok(None) };
        let path = child_path(self.path, &self.index.to_string());
        self.index += 1;
        seed.deserialize(NodeDe { node, path: path.clone() }).map(Some).map_err(|e| e.located(&path, node.mark))
    }
}

struct Map<'a, 'p> {
    entries: std::slice::Iter<'a, Entry>,
    path: &'p str,
    value: Option<&'a Entry>,
}

impl<'de, 'a: 'de> MapAccess<'de> for Map<'a, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else { return Ok(None) };
        self.value = Some(entry);
        let path = child_path(self.path, &entry.key);
        seed.deserialize(de::value::BorrowedStrDeserializer::<DeError>::new(&entry.key))
            .map(Some)
            .map_err(|e| DeError { mark: Some(entry.key_mark), path: Some(path), ..e })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self.value.take().expect("value requested before key");
        let path = child_path(self.path, &entry.key);
        seed.deserialize(NodeDe { node: &entry.value, path: path.clone() })
            .map_err(|e| e.located(&path, entry.value.mark))
    }
}

struct Enum<'a> {
    entry: &'a Entry,
    path: String,
}

impl<'de, 'a: 'de> de::EnumAccess<'de> for Enum<'a> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let key: de::value::StrDeserializer<'_, DeError> = self.entry.key.as_str().into_deserializer();
        let v = seed.deserialize(key).map_err(|e| e.located(&self.path, self.entry.key_mark))?;
        Ok((v, self))
    }
}

impl<'de, 'a: 'de> de::VariantAccess<'de> for Enum<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Err(DeError::new(format!("`{}` takes no value", self.entry.key)).located(&self.path, self.entry.key_mark))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(NodeDe { node: &self.entry.value, path: self.path })
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(NodeDe { node: &self.entry.value, path: self.path }, v)
    }

    fn struct_variant<V: Visitor<'de>>(self, _: &'static [&'static str], v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(NodeDe { node: &self.entry.value, path: self.path }, v)
    }
}
