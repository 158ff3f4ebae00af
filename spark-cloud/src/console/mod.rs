//! The fleet console: a static page served at `/console` from the REST API's port, built into the binary.
//!
//! The page holds no secret and reaches the cloud through the public REST API only: it logs in with
//! `POST /oauth/token` (or takes a pasted token), keeps the token in the tab's memory, and sends it in the
//! `Authorization` header, also on the event stream, which it reads with `fetch()` and a streaming body reader
//! rather than `EventSource` (which cannot set headers and would need the token in the URL).
//!
//! Every answer carries a Content-Security-Policy of `default-src 'self'` (no inline script or style, no other
//! origin), `nosniff`, no referrer and no framing. The files live in `spark-cloud/console/`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use spark_protocol::session::cloud::DeviceInfo;

use super::DeviceStatus;

/// The policy of every console answer: only this origin, no inline code, not framed, forms submit nowhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'none'; form-action 'none'; \
                                           frame-ancestors 'none'; object-src 'none'";

/// One file of the page.
struct Asset {
    /// Its name under `/console/` (`""`: the page itself).
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../console/index.html"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../console/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../console/console.js"),
    },
];

/// The size of the page in bytes: HTML, CSS and JavaScript.
pub fn page_size() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

/// Answers `GET` or `HEAD` of `/console/<rest>`; anything else under `/console` is `404` or `405`.
pub(crate) fn serve(method: &Method, rest: &[&str]) -> Response<Full<Bytes>> {
    let name = match rest {
        [] => Some(""),
        [name] if !name.is_empty() => Some(*name),
        _ => None,
    };
    let Some(asset) = name.and_then(|name| ASSETS.iter().find(|a| a.name == name)) else {
        return answer(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "");
    };
    match *method {
        Method::GET => answer(StatusCode::OK, asset.content_type, asset.body),
        Method::HEAD => {
            let mut r = answer(StatusCode::OK, asset.content_type, "");
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
            r
        }
        _ => {
            let mut r = answer(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
    }
}

fn answer(
    status: StatusCode,
    content_type: &'static str,
    body: &'static str,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    super::http::insert_static(
        r.headers_mut(),
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            // The files change with the binary; a browser asks again rather than run an old page against a new
            // cloud.
            (header::CACHE_CONTROL, "no-cache"),
        ],
    );
    r
}

/// What a device said of itself in its Hello, into its status (the device listener records it on every new
/// session).
pub(crate) fn hello_status(status: &mut DeviceStatus, info: &DeviceInfo) {
    status.product_id = info.product_id;
    status.product_firmware_version = info.firmware_version;
    // A Hello without the Device OS fields is the Core's (platform 0), the only device that sends it so.
    status.platform_id = Some(info.extended.as_ref().map_or(0, |e| e.platform_id));
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(r: Response<Full<Bytes>>) -> Bytes {
        let collected = r.into_body().collect();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut f = std::pin::pin!(collected);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(c)) => c.to_bytes(),
            _ => panic!("a full body is ready at once"),
        }
    }

    #[test]
    fn each_file_has_its_type_and_the_policy() {
        for (path, kind) in [
            (&[][..], "text/html"),
            (&["console.js"][..], "text/javascript"),
            (&["console.css"][..], "text/css"),
        ] {
            let r = serve(&Method::GET, path);
            assert_eq!(r.status(), StatusCode::OK);
            let h = r.headers();
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind));
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(!body(r).is_empty());
        }
    }

    #[test]
    fn unknown_paths_and_methods_are_refused() {
        assert_eq!(
            serve(&Method::GET, &["nope.js"]).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            serve(&Method::GET, &["a", "console.js"]).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(serve(&Method::GET, &[""]).status(), StatusCode::NOT_FOUND);
        let r = serve(&Method::POST, &[]);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
        let head = serve(&Method::HEAD, &["console.js"]);
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            head.headers()[header::CONTENT_LENGTH],
            include_str!("../../console/console.js").len().to_string()
        );
        assert!(body(head).is_empty());
    }

    #[test]
    fn the_page_loads_nothing_from_another_origin_and_runs_no_inline_code() {
        let html = include_str!("../../console/index.html");
        for forbidden in [
            "http://", "https://", "<script>", "style=", "onclick", "onload",
        ] {
            assert!(!html.contains(forbidden), "index.html contains {forbidden}");
        }
        let js = include_str!("../../console/console.js");
        for forbidden in [
            "EventSource",
            "access_token=",
            "eval(",
            "innerHTML",
            "localStorage",
        ] {
            assert!(!js.contains(forbidden), "console.js contains {forbidden}");
        }
    }
}
