//! The description a device returns to Describe: `{"f":[functions],"v":{variable:type,...}}`.
//!
//! The Core writes it byte by byte (CCL `SparkProtocol::description`): function names in quotes,
//! variable names with the ASCII digit of their type, names cut to 12 bytes, no escaping, no spaces.
//! [`DescriptionWriter`] writes the same bytes into a caller's buffer without allocation;
//! [`Description`] reads a received one (the Core's, or Device OS's with more keys) in place.

use super::Error;
use super::limits::{CORE_MAX_FUNCTION_NAME_LEN, CORE_MAX_VARIABLE_NAME_LEN};

pub use crate::variable::VarType;

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

/// A received description, validated, read without allocation.
///
/// Accepts any JSON object; reads `"f"` (an array of function names) and `"v"` (an object of
/// variable name to type code), and skips other keys (Device OS adds some). Names are returned as
/// the raw bytes between their quotes: the Core never escapes them, and an escaped name is returned
/// with its escapes.
///
/// ```
/// use spark_protocol::wire::describe::{Description, VarType};
/// let d = Description::parse(br#"{"f":["brew"],"v":{"temperature":2}}"#)?;
/// assert!(d.functions().eq([&b"brew"[..]]));
/// assert_eq!(d.variable_type(b"temperature"), Some(VarType::Int));
/// # Ok::<(), spark_protocol::wire::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Description<'a> {
    /// The inside of the `f` array.
    functions: &'a [u8],
    /// The inside of the `v` object.
    variables: &'a [u8],
}

/// How deep [`Description::parse`] follows nested values it skips.
const MAX_DEPTH: usize = 16;

impl<'a> Description<'a> {
    /// Validates a description; [`Error::Invalid`] when it is not JSON of the expected shape.
    pub fn parse(json: &'a [u8]) -> Result<Self, Error> {
        let mut s = Scanner { b: json, pos: 0 };
        let mut functions: &[u8] = &[];
        let mut variables: &[u8] = &[];
        s.expect(b'{')?;
        s.list(b'}', |s| {
            let key = s.string()?;
            s.expect(b':')?;
            match key {
                b"f" => {
                    s.expect(b'[')?;
                    let start = s.pos;
                    s.list(b']', |s| s.string().map(drop))?;
                    functions = &json[start..s.pos - 1];
                }
                b"v" => {
                    s.expect(b'{')?;
                    let start = s.pos;
                    s.list(b'}', |s| {
                        s.string()?;
                        s.expect(b':')?;
                        s.type_code().map(drop)
                    })?;
                    variables = &json[start..s.pos - 1];
                }
                _ => s.skip_value(0)?,
            }
            Ok(())
        })?;
        s.ws();
        if s.pos != json.len() {
            return Err(Error::Invalid("description: text after the object"));
        }
        Ok(Description {
            functions,
            variables,
        })
    }

    /// The function names.
    pub fn functions(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let mut s = Scanner {
            b: self.functions,
            pos: 0,
        };
        core::iter::from_fn(move || {
            s.eat(b',');
            s.string().ok()
        })
    }

    /// The variables and their types (`None` for a code this crate does not know).
    pub fn variables(&self) -> impl Iterator<Item = (&'a [u8], Option<VarType>)> + use<'a> {
        let mut s = Scanner {
            b: self.variables,
            pos: 0,
        };
        core::iter::from_fn(move || {
            s.eat(b',');
            let name = s.string().ok()?;
            s.expect(b':').ok()?;
            let code = s.type_code().ok()?;
            Some((name, VarType::from_code(code)))
        })
    }

    /// The type of the variable `name`, when it is described with a known type.
    #[must_use]
    pub fn variable_type(&self, name: &[u8]) -> Option<VarType> {
        self.variables()
            .find(|(n, _)| *n == name)
            .and_then(|(_, t)| t)
    }

    /// Whether the description lists the function `name`.
    #[must_use]
    pub fn has_function(&self, name: &[u8]) -> bool {
        self.functions().any(|f| f == name)
    }
}

/// A minimal JSON reader over bytes, for [`Description`].
struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
}

