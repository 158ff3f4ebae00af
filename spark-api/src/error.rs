//! The one error type of the crate, and the parsed shapes of the cloud's error bodies.
//!
//! ```
//! use spark_api::ErrorBody;
//!
//! // The same failure, as each cloud words it.
//! let oauth = ErrorBody::parse(br#"{"error":"invalid_token","error_description":"The access token is invalid"}"#);
//! assert_eq!(oauth.oauth_error(), Some("invalid_token"));
//! let spark_2014 = ErrorBody::parse(br#"{"ok":false,"error":"Function not found"}"#);
//! assert_eq!(spark_2014.message().as_deref(), Some("Function not found"));
//! let local = ErrorBody::parse(br#""Oops, I couldn't find that core""#);
//! assert_eq!(local, ErrorBody::Text("Oops, I couldn't find that core".to_owned()));
//! assert_eq!(ErrorBody::parse(b""), ErrorBody::Empty);
//! assert!(matches!(ErrorBody::parse(b"<html>502</html>"), ErrorBody::NotJson(_)));
//! ```

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// Everything a call can fail with.
///
/// Match on the variant; [`Error::status`] and [`Error::body`] reach the HTTP details of an [`Error::Api`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cloud answered with a failure: a non-2xx status, or a 2xx body that says `"ok": false` (the 2014 cloud and
    /// the local cloud report flash and claim failures that way).
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The cloud answered 2xx but the body does not have the expected shape.
    #[error("unexpected response from {url} (HTTP {status}): at `{path}`: {message}")]
    Decode {
        /// The request URL (without query).
        url: String,
        /// The HTTP status.
        status: u16,
        /// The JSON path of the offending value, as `serde_path_to_error` names it (`.` for the root).
        path: String,
        /// What was wrong there.
        message: String,
    },
    /// The response body is larger than the client reads ([`crate::ClientBuilder::max_response_bytes`]).
    #[error("the response from {url} is larger than {limit} bytes")]
    ResponseTooLarge {
        /// The request URL (without query).
        url: String,
        /// The limit that was passed.
        limit: usize,
    },
    /// No answer in time.
    #[error("{phase} timed out for {url}")]
    Timeout {
        /// The request URL (without query).
        url: String,
        /// Which deadline passed.
        phase: TimeoutPhase,
    },
    /// The connection could not be made or broke (DNS, TCP, TLS, HTTP framing).
    #[error("transport error for {url}: {source}")]
    Transport {
        /// The request URL (without query).
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The client or a call was configured wrongly (bad base URL, plain HTTP to a remote host, bad argument).
    #[error("invalid {what}: {detail}")]
    InvalidInput {
        /// What was invalid.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The call needs an access token and the client has none.
    #[error("no access token configured")]
    NoToken,
    /// No token was found in the environment or in the CLI configuration files.
    #[error(
        "no access token in PARTICLE_ACCESS_TOKEN or in the particle/spark CLI configuration files"
    )]
    NoStoredToken,
    /// A CLI configuration file could not be read or parsed.
    #[error("configuration file {path}: {detail}")]
    ConfigFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// Which deadline of a request passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Establishing the TCP/TLS connection.
    Connect,
    /// The whole request, from sending to the last byte of the body.
    Request,
    /// An event stream stayed silent longer than the idle timeout.
    EventStreamIdle,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connecting",
            TimeoutPhase::Request => "the request",
            TimeoutPhase::EventStreamIdle => "the event stream (idle)",
        })
    }
}

/// A failure reported by the cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status (200 for an `"ok": false` body).
    pub status: u16,
    /// The HTTP method.
    pub method: String,
    /// The request URL (without query).
    pub url: String,
    /// The parsed body.
    pub body: ErrorBody,
    /// The `Retry-After` delay the server asked for, when it sent one in seconds.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} from {} {}", self.status, self.method, self.url)?;
        if let Some(message) = self.body.message() {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

/// The body of a failed response, in each shape the Spark and Particle clouds (and the local cloud) send.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ErrorBody {
    /// OAuth style: `{"error": "invalid_grant", "error_description": "...", "code": 400}`.
    OAuth {
        /// The machine-readable code (`invalid_token`, `expired_token`, `invalid_grant`, `mfa_required`, ...).
        error: String,
        /// The human-readable text.
        error_description: Option<String>,
        /// The status repeated in the body (local cloud).
        code: Option<u16>,
        /// The token to continue an MFA login with, when `error` is `mfa_required`.
        mfa_token: Option<String>,
    },
    /// A single message: `{"ok": false, "error": "Function not found"}`, `{"error": "Timed out."}`, or the local
    /// cloud's `{"Error": "..."}`.
    Message {
        /// The `ok` field, when present.
        ok: Option<bool>,
        /// The message.
        error: String,
    },
    /// A list: `{"ok": false, "errors": ["Compile error"], "output": "..."}`. Entries are strings in the 2014 cloud
    /// and objects (`{"id", "status"}`, `{"error"}`) in the local cloud's flash answers.
    Errors {
        /// The `ok` field, when present.
        ok: Option<bool>,
        /// The entries as sent.
        errors: Vec<Value>,
        /// Compiler output, when a compile failed.
        output: Option<String>,
        /// The binary id, when the flash reached that far.
        firmware_binary_id: Option<String>,
    },
    /// A bare JSON string, like the local cloud's `"Oops, I couldn't find that core"`.
    Text(String),
    /// No body at all.
    Empty,
    /// Any other JSON.
    Json(Value),
    /// A body that is not JSON (an HTML page from a proxy, for example), lossily decoded and cut to 1 KiB.
    NotJson(String),
}

