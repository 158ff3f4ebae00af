//! Requests per second for a variable read against a local HTTP server on 127.0.0.1: this client with connection
//! reuse, and the same read made by `curl` in a shell loop (a new process and connection per read), measured in the
//! same run. Prints both rates and their ratio.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use spark_api::Client;
use support::{CORE, TOKEN, TestServer};

fn curl_loop(url: &str, n: usize) -> Option<Duration> {
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do curl -sf -H 'Authorization: Bearer {TOKEN}' '{url}' >/dev/null || exit 1; i=$((i+1)); done"
    );
    let start = Instant::now();
    let status = Command::new("sh").arg("-c").arg(script).status().ok()?;
    status.success().then(|| start.elapsed())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime.block_on(TestServer::start());
    let client = Client::builder()
        .base_url(server.base_url())
        .access_token(TOKEN)
        .build()
        .expect("client");
    let url = format!("{}/v1/devices/{CORE}/benchvar", server.base_url());

    let mut criterion = Criterion::default().configure_from_args().sample_size(30);
    criterion.bench_function("variable_read_keepalive", |b| {
        b.iter(|| {
            runtime
                .block_on(client.variable(CORE, "benchvar"))
                .expect("variable")
        })
    });
    criterion.bench_function("variable_read_curl_process", |b| {
        b.iter(|| curl_loop(&url, 1).expect("curl"))
    });
    criterion.final_summary();

    // The ratio, measured back to back.
    let reads = 3000;
    let start = Instant::now();
    for _ in 0..reads {
        runtime
            .block_on(client.variable(CORE, "benchvar"))
            .expect("variable");
    }
    let client_rate = reads as f64 / start.elapsed().as_secs_f64();
    let curls = 200;
    match curl_loop(&url, curls) {
        Some(elapsed) => {
            let curl_rate = curls as f64 / elapsed.as_secs_f64();
            println!(
                "variable read: spark-api {client_rate:.0} req/s (one reused connection), curl loop {curl_rate:.0} req/s, ratio {:.1}x",
                client_rate / curl_rate
            );
        }
        None => println!(
            "variable read: spark-api {client_rate:.0} req/s; curl not available, no ratio"
        ),
    }
}