const BAD: Error = Error::Invalid("description JSON");

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Consumes `c` (after whitespace) when it is next.
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), Error> {
        if self.eat(c) { Ok(()) } else { Err(BAD) }
    }

    /// A string; returns the bytes between the quotes, escapes untouched.
    fn string(&mut self) -> Result<&'a [u8], Error> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            match *self.b.get(self.pos).ok_or(BAD)? {
                b'"' => break,
                b'\\' => self.pos += 2,
                c if c < 0x20 => return Err(BAD),
                _ => self.pos += 1,
            }
        }
        let s = self.b.get(start..self.pos).ok_or(BAD)?;
        self.pos += 1;
        Ok(s)
    }

    /// A variable's type: a small non-negative integer.
    fn type_code(&mut self) -> Result<u8, Error> {
        self.ws();
        let start = self.pos;
        while matches!(self.b.get(self.pos), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let digits = &self.b[start..self.pos];
        if digits.is_empty() || digits.len() > 3 {
            return Err(BAD);
        }
        let n = digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        u8::try_from(n).map_err(|_| BAD)
    }

    /// Skips any JSON value.
    /// Reads the items of an array or object up to `close` (the opening bracket already read),
    /// with a comma between two items.
    fn list(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut first = true;
        while !self.eat(close) {
            if !first {
                self.expect(b',')?;
            }
            first = false;
            item(self)?;
        }
        Ok(())
    }

    fn skip_value(&mut self, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(BAD);
        }
        self.ws();
        match *self.b.get(self.pos).ok_or(BAD)? {
            b'"' => self.string().map(|_| ()),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                self.list(close, |s| {
                    if open == b'{' {
                        s.string()?;
                        s.expect(b':')?;
                    }
                    s.skip_value(depth + 1)
                })
            }
            _ => {
                let start = self.pos;
                while matches!(
                    self.b.get(self.pos),
                    Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' | b'a'..=b'z')
                ) {
                    self.pos += 1;
                }
                if self.pos == start { Err(BAD) } else { Ok(()) }
            }
        }
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

    #[test]
    fn reads_descriptions() {
        let d = Description::parse(br#"{"f":["brew","digitalread"],"v":{"temperature":2,"x":9}}"#)
            .unwrap();
        assert!(d.functions().eq([&b"brew"[..], b"digitalread"]));
        assert!(d.variables().eq([
            (&b"temperature"[..], Some(VarType::Int)),
            (b"x", Some(VarType::Double))
        ]));
        assert!(d.has_function(b"brew") && !d.has_function(b"bre"));
        assert_eq!(d.variable_type(b"x"), Some(VarType::Double));
        assert_eq!(d.variable_type(b"y"), None);

        // Whitespace, other keys, unknown type codes, escapes.
        let d = Description::parse(
            br#" { "p" : 6, "m":[{"a":[1,2.5e3,null,true]}], "v" : { "a\"b" : 7 }, "f" : [ ] } "#,
        )
        .unwrap();
        assert_eq!(d.functions().count(), 0);
        assert!(d.variables().eq([(&br#"a\"b"#[..], None)]));
        let d = Description::parse(b"{}").unwrap();
        assert_eq!((d.functions().count(), d.variables().count()), (0, 0));

        // What the writer writes, the reader reads.
        let mut buf = [0u8; 128];
        let n = write(&[b"a", b"b"], &[(b"c", VarType::String)], &mut buf).unwrap();
        let d = Description::parse(&buf[..n]).unwrap();
        assert!(d.functions().eq([&b"a"[..], b"b"]));
        assert_eq!(d.variable_type(b"c"), Some(VarType::String));
    }

    #[test]
    fn rejects_bad_descriptions() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"f":["a"}"#,
            br#"{"f":[1]}"#,
            br#"{"v":{"a":"2"}}"#,
            br#"{"v":{"a":256}}"#,
            br#"{"v":{"a":-1}}"#,
            br#"{"f":[],}"#,
            br#"{"f":[]} x"#,
            br#"{"f":["a"#,
            br#"{"x":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}"#,
            b"{\"f\":[\"a\nb\"]}",
        ] {
            assert!(
                Description::parse(bad).is_err(),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }
}