const NOT_JSON_LIMIT: usize = 1024;

impl ErrorBody {
    /// Classify a raw body.
    pub fn parse(bytes: &[u8]) -> ErrorBody {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return ErrorBody::Empty;
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => ErrorBody::from_value(value),
            Err(_) => {
                let mut text = String::from_utf8_lossy(bytes).into_owned();
                if text.len() > NOT_JSON_LIMIT {
                    let mut cut = NOT_JSON_LIMIT;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                }
                ErrorBody::NotJson(text)
            }
        }
    }

    /// Classify an already parsed body.
    pub fn from_value(value: Value) -> ErrorBody {
        let Value::Object(map) = value else {
            return match value {
                Value::String(text) => ErrorBody::Text(text),
                Value::Null => ErrorBody::Empty,
                other => ErrorBody::Json(other),
            };
        };
        let ok = map.get("ok").and_then(Value::as_bool);
        let string = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
        if let Some(Value::Array(errors)) = map.get("errors") {
            return ErrorBody::Errors {
                ok,
                errors: errors.clone(),
                output: string("output"),
                firmware_binary_id: map.get("firmware_binary_id").and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }),
            };
        }
        if let Some(error) = string("error") {
            let error_description = string("error_description");
            let code = map
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok());
            if error_description.is_some() || code.is_some() || map.contains_key("mfa_token") {
                return ErrorBody::OAuth {
                    error,
                    error_description,
                    code,
                    mfa_token: string("mfa_token"),
                };
            }
            return ErrorBody::Message { ok, error };
        }
        if let Some(error) = string("Error") {
            return ErrorBody::Message { ok, error };
        }
        ErrorBody::Json(Value::Object(map))
    }

    /// One line for a person, when the body says anything.
    pub fn message(&self) -> Option<String> {
        match self {
            ErrorBody::OAuth {
                error,
                error_description,
                ..
            } => Some(match error_description {
                Some(description) => format!("{error}: {description}"),
                None => error.clone(),
            }),
            ErrorBody::Message { error, .. } => Some(error.clone()),
            ErrorBody::Errors { errors, .. } => {
                let parts: Vec<String> = errors
                    .iter()
                    .map(|e| match e {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                if parts.is_empty() {
                    None
                } else {
                    Some(parts.join("; "))
                }
            }
            ErrorBody::Text(text) | ErrorBody::NotJson(text) => Some(text.clone()),
            ErrorBody::Empty => None,
            ErrorBody::Json(value) => Some(value.to_string()),
        }
    }

    /// The OAuth error code (`invalid_token`, `mfa_required`, ...), if the body has that shape.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            ErrorBody::OAuth { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl Error {
    /// The HTTP status, for [`Error::Api`] and [`Error::Decode`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(api) => Some(api.status),
            Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The parsed failure body, for [`Error::Api`].
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            Error::Api(api) => Some(&api.body),
            _ => None,
        }
    }

    /// Whether the access token was refused: 401, `invalid_token`/`expired_token`, or the local cloud's 400
    /// `invalid_grant`/`invalid_request` about the access token.
    pub fn is_auth(&self) -> bool {
        let Error::Api(api) = self else {
            return false;
        };
        if api.status == 401 {
            return true;
        }
        match &api.body {
            ErrorBody::OAuth {
                error,
                error_description,
                ..
            } => {
                matches!(error.as_str(), "invalid_token" | "expired_token")
                    || (matches!(error.as_str(), "invalid_grant" | "invalid_request")
                        && error_description
                            .as_deref()
                            .is_some_and(|d| d.contains("access token")))
            }
            _ => false,
        }
    }

    /// Whether the error is a timeout of any phase.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Error {
        Error::InvalidInput {
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn from_reqwest(url: &str, source: reqwest::Error) -> Error {
        let url = strip_query(url);
        if source.is_timeout() {
            let phase = if source.is_connect() {
                TimeoutPhase::Connect
            } else {
                TimeoutPhase::Request
            };
            return Error::Timeout { url, phase };
        }
        Error::Transport { url, source }
    }
}

