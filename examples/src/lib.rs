//! Nothing here: the programs are in `examples/`, run with `cargo run -p examples --example NAME`.
