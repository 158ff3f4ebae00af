//! The REST API end to end on a cloud whose registry is PostgreSQL: login, provisioning, a claim, the device list
//! and a function call to a connected virtual Core.

#[path = "support/e2e_env.rs"]
mod env;
#[path = "support/postgres.rs"]
mod postgres_server;

use std::sync::Arc;

use env::{Env, SERVER_KEY, within};
use postgres_server::Postgres;
use spark_cc3000::ServicePack;
use spark_cloud::store::{PostgresStore, Store};
use spark_protocol::crypto::keys::RsaPrivateKey;

const CORE_A: [u8; 12] = [
    0x53, 0x70, 0x61, 0x72, 0x6b, 0x20, 0x50, 0x47, 0x00, 0x00, 0x00, 0x01,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    spark_no_postgres,
    ignore = "needs postgres and initdb (Debian postgresql)"
)]
async fn the_rest_api_runs_on_a_postgres_registry() {
    let pg = Postgres::start();
    let url = pg.database().await;
    let store = PostgresStore::connect(&url, 1024).await.unwrap();
    // The test Cores trust SERVER_KEY: make it the store's current key through a rotation and a retirement.
    store
        .rotate_server_key(RsaPrivateKey::from_pem(SERVER_KEY).unwrap())
        .await
        .unwrap();
    store.retire_server_key().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let mut env = Env::start_on_store(Arc::clone(&store)).await;

    // Logged in (Env::start_on_store signs "joe" up and logs in through the API): the token is a row.
    let joe = store.tokens(env::USER).await.unwrap();
    assert_eq!(joe.len(), 1);

    // Provisioned through the API, connected, listed and called.
    let core = env.online_core(CORE_A, ServicePack::SP_1_28, &[]).await;
    let stored = store.device(&core.id).await.unwrap().unwrap();
    assert_eq!(stored.owner.as_deref(), Some(env::USER));
    assert!(store.device_key(&core.id).await.unwrap().is_some());
    let listed = env.api.list_devices().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id.to_string(), core.id);
    assert!(listed[0].connected);
    let called = within(env.api.call_function(&core.id, "digitalwrite", "D7,HIGH"))
        .await
        .unwrap();
    assert_eq!(called.return_value, 1);

    // Renamed through the API: the row holds the name.
    env.api.rename_device(&core.id, "porch").await.unwrap();
    assert_eq!(
        store
            .device(&core.id)
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("porch")
    );

    // Released, then claimed by another user with a claim code the device presents.
    env.api.release_device(core.id.as_str()).await.unwrap();
    assert_eq!(store.device(&core.id).await.unwrap().unwrap().owner, None);
    let ann = env.other_user("ann", "ann's password").await;
    let cloud = Arc::clone(&env.running.cloud);
    let code = cloud.create_claim_code("ann").unwrap();
    assert_eq!(cloud.claim_with_code(&core.id, &code).unwrap(), "ann");
    let anns = ann.list_devices().await.unwrap();
    assert_eq!(anns.len(), 1);
    assert_eq!(anns[0].id.to_string(), core.id);
    assert!(env.api.list_devices().await.unwrap().is_empty());
    let called = within(ann.call_function(&core.id, "digitalwrite", "D7,LOW"))
        .await
        .unwrap();
    assert_eq!(called.return_value, 1);
}
