//! The description a device returns to Describe: `{"f":[functions],"v":{variable:type,...}}`.
//!
//! The Core writes it byte by byte (CCL `SparkProtocol::description`): function names in quotes,
//! variable names with the ASCII digit of their type, names cut to 12 bytes, no escaping, no spaces.
//! [`DescriptionWriter`] writes the same bytes into a caller's buffer without allocation.

use super::Error;
use super::limits::{CORE_MAX_FUNCTION_NAME_LEN, CORE_MAX_VARIABLE_NAME_LEN};

/// The type of a variable, as the description and the REST API name it (CCL `spark_descriptor.h`,
/// SP `Messages.getNameFromTypeInt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The type code (1, 2, 4, 5, 9).
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
    pub const fn name(self) -> &'static str {
        match self {
            VarType::Bool => "bool",
            VarType::Int => "int32",
            VarType::String => "string",
            VarType::Null => "null",
            VarType::Double => "double",
        }
    }
}

/// Writes a description into a caller's buffer: functions first, then variables, then
/// [`DescriptionWriter::finish`].
///
/// ```
/// use spark_protocol::wire::describe::{DescriptionWriter, VarType};
/// let mut buf = [0u8; 64];
/// let mut w = DescriptionWriter::new(&mut buf);
/// w.function(b"brew")?;
/// w.variable(b"temperature", VarType::Int)?;
/// let n = w.finish()?;
/// assert_eq!(&buf[..n], br#"{"f":["brew"],"v":{"temperature":2}}"#);
/// # Ok::<(), spark_protocol::wire::Error>(())
/// ```
#[derive(Debug)]
pub struct DescriptionWriter<'b> {
    buf: &'b mut [u8],
    pos: usize,
    functions: usize,
    variables: usize,
    /// Bytes needed so far, counted even past the end of the buffer.
    needed: usize,
    name_limit: Option<(usize, usize)>,
}

impl<'b> DescriptionWriter<'b> {
    /// A writer that cuts names to the Core's 12 bytes, as the Core does.
    pub fn new(buf: &'b mut [u8]) -> Self {
        DescriptionWriter {
            buf,
            pos: 0,
            functions: 0,
            variables: 0,
            needed: 0,
            name_limit: Some((CORE_MAX_FUNCTION_NAME_LEN, CORE_MAX_VARIABLE_NAME_LEN)),
        }
    }

    /// A writer that keeps names whole (Device OS allows 64 bytes).
    pub fn without_name_limit(buf: &'b mut [u8]) -> Self {
        DescriptionWriter {
            name_limit: None,
            ..DescriptionWriter::new(buf)
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.needed += bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.pos += bytes.len();
        } else {
            self.pos = self.buf.len() + 1;
        }
    }

    fn check_name(name: &[u8]) -> Result<(), Error> {
        // The Core does not escape names; refuse what would break the JSON instead.
        if name.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
            return Err(Error::Invalid("name character in a description"));
        }
        Ok(())
    }

    /// Adds a function name. Functions must all come before the first variable.
    pub fn function(&mut self, name: &[u8]) -> Result<&mut Self, Error> {
        if self.variables > 0 {
            return Err(Error::Invalid("function after a variable in a description"));
        }
        Self::check_name(name)?;
        let name = match self.name_limit {
            Some((f, _)) => &name[..name.len().min(f)],
            None => name,
        };
        self.put(if self.functions == 0 {
            b"{\"f\":[\""
        } else {
            b",\""
        });
        self.put(name);
        self.put(b"\"");
        self.functions += 1;
        Ok(self)
    }

    /// Adds a variable name and its type.
    pub fn variable(&mut self, name: &[u8], ty: VarType) -> Result<&mut Self, Error> {
        Self::check_name(name)?;
        let name = match self.name_limit {
            Some((_, v)) => &name[..name.len().min(v)],
            None => name,
        };
        if self.variables == 0 {
            self.put(if self.functions == 0 {
                b"{\"f\":["
            } else {
                b""
            });
            self.put(b"],\"v\":{\"");
        } else {
            self.put(b",\"");
        }
        self.put(name);
        self.put(b"\":");
        let code = ty.code();
        self.put(&[b'0' + code]);
        self.variables += 1;
        Ok(self)
    }

    /// Closes the JSON; returns its length, or [`Error::InsufficientSize`] with the size needed.
    pub fn finish(mut self) -> Result<usize, Error> {
        match (self.functions, self.variables) {
            (0, 0) => self.put(b"{\"f\":[],\"v\":{}}"),
            (_, 0) => self.put(b"],\"v\":{}}"),
            _ => self.put(b"}}"),
        }
        if self.needed > self.buf.len() {
            return Err(Error::InsufficientSize {
                required: self.needed,
            });
        }
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(
        functions: &[&[u8]],
        variables: &[(&[u8], VarType)],
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        let mut w = DescriptionWriter::new(buf);
        for f in functions {
            w.function(f)?;
        }
        for (v, t) in variables {
            w.variable(v, *t)?;
        }
        w.finish()
    }

    #[test]
    fn matches_the_core() {
        let mut buf = [0u8; 128];
        let n = write(&[b"brew"], &[(b"temperature", VarType::Int)], &mut buf).unwrap();
        assert_eq!(&buf[..n], br#"{"f":["brew"],"v":{"temperature":2}}"#);
        let n = write(&[], &[], &mut buf).unwrap();
        assert_eq!(&buf[..n], br#"{"f":[],"v":{}}"#);
        let n = write(&[b"a", b"b"], &[], &mut buf).unwrap();
        assert_eq!(&buf[..n], br#"{"f":["a","b"],"v":{}}"#);
        let n = write(
            &[],
            &[
                (b"x", VarType::Double),
                (b"a_very_long_variable", VarType::String),
            ],
            &mut buf,
        )
        .unwrap();
        assert_eq!(&buf[..n], br#"{"f":[],"v":{"x":9,"a_very_long_":4}}"#);
    }

    #[test]
    fn reports_size_and_bad_input() {
        let mut buf = [0u8; 10];
        assert_eq!(
            write(&[b"brew"], &[(b"temperature", VarType::Int)], &mut buf),
            Err(Error::InsufficientSize { required: 36 })
        );
        let mut buf = [0u8; 64];
        assert!(write(&[b"a\"b"], &[], &mut buf).is_err());
        let mut w = DescriptionWriter::new(&mut buf);
        w.variable(b"v", VarType::Bool).unwrap();
        assert!(w.function(b"f").is_err());
        for t in [
            VarType::Bool,
            VarType::Int,
            VarType::String,
            VarType::Null,
            VarType::Double,
        ] {
            assert_eq!(VarType::from_code(t.code()), Some(t));
        }
        assert_eq!(VarType::from_code(3), None);
    }
}