/// A URL without its query, so that nothing passed in a query string ends up in logs.
pub(crate) fn strip_query(url: &str) -> String {
    match url.find('?') {
        Some(q) => url[..q].to_owned(),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_shape() {
        assert_eq!(
            ErrorBody::parse(br#"{"code":400,"error":"invalid_grant","error_description":"The access token provided is invalid."}"#),
            ErrorBody::OAuth {
                error: "invalid_grant".into(),
                error_description: Some("The access token provided is invalid.".into()),
                code: Some(400),
                mfa_token: None
            }
        );
        assert_eq!(
            ErrorBody::parse(br#"{"error":"mfa_required","mfa_token":"abc"}"#).oauth_error(),
            Some("mfa_required")
        );
        assert_eq!(
            ErrorBody::parse(br#"{"ok":false,"error":"Function not found"}"#),
            ErrorBody::Message {
                ok: Some(false),
                error: "Function not found".into()
            }
        );
        assert_eq!(
            ErrorBody::parse(br#"{"error":"Timed out."}"#),
            ErrorBody::Message {
                ok: None,
                error: "Timed out.".into()
            }
        );
        assert_eq!(
            ErrorBody::parse(br#"{"Error":"boom"}"#)
                .message()
                .as_deref(),
            Some("boom")
        );
        let errors = ErrorBody::parse(br#"{"ok":false,"errors":["Compile error"],"output":"log"}"#);
        assert_eq!(errors.message().as_deref(), Some("Compile error"));
        assert!(matches!(errors, ErrorBody::Errors { output: Some(ref o), .. } if o == "log"));
        assert_eq!(
            ErrorBody::parse(br#"{"ok":false,"errors":[{"error":"Timed out."}]}"#)
                .message()
                .as_deref(),
            Some(r#"{"error":"Timed out."}"#)
        );
        assert_eq!(
            ErrorBody::parse(br#""Oops, I couldn't find that core""#),
            ErrorBody::Text("Oops, I couldn't find that core".into())
        );
        assert_eq!(ErrorBody::parse(b""), ErrorBody::Empty);
        assert_eq!(ErrorBody::parse(b" \r\n"), ErrorBody::Empty);
        assert_eq!(
            ErrorBody::parse(b"[1]"),
            ErrorBody::Json(serde_json::json!([1]))
        );
        assert_eq!(
            ErrorBody::parse(b"<html>bad gateway</html>"),
            ErrorBody::NotJson("<html>bad gateway</html>".into())
        );
    }

    #[test]
    fn flash_failure_of_the_2014_cloud() {
        let body = ErrorBody::parse(
            br#"{"ok":false,"firmware_binary_id":"1234567","errors":["Device is not connected."]}"#,
        );
        let ErrorBody::Errors {
            ok,
            firmware_binary_id,
            ..
        } = &body
        else {
            panic!("{body:?}");
        };
        assert_eq!(
            (*ok, firmware_binary_id.as_deref()),
            (Some(false), Some("1234567"))
        );
        assert_eq!(body.message().as_deref(), Some("Device is not connected."));
        let numeric = ErrorBody::parse(br#"{"ok":false,"firmware_binary_id":12345,"errors":[]}"#);
        assert!(
            matches!(numeric, ErrorBody::Errors { firmware_binary_id: Some(ref id), .. } if id == "12345")
        );
        assert_eq!(numeric.message(), None);
    }

    #[test]
    fn not_json_is_cut_on_a_char_boundary() {
        let body = "é".repeat(1000);
        let ErrorBody::NotJson(text) = ErrorBody::parse(body.as_bytes()) else {
            panic!("expected NotJson");
        };
        assert!(text.len() <= NOT_JSON_LIMIT && !text.is_empty());
    }

    #[test]
    fn auth_classification() {
        let api = |status, body: &[u8]| {
            Error::Api(Box::new(ApiError {
                status,
                method: "GET".into(),
                url: "u".into(),
                body: ErrorBody::parse(body),
                retry_after: None,
            }))
        };
        assert!(api(401, b"").is_auth());
        assert!(api(400, br#"{"code":400,"error":"invalid_request","error_description":"The access token was not found"}"#).is_auth());
        assert!(!api(400, br#"{"ok":false,"error":"Variable not found"}"#).is_auth());
        assert!(!api(404, b"").is_auth());
        assert_eq!(api(404, b"").status(), Some(404));
    }

    #[test]
    fn query_is_stripped() {
        assert_eq!(strip_query("http://h/v1/x?access_token=s"), "http://h/v1/x");
    }
}
