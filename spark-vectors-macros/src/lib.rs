//! The attribute behind `#[spark_vectors::test]`; use it through the `spark-vectors` crate.
//!
//! `#[spark_vectors::test]` on a test function expands to `#[test]`, plus
//! `#[ignore = "needs the test vectors: set $SPARK_VECTORS"]` when the vectors root was absent when this crate was
//! built (see `build.rs`), so a test that cannot read its data is counted as ignored, never as passed. Under
//! `SPARK_REQUIRE_VECTORS=1` nothing is ignored: the tests run and fail loudly on the missing folder.
//!
//! When the function already carries a test attribute of its own (`#[tokio::test]`), only the `ignore` is added.
//! Written on the bare `proc_macro` API so the crate has no dependencies.

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

/// Whether the vectors root was missing at build time (and not required).
const MISSING: bool = cfg!(spark_vectors_missing);

/// The reason shown by `cargo test` next to each ignored test.
const REASON: &str = "needs the test vectors: set $SPARK_VECTORS";

/// Marks a test that reads the shared test vectors; see the crate docs.
#[proc_macro_attribute]
pub fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    if let Some(first) = attr.into_iter().next() {
        return compile_error("#[spark_vectors::test] takes no arguments", first.span());
    }
    let shape = match inspect(item.clone()) {
        Ok(shape) => shape,
        Err((message, span)) => return compile_error(message, span),
    };
    let mut out = TokenStream::new();
    if !shape.has_test_attribute {
        // The built-in attribute by its absolute path, so a `test` imported in the caller's scope (this very
        // macro, through a glob import) is not picked instead.
        let mut path = TokenStream::new();
        for segment in ["core", "prelude", "v1", "test"] {
            path.extend([
                TokenTree::Punct(Punct::new(':', Spacing::Joint)),
                TokenTree::Punct(Punct::new(':', Spacing::Alone)),
                TokenTree::Ident(Ident::new(segment, Span::call_site())),
            ]);
        }
        out.extend(attribute(path));
    }
    if MISSING {
        let mut ignore = TokenStream::new();
        ignore.extend([
            TokenTree::Ident(Ident::new("ignore", Span::call_site())),
            TokenTree::Punct(Punct::new('=', Spacing::Alone)),
            TokenTree::Literal(Literal::string(REASON)),
        ]);
        out.extend(attribute(ignore));
    }
    out.extend(item);
    out
}

/// `true` when this build marks vector tests as ignored. spark-vectors compares it with the run-time state.
#[doc(hidden)]
#[proc_macro]
pub fn __marks_ignored(input: TokenStream) -> TokenStream {
    if let Some(first) = input.into_iter().next() {
        return compile_error("takes no input", first.span());
    }
    TokenStream::from(TokenTree::Ident(Ident::new(
        if MISSING { "true" } else { "false" },
        Span::call_site(),
    )))
}

/// What the attribute needs to know about the item it is put on.
struct Shape {
    /// The function already has `#[test]` or `#[something::test]`.
    has_test_attribute: bool,
}

/// Checks that `item` is a function (outer attributes, visibility and qualifiers allowed before `fn`).
fn inspect(item: TokenStream) -> Result<Shape, (&'static str, Span)> {
    const NOT_A_FN: &str = "#[spark_vectors::test] goes on a test function";
    let mut tokens = item.into_iter().peekable();
    let mut has_test_attribute = false;
    loop {
        match tokens.next() {
            Some(TokenTree::Punct(p)) if p.as_char() == '#' => match tokens.next() {
                Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Bracket => {
                    has_test_attribute |= is_test_attribute(&g);
                }
                Some(other) => return Err((NOT_A_FN, other.span())),
                None => return Err((NOT_A_FN, p.span())),
            },
            Some(TokenTree::Ident(i)) => match i.to_string().as_str() {
                "fn" => {
                    return match tokens.next() {
                        Some(TokenTree::Ident(_)) => Ok(Shape { has_test_attribute }),
                        Some(other) => Err((NOT_A_FN, other.span())),
                        None => Err((NOT_A_FN, i.span())),
                    };
                }
                "pub" => {
                    if let Some(TokenTree::Group(g)) = tokens.peek()
                        && g.delimiter() == Delimiter::Parenthesis
                    {
                        tokens.next();
                    }
                }
                "async" | "const" | "unsafe" | "extern" => {}
                _ => return Err((NOT_A_FN, i.span())),
            },
            // The ABI string of `extern "C"`.
            Some(TokenTree::Literal(_)) => {}
            Some(other) => return Err((NOT_A_FN, other.span())),
            None => return Err((NOT_A_FN, Span::call_site())),
        }
    }
}

/// `[test]`, `[tokio::test]`, `[tokio::test(flavor = ...)]`: a path whose last segment is `test`.
fn is_test_attribute(group: &Group) -> bool {
    let mut last = None;
    for token in group.stream() {
        match token {
            TokenTree::Ident(i) => last = Some(i.to_string()),
            TokenTree::Punct(p) if p.as_char() == ':' => {}
            _ => break,
        }
    }
    last.as_deref() == Some("test")
}

/// `#[body]`.
fn attribute(body: TokenStream) -> TokenStream {
    TokenStream::from_iter([
        TokenTree::Punct(Punct::new('#', Spacing::Alone)),
        TokenTree::Group(Group::new(Delimiter::Bracket, body)),
    ])
}

/// `::core::compile_error!("message");` at `span`.
fn compile_error(message: &str, span: Span) -> TokenStream {
    let mut literal = Literal::string(message);
    literal.set_span(span);
    let mut out = TokenStream::new();
    out.extend([
        TokenTree::Punct(Punct::new(':', Spacing::Joint)),
        TokenTree::Punct(Punct::new(':', Spacing::Alone)),
        TokenTree::Ident(Ident::new("core", span)),
        TokenTree::Punct(Punct::new(':', Spacing::Joint)),
        TokenTree::Punct(Punct::new(':', Spacing::Alone)),
        TokenTree::Ident(Ident::new("compile_error", span)),
        TokenTree::Punct(Punct::new('!', Spacing::Alone)),
        TokenTree::Group(Group::new(
            Delimiter::Parenthesis,
            TokenStream::from(TokenTree::Literal(literal)),
        )),
        TokenTree::Punct(Punct::new(';', Spacing::Alone)),
    ]);
    out
}
