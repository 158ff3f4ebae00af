/work/main/spark-protocol/footprint/target/debug/deps/inout-4d8bddeb9803b449.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/errors.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/inout.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/inout_buf.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/reserved.rs

/work/main/spark-protocol/footprint/target/debug/deps/libinout-4d8bddeb9803b449.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/errors.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/inout.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/inout_buf.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/reserved.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/errors.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/inout.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/inout_buf.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inout-0.2.6/src/reserved.rs:
