/work/main/spark-protocol/footprint/target/debug/deps/subtle-6e79aa59cdd20483.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/subtle-2.6.1/src/lib.rs

/work/main/spark-protocol/footprint/target/debug/deps/libsubtle-6e79aa59cdd20483.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/subtle-2.6.1/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/subtle-2.6.1/src/lib.rs:
