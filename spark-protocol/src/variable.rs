//! Variables: [`VarType`], the type a device registers a variable with, and [`VariableValue`]
//! (with `alloc`), a value read from one, owned. The borrowed form on the wire is
//! [`wire::message::Value`](crate::wire::message::Value).
//!
//! Every crate of the workspace that carries a variable's value (the cloud session, the REST
//! client and server, the virtual Core) uses these two, so a value crosses from the device to a
//! REST client without a conversion that could lose it: a string that is not UTF-8 stays bytes
//! ([`VariableValue::Raw`]).
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use spark_protocol::variable::{VarType, VariableValue};
//! use spark_protocol::wire::message::Value;
//!
//! assert_eq!(VarType::from_code(9), Some(VarType::Double));
//! assert_eq!(VarType::Int.name(), "int32");
//!
//! let read = VariableValue::from_wire(&Value::String(b"kitchen"));
//! assert_eq!(read, VariableValue::String("kitchen".into()));
//! assert_eq!(read.var_type(), Some(VarType::String));
//! // Bytes that are not UTF-8 are kept as they came, with their type code.
//! let raw = VariableValue::from_wire(&Value::String(&[0xff, 0x00]));
//! assert_eq!(raw, VariableValue::Raw { type_code: 4, bytes: vec![0xff, 0x00] });
//! assert_eq!(raw.to_wire(), Some(Value::String(&[0xff, 0x00])));
//! # }
//! ```

use core::fmt;

/// The type of a variable, as the description and the REST API name it (CCL `spark_descriptor.h`,
/// SP `Messages.getNameFromTypeInt`). With the `serde` feature it (de)serializes as its
/// [`name`](VarType::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VarType {
    /// 1: a boolean, one byte `00` / `01`.
    Bool,
    /// 2: a 32-bit signed integer, big-endian.
    Int,
    /// 4: a string (raw bytes, no NUL).
    String,
    /// 5: null (the original server's name for a void return; no variable has it).
    Null,
    /// 9: a 64-bit IEEE-754 double, **little-endian** (the Core copies its memory).
    Double,
}

impl VarType {
    /// Every type, in code order.
    pub const ALL: [VarType; 5] = [
        VarType::Bool,
        VarType::Int,
        VarType::String,
        VarType::Null,
        VarType::Double,
    ];

    /// The type code (1, 2, 4, 5, 9).
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            VarType::Bool => 1,
            VarType::Int => 2,
            VarType::String => 4,
            VarType::Null => 5,
            VarType::Double => 9,
        }
    }

    /// The type of a code.
    #[must_use]
    pub const fn from_code(code: u8) -> Option<VarType> {
        match code {
            1 => Some(VarType::Bool),
            2 => Some(VarType::Int),
            4 => Some(VarType::String),
            5 => Some(VarType::Null),
            9 => Some(VarType::Double),
            _ => None,
        }
    }

    /// The name the cloud API shows ("bool", "int32", "string", "null", "double").
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            VarType::Bool => "bool",
            VarType::Int => "int32",
            VarType::String => "string",
            VarType::Null => "null",
            VarType::Double => "double",
        }
    }

    /// The type of a [`name`](VarType::name).
    #[must_use]
    pub fn from_name(name: &str) -> Option<VarType> {
        VarType::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for VarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for VarType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for VarType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = VarType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a variable type name (bool, int32, string, null, double)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<VarType, E> {
                VarType::from_name(v).ok_or_else(|| E::unknown_variant(v, &NAMES))
            }
        }
        const NAMES: [&str; 5] = ["bool", "int32", "string", "null", "double"];
        deserializer.deserialize_str(Name)
    }
}

#[cfg(feature = "alloc")]
pub use owned::VariableValue;

#[cfg(feature = "alloc")]
mod owned {
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::fmt;

    use super::VarType;
    use crate::wire::message::Value;

    /// A variable's value, owned: what the cloud session reads from a device, what the REST API
    /// returns, what the virtual Core answers with.
    ///
    /// With the `serde` feature a value (de)serializes as the REST API writes it: a JSON bool,
    /// number, string or null. [`VariableValue::Raw`] serializes as
    /// `{"type_code": n, "bytes": [..]}` and is never produced by deserializing.
    #[derive(Debug, Clone, PartialEq)]
    #[non_exhaustive]
    pub enum VariableValue {
        /// A boolean.
        Bool(bool),
        /// A 32-bit integer.
        Int(i32),
        /// A double.
        Double(f64),
        /// A string.
        String(String),
        /// No value.
        Null,
        /// A value kept as it came: a string whose bytes are not UTF-8 (`type_code` 4), or a
        /// payload of a type this crate does not know.
        Raw {
            /// The type code ([`VarType::code`]) the value was read as.
            type_code: u8,
            /// The payload bytes.
            bytes: Vec<u8>,
        },
    }

    impl VariableValue {
        /// The owned value of a wire value; a string that is not UTF-8 becomes
        /// [`VariableValue::Raw`] with its bytes.
        #[must_use]
        pub fn from_wire(v: &Value<'_>) -> Self {
            match *v {
                Value::Bool(b) => VariableValue::Bool(b),
                Value::Int(i) => VariableValue::Int(i),
                Value::Double(d) => VariableValue::Double(d),
                Value::String(s) => match core::str::from_utf8(s) {
                    Ok(s) => VariableValue::String(s.into()),
                    Err(_) => VariableValue::Raw {
                        type_code: VarType::String.code(),
                        bytes: s.to_vec(),
                    },
                },
                Value::Null => VariableValue::Null,
            }
        }

        /// The wire value to send, borrowing this one; `None` for a [`VariableValue::Raw`] of a
        /// type code this crate does not know.
        #[must_use]
        pub fn to_wire(&self) -> Option<Value<'_>> {
            Some(match self {
                VariableValue::Bool(b) => Value::Bool(*b),
                VariableValue::Int(i) => Value::Int(*i),
                VariableValue::Double(d) => Value::Double(*d),
                VariableValue::String(s) => Value::String(s.as_bytes()),
                VariableValue::Null => Value::Null,
                VariableValue::Raw { type_code, bytes } => {
                    Value::parse(bytes, VarType::from_code(*type_code)?).ok()?
                }
            })
        }

        /// The value's type; `None` for a [`VariableValue::Raw`] of an unknown type code.
        #[must_use]
        pub fn var_type(&self) -> Option<VarType> {
            match self {
                VariableValue::Bool(_) => Some(VarType::Bool),
                VariableValue::Int(_) => Some(VarType::Int),
                VariableValue::Double(_) => Some(VarType::Double),
                VariableValue::String(_) => Some(VarType::String),
                VariableValue::Null => Some(VarType::Null),
                VariableValue::Raw { type_code, .. } => VarType::from_code(*type_code),
            }
        }

        /// The value as an integer, if it is one.
        #[must_use]
        pub fn as_i64(&self) -> Option<i64> {
            match self {
                VariableValue::Int(v) => Some(i64::from(*v)),
                _ => None,
            }
        }

        /// The value as a float (integers convert).
        #[must_use]
        pub fn as_f64(&self) -> Option<f64> {
            match self {
                VariableValue::Int(v) => Some(f64::from(*v)),
                VariableValue::Double(v) => Some(*v),
                _ => None,
            }
        }

        /// The value as a string, if it is one.
        #[must_use]
        pub fn as_str(&self) -> Option<&str> {
            match self {
                VariableValue::String(v) => Some(v),
                _ => None,
            }
        }

