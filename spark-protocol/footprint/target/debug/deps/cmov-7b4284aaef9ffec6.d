/work/main/spark-protocol/footprint/target/debug/deps/cmov-7b4284aaef9ffec6.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/macros.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/array.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/backends.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/backends/x86.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/slice.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/../README.md

/work/main/spark-protocol/footprint/target/debug/deps/libcmov-7b4284aaef9ffec6.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/macros.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/array.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/backends.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/backends/x86.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/slice.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/../README.md

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/macros.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/array.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/backends.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/backends/x86.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/slice.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cmov-0.5.4/src/../README.md:
