//! Devices provisioned per second through the REST API (`POST /v1/provisioning/:id`, 32 clients at once), with
//! every acknowledged device durable: the journal's group commit against the reference measured in the same run,
//! one synced temporary file and rename per device (what the cloud did before, about 120-160 devices/s on the
//! machine where the original Node server managed 480-650/s). Then the same through a cloud whose registry is
//! PostgreSQL (a server started for the run, `fsync` on), when `postgres` and `initdb` are installed: compare its
//! time with the journal's measured in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spark_api::{Client, Credentials, TokenLifetime};
use spark_cloud::hub::ScriptedHub;
use spark_cloud::{self as cloud, Config};

#[path = "../tests/support/postgres.rs"]
mod postgres_server;

const DEVICES: u64 = 256;
const CLIENTS: u64 = 32;
const DEVICE_KEY: &str = include_str!("../tests/fixtures/device_a.pub.pem");

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = std::env::temp_dir().join(format!("spark-cloud-provision-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("cloud");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("default_key.pem"),
        include_str!("../tests/fixtures/server_key_1024.pem"),
    )
    .unwrap();
    let config = Config {
        dir: dir.clone(),
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
        key_bits: 1024,
    };
    let (running, api) = rt.block_on(async {
        let cloud = cloud::open(&config, Arc::new(ScriptedHub::new())).unwrap();
        cloud
            .state()
            .expect("the embedded store")
            .create_user("bench", "pw", &mut cloud::system_rng())
            .unwrap();
        let running = cloud::serve(cloud, config.http).await.unwrap();
        let api = login(running.http).await;
        (running, api)
    });
    let next = Arc::new(AtomicU64::new(0));

    let mut group = c.benchmark_group("provision");
    group.throughput(Throughput::Elements(DEVICES));
    group.sample_size(10);
    group.bench_function("journal (group commit), through the API", |b| {
        b.iter(|| rt.block_on(provision_round(&api, &next)));
    });

    // The same workload on a PostgreSQL registry.
    if postgres_server::Postgres::installed() {
        let pg = postgres_server::Postgres::start_with_fsync(true);
        let (pg_running, pg_api) = rt.block_on(async {
            let url = pg.database().await;
            let store = cloud::store::open(&cloud::store::StoreConfig::Postgres(url), 1024)
                .await
                .unwrap();
            cloud::store::create_user(&*store, "bench", "pw")
                .await
                .unwrap();
            let local = root.join("pg-local");
            std::fs::create_dir_all(&local).unwrap();
            let udp = store.udp_server_key().await.unwrap();
            let cloud = cloud::Cloud::with_store(store, &local, udp, Arc::new(ScriptedHub::new()));
            let running = cloud::serve(cloud, config.http).await.unwrap();
            let api = login(running.http).await;
            (running, api)
        });
        group.bench_function("postgres registry, through the API", |b| {
            b.iter(|| rt.block_on(provision_round(&pg_api, &next)));
        });
        drop(pg_running);
        drop(pg);
    } else {
        println!(
            "provision: postgres and initdb are not installed; the PostgreSQL half is skipped"
        );
    }

    // The reference: one synced temporary file and one rename per device, one device after another.
    let reference = root.join("reference");
    std::fs::create_dir_all(&reference).unwrap();
    let record = serde_json::to_vec_pretty(&serde_json::json!({
        "public_key": DEVICE_KEY, "name": null, "owner": "bench"
    }))
    .unwrap();
    group.bench_function("reference: fsync and rename per device", |b| {
        b.iter(|| {
            for _ in 0..DEVICES {
                use std::io::Write;
                let n = next.fetch_add(1, Ordering::Relaxed);
                let path = reference.join(format!("{n:024x}.json"));
                let tmp = path.with_extension("tmp");
                let mut f = std::fs::File::create(&tmp).unwrap();
                f.write_all(&record).unwrap();
                f.sync_all().unwrap();
                std::fs::rename(&tmp, &path).unwrap();
            }
        });
    });
    group.finish();
    drop(running);
    let _ = std::fs::remove_dir_all(&root);
}

/// Logs "bench" in on the cloud at `http`.
async fn login(http: SocketAddr) -> Client {
    let anonymous = Client::builder()
        .base_url(format!("http://{http}"))
        .no_proxy()
        .build()
        .unwrap();
    let grant = anonymous
        .login(&Credentials::new("bench", "pw"), TokenLifetime::Never)
        .await
        .unwrap();
    anonymous.with_token(grant.access_token)
}

/// Provisions `DEVICES` new devices from `CLIENTS` clients at once.
async fn provision_round(api: &Client, next: &Arc<AtomicU64>) {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let api = api.clone();
            let next = Arc::clone(next);
            tokio::spawn(async move {
                for _ in 0..DEVICES / CLIENTS {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let id = format!("{n:024x}");
                    api.send_public_key(&id, DEVICE_KEY, Some("rsa"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