        /// The value as a bool, if it is one.
        #[must_use]
        pub fn as_bool(&self) -> Option<bool> {
            match self {
                VariableValue::Bool(v) => Some(*v),
                _ => None,
            }
        }
    }

    /// The value as text (the REST API's `?format=raw`): numbers and bools as Rust prints them,
    /// a string as it is, null as `null`, raw bytes as UTF-8 with U+FFFD for what is not.
    impl fmt::Display for VariableValue {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                VariableValue::Bool(v) => write!(f, "{v}"),
                VariableValue::Int(v) => write!(f, "{v}"),
                VariableValue::Double(v) => write!(f, "{v}"),
                VariableValue::String(v) => f.write_str(v),
                VariableValue::Null => f.write_str("null"),
                VariableValue::Raw { bytes, .. } => {
                    for chunk in bytes.utf8_chunks() {
                        f.write_str(chunk.valid())?;
                        if !chunk.invalid().is_empty() {
                            f.write_str("\u{fffd}")?;
                        }
                    }
                    Ok(())
                }
            }
        }
    }

    #[cfg(feature = "serde")]
    impl serde::Serialize for VariableValue {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeStruct;
            match self {
                VariableValue::Bool(v) => serializer.serialize_bool(*v),
                VariableValue::Int(v) => serializer.serialize_i32(*v),
                VariableValue::Double(v) => serializer.serialize_f64(*v),
                VariableValue::String(v) => serializer.serialize_str(v),
                VariableValue::Null => serializer.serialize_unit(),
                VariableValue::Raw { type_code, bytes } => {
                    let mut s = serializer.serialize_struct("Raw", 2)?;
                    s.serialize_field("type_code", type_code)?;
                    s.serialize_field("bytes", bytes.as_slice())?;
                    s.end()
                }
            }
        }
    }

    #[cfg(feature = "serde")]
    impl<'de> serde::Deserialize<'de> for VariableValue {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Json;
            impl serde::de::Visitor<'_> for Json {
                type Value = VariableValue;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a bool, a number, a string or null")
                }
                fn visit_bool<E>(self, v: bool) -> Result<VariableValue, E> {
                    Ok(VariableValue::Bool(v))
                }
                fn visit_i64<E>(self, v: i64) -> Result<VariableValue, E> {
                    // An int32 variable always fits; a larger number is some cloud's double.
                    Ok(match i32::try_from(v) {
                        Ok(v) => VariableValue::Int(v),
                        Err(_) => VariableValue::Double(v as f64),
                    })
                }
                fn visit_u64<E>(self, v: u64) -> Result<VariableValue, E> {
                    Ok(match i32::try_from(v) {
                        Ok(v) => VariableValue::Int(v),
                        Err(_) => VariableValue::Double(v as f64),
                    })
                }
                fn visit_f64<E>(self, v: f64) -> Result<VariableValue, E> {
                    Ok(VariableValue::Double(v))
                }
                fn visit_str<E>(self, v: &str) -> Result<VariableValue, E> {
                    Ok(VariableValue::String(v.into()))
                }
                fn visit_unit<E>(self) -> Result<VariableValue, E> {
                    Ok(VariableValue::Null)
                }
                fn visit_none<E>(self) -> Result<VariableValue, E> {
                    Ok(VariableValue::Null)
                }
            }
            deserializer.deserialize_any(Json)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn wire_round_trip_keeps_every_value() {
            let values = [
                Value::Bool(true),
                Value::Int(-7),
                Value::Double(0.25),
                Value::String(b"abc"),
                Value::String(&[0xc3, 0x28]),
                Value::Null,
            ];
            for v in values {
                let owned = VariableValue::from_wire(&v);
                assert_eq!(owned.to_wire(), Some(v));
                assert_eq!(owned.var_type(), Some(v.var_type()));
            }
            let unknown = VariableValue::Raw {
                type_code: 3,
                bytes: alloc::vec![1],
            };
            assert_eq!(unknown.to_wire(), None);
            assert_eq!(unknown.var_type(), None);
        }

        #[test]
        fn raw_bytes_display_with_replacement() {
            let v = VariableValue::Raw {
                type_code: 4,
                bytes: alloc::vec![b'o', 0xff, b'k'],
            };
            assert_eq!(alloc::format!("{v}"), "o\u{fffd}k");
        }
    }
}
