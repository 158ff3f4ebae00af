//! The registry's contract, run against both stores (the same functions over `&dyn Store`), the races between two
//! PostgreSQL handles (two "nodes"), and bad `--store` input.

#[path = "support/postgres.rs"]
mod postgres_server;

use std::sync::Arc;
use std::time::Duration;

use postgres_server::Postgres;
use spark_cloud::state::{AuthError, token_digest};
use spark_cloud::store::{self, EmbeddedStore, PostgresStore, Store, StoreError};
use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};

const KEY_A: &str = include_str!("fixtures/device_a.pem");
const KEY_B_PUB: &str = include_str!("fixtures/device_b.pub.pem");
const DEV: &str = "0123456789abcdef01234567";
const DEV2: &str = "0123456789abcdef01234568";

fn key_a() -> RsaPublicKey {
    RsaPrivateKey::from_pem(KEY_A).unwrap().public_key()
}

fn key_b() -> RsaPublicKey {
    RsaPublicKey::from_pem(KEY_B_PUB).unwrap()
}

/// Users, tokens and the cut-off.
async fn users_and_tokens(s: &dyn Store) {
    store::create_user(s, "Ann", "pw").await.unwrap();
    assert_eq!(
        store::create_user(s, "ann", "other").await,
        Err(AuthError::UserExists)
    );
    assert!(s.user_exists("ann").await.unwrap());
    assert!(!s.user_exists("bob").await.unwrap());
    assert_eq!(
        s.password_check("ANN").await.unwrap().verify("pw").unwrap(),
        "ann"
    );
    assert!(
        s.password_check("ann")
            .await
            .unwrap()
            .verify("bad")
            .is_err()
    );
    assert!(s.password_check("bob").await.unwrap().verify("pw").is_err());

    let (token, record) = store::issue_token(s, "ann", "spark", None).await.unwrap();
    let who = s.authenticate(&token_digest(&token)).await.unwrap();
    assert_eq!(who.username, "ann");
    assert_eq!(who.token_digest, record.digest);
    assert!(matches!(
        s.authenticate(&token_digest("nope")).await,
        Err(StoreError::Auth(AuthError::InvalidToken))
    ));
    assert!(store::issue_token(s, "bob", "spark", None).await.is_err());
    let (second, _) = store::issue_token(s, "ann", "cli", Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(s.tokens("ann").await.unwrap().len(), 2);
    // Revoking by the token itself, then by its digest.
    assert_eq!(
        s.delete_token("ann", &token).await.unwrap(),
        Some(token_digest(&token))
    );
    assert!(s.authenticate(&token_digest(&token)).await.is_err());
    assert_eq!(s.delete_token("ann", &token).await.unwrap(), None);
    assert_eq!(
        s.delete_token("ann", &token_digest(&second)).await.unwrap(),
        Some(token_digest(&second))
    );
    assert!(s.tokens("ann").await.unwrap().is_empty());

    let (a, _) = store::issue_token(s, "ann", "spark", None).await.unwrap();
    let (b, _) = store::issue_token(s, "ann", "spark", None).await.unwrap();
    assert_eq!(s.delete_all_tokens("ann").await.unwrap(), 2);
    assert!(s.authenticate(&token_digest(&a)).await.is_err());
    assert!(s.authenticate(&token_digest(&b)).await.is_err());

    // The cut-off: a token issued before it is refused and deleted; it never moves back.
    let (old, _) = store::issue_token(s, "ann", "spark", None).await.unwrap();
    let before = s.admin_generation().await.unwrap();
    let cutoff = store_now() + 10;
    let deleted = s.invalidate_tokens_before(cutoff).await.unwrap();
    assert_eq!(deleted, vec![token_digest(&old)]);
    assert!(s.authenticate(&token_digest(&old)).await.is_err());
    let after = s.admin_generation().await.unwrap();
    assert_eq!(after.tokens_not_before, cutoff);
    assert_ne!(after.generation, before.generation);
    s.invalidate_tokens_before(5).await.unwrap();
    assert_eq!(
        s.admin_generation().await.unwrap().tokens_not_before,
        cutoff
    );
    // Issued now, before the cut-off: refused at once.
    let (fresh, _) = store::issue_token(s, "ann", "spark", None).await.unwrap();
    assert!(matches!(
        s.authenticate(&token_digest(&fresh)).await,
        Err(StoreError::Auth(AuthError::InvalidToken))
    ));
}

fn store_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Devices: provisioning, key change, rename, claim with a code, release, UDP keys.
async fn devices(s: &dyn Store) {
    store::create_user(s, "ann", "pw").await.unwrap();
    store::create_user(s, "bob", "pw").await.unwrap();
    let made = s.provision(DEV, &key_a(), Some("ann")).await.unwrap();
    assert_eq!(made.owner.as_deref(), Some("ann"));
    assert!(s.device_key(DEV).await.unwrap().unwrap() == key_a());
    // Another user may not change ann's key; ann may.
    assert_eq!(
        s.provision(DEV, &key_b(), Some("bob")).await,
        Err(StoreError::Owned)
    );
    assert!(s.device_key(DEV).await.unwrap().unwrap() == key_a());
    s.provision(DEV, &key_b(), Some("ann")).await.unwrap();
    assert!(s.device_key(DEV).await.unwrap().unwrap() == key_b());
    // Rename: the owner only.
    assert_eq!(
        s.rename(DEV, "bob", "kitchen").await,
        Err(StoreError::Owned)
    );
    let renamed = s.rename(DEV, "ann", "kitchen").await.unwrap();
    assert_eq!(renamed.name.as_deref(), Some("kitchen"));
    assert_eq!(
        s.find_device("kitchen", "ann").await.unwrap().unwrap().id,
        DEV
    );
    assert!(s.find_device("kitchen", "bob").await.unwrap().is_none());
    assert_eq!(
        s.find_device(&DEV.to_uppercase(), "bob")
            .await
            .unwrap()
            .unwrap()
            .id,
        DEV
    );
    // Release, then a claim by bob with his code; ann's second claim is refused as owned.
    assert_eq!(s.release(DEV, "bob").await, Err(StoreError::Owned));
    s.release(DEV, "ann").await.unwrap();
    assert_eq!(s.device(DEV).await.unwrap().unwrap().owner, None);
    let far = store_now() + 3600;
    s.add_claim_code(&token_digest("bob-code"), "bob", far, 8)
        .await
        .unwrap();
    s.add_claim_code(&token_digest("ann-code"), "ann", far, 8)
        .await
        .unwrap();
    assert_eq!(
        s.add_claim_code(&token_digest("x"), "nobody", far, 8).await,
        Err(StoreError::UnknownUser)
    );
    assert_eq!(
        s.claim_with_code(DEV, &token_digest("wrong")).await,
        Err(StoreError::UnknownCode)
    );
    assert_eq!(
        s.claim_with_code(DEV2, &token_digest("bob-code")).await,
        Err(StoreError::UnknownDevice)
    );
    assert_eq!(
        s.claim_with_code(DEV, &token_digest("bob-code"))
            .await
            .unwrap(),
        "bob"
    );
    // Used up.
    assert_eq!(
        s.claim_with_code(DEV, &token_digest("bob-code")).await,
        Err(StoreError::UnknownCode)
    );
    assert_eq!(
        s.claim_with_code(DEV, &token_digest("ann-code")).await,
        Err(StoreError::Owned)
    );
    // Ann's code was not used up by the refused claim.
    s.set_owner(DEV, None).await.unwrap();
    assert_eq!(
        s.claim_with_code(DEV, &token_digest("ann-code"))
            .await
            .unwrap(),
        "ann"
    );
    // An expired code is unknown; past the per-user limit the oldest goes first.
    s.add_claim_code(&token_digest("old"), "bob", store_now() - 1, 8)
        .await
        .unwrap();
    s.set_owner(DEV, None).await.unwrap();
    assert_eq!(
        s.claim_with_code(DEV, &token_digest("old")).await,
        Err(StoreError::UnknownCode)
    );
    for n in 0..3 {
        s.add_claim_code(&token_digest(&format!("c{n}")), "bob", far + n, 2)
            .await
            .unwrap();
    }
    assert_eq!(
        s.claim_with_code(DEV, &token_digest("c0")).await,
        Err(StoreError::UnknownCode)
    );
    assert_eq!(
        s.claim_with_code(DEV, &token_digest("c2")).await.unwrap(),
        "bob"
    );
    // An administrator's provisioning keeps owner and name; a new device has no owner.
    s.provision(DEV, &key_a(), None).await.unwrap();
    let kept = s.device(DEV).await.unwrap().unwrap();
    assert_eq!(kept.owner.as_deref(), Some("bob"));
    assert_eq!(kept.name.as_deref(), Some("kitchen"));
    assert_eq!(s.provision(DEV2, &key_a(), None).await.unwrap().owner, None);
    assert_eq!(
        s.devices()
            .await
            .unwrap()
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        [DEV, DEV2]
    );
    // UDP keys: registered to one device only.
    let udp = spark_protocol::dtls::PrivateKey::generate(&mut spark_cloud::system_rng());
    s.provision_udp("aaaaaaaaaaaaaaaaaaaaaaaa", &udp.public_key(), Some("ann"))
        .await
        .unwrap();
    assert_eq!(
        s.device_for_udp_key(&udp.public_key())
            .await
            .unwrap()
            .as_deref(),
        Some("aaaaaaaaaaaaaaaaaaaaaaaa")
    );
    assert!(
        s.udp_device_key("aaaaaaaaaaaaaaaaaaaaaaaa")
            .await
            .unwrap()
            .unwrap()
            .to_point()
            == udp.public_key().to_point()
    );
    assert_eq!(
        s.provision_udp("bbbbbbbbbbbbbbbbbbbbbbbb", &udp.public_key(), Some("ann"))
            .await,
        Err(StoreError::KeyTaken)
    );
}

/// Flash jobs: one running per device.
async fn flash_jobs(s: &dyn Store) {
    store::create_user(s, "ann", "pw").await.unwrap();
    s.provision(DEV, &key_a(), Some("ann")).await.unwrap();
    let job = s.start_flash(DEV, "node-1").await.unwrap();
    assert_eq!(
        s.start_flash(DEV, "node-2").await,
        Err(StoreError::FlashInProgress)
    );
    s.finish_flash(job.id, "success app.bin").await.unwrap();
    assert!(s.finish_flash(job.id, "twice").await.is_err());
    let next = s.start_flash(DEV, "node-2").await.unwrap();
    let jobs = s.flash_jobs(DEV).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].id, next.id);
    assert_eq!(jobs[1].result.as_deref(), Some("success app.bin"));
    assert!(jobs[1].ended_at.is_some());
    assert_eq!(jobs[0].node, "node-2");
}

/// Server keys: rotate (refused while a window is open), retire (refused without one).
async fn server_keys(s: &dyn Store) {
    let first = s.server_keys().await.unwrap();
    assert!(first.previous.is_none());
    assert_eq!(
        s.retire_server_key().await.unwrap_err(),
        StoreError::NoPreviousKey
    );
    let before = s.admin_generation().await.unwrap().generation;
    let rotated = store::rotate_server_key(s).await.unwrap();
    assert!(rotated.previous.as_ref().unwrap().public_key() == first.current.public_key());
    assert!(rotated.current.public_key() != first.current.public_key());
    assert_ne!(s.admin_generation().await.unwrap().generation, before);
    let stored = s.server_keys().await.unwrap();
    assert!(stored.current.public_key() == rotated.current.public_key());
    assert_eq!(
        store::rotate_server_key(s).await.unwrap_err(),
        StoreError::WindowOpen
    );
    let retired = s.retire_server_key().await.unwrap();
    assert!(retired.previous.is_none());
    assert!(s.server_keys().await.unwrap().previous.is_none());
}

/// What one handle wrote, a new handle reads back.
async fn write_for_restart(s: &dyn Store) -> (String, RsaPublicKey) {
    store::create_user(s, "ann", "pw").await.unwrap();
    let (token, _) = store::issue_token(s, "ann", "spark", None).await.unwrap();
    s.provision(DEV, &key_a(), Some("ann")).await.unwrap();
    s.rename(DEV, "ann", "porch").await.unwrap();
    (token, s.server_keys().await.unwrap().current.public_key())
}

async fn read_after_restart(s: &dyn Store, token: &str, key: &RsaPublicKey) {
    assert_eq!(
        s.authenticate(&token_digest(token)).await.unwrap().username,
        "ann"
    );
    let d = s.device(DEV).await.unwrap().unwrap();
    assert_eq!(d.name.as_deref(), Some("porch"));
    assert_eq!(d.owner.as_deref(), Some("ann"));
    assert!(s.device_key(DEV).await.unwrap().unwrap() == key_a());
    assert!(s.server_keys().await.unwrap().current.public_key() == *key);
}

const BITS: usize = 1024;

fn embedded(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(dir, BITS, &mut spark_cloud::system_rng()).unwrap())
}

macro_rules! contract {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn embedded_store() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(&*embedded(dir.path())).await;
            }

            #[tokio::test]
            #[cfg_attr(
                spark_no_postgres,
                ignore = "needs postgres and initdb (Debian postgresql)"
            )]
            async fn postgres_store() {
                let pg = Postgres::start();
                let url = pg.database().await;
                let s = PostgresStore::connect(&url, BITS).await.unwrap();
                super::$name(&s).await;
            }
        }
    };
}

contract!(users_and_tokens);
contract!(devices);
contract!(flash_jobs);
contract!(server_keys);

#[tokio::test]
async fn embedded_store_reads_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (token, key) = write_for_restart(&*embedded(dir.path())).await;
    read_after_restart(&*embedded(dir.path()), &token, &key).await;
}

#[tokio::test]
#[cfg_attr(
    spark_no_postgres,
    ignore = "needs postgres and initdb (Debian postgresql)"
)]
async fn postgres_store_reads_back_after_a_restart() {
    let pg = Postgres::start();
    let url = pg.database().await;
    let (token, key) = {
        let s = PostgresStore::connect(&url, BITS).await.unwrap();
        write_for_restart(&s).await
    };
    let s = PostgresStore::connect(&url, BITS).await.unwrap();
    read_after_restart(&s, &token, &key).await;
}

/// Three nodes starting together on an empty database: the migrations run once, and all three use one server key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    spark_no_postgres,
    ignore = "needs postgres and initdb (Debian postgresql)"
)]
async fn three_nodes_starting_together_migrate_once_and_share_one_server_key() {
    let pg = Postgres::start();
    for _round in 0..3 {
        let url = pg.database().await;
        let nodes: Vec<_> = (0..3)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PostgresStore::connect(&url, BITS).await })
            })
            .collect();
        let mut keys = Vec::new();
        let mut udp = Vec::new();
        for node in nodes {
            let s = node.await.unwrap().unwrap();
            keys.push(s.server_keys().await.unwrap().current.public_key());
            udp.push(s.udp_server_key().await.unwrap().public_key().to_point());
        }
        assert!(keys.iter().all(|k| *k == keys[0]), "one server key");
        assert!(udp.iter().all(|k| *k == udp[0]), "one UDP key");
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let versions: i64 = client
            .query_one("SELECT count(*) FROM spark_schema_version", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(versions, 1, "the migration was recorded once");
    }
}

/// Two nodes claim one unowned device with two users' codes at once, many times: exactly one wins each round,
/// and the other gets `Owned`, the error a later claim gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    spark_no_postgres,
    ignore = "needs postgres and initdb (Debian postgresql)"
)]
async fn of_two_concurrent_claims_exactly_one_wins() {
    let pg = Postgres::start();
    let url = pg.database().await;
    let a = Arc::new(PostgresStore::connect(&url, BITS).await.unwrap());
    let b = Arc::new(PostgresStore::connect(&url, BITS).await.unwrap());
    store::create_user(&*a, "ann", "pw").await.unwrap();
    store::create_user(&*a, "bob", "pw").await.unwrap();
    a.provision(DEV, &key_a(), None).await.unwrap();
    let far = store_now() + 3600;
    let mut winners = [0usize; 2];
    for round in 0..100 {
        let ann = token_digest(&format!("ann-{round}"));
        let bob = token_digest(&format!("bob-{round}"));
        a.add_claim_code(&ann, "ann", far, 1000).await.unwrap();
        b.add_claim_code(&bob, "bob", far, 1000).await.unwrap();
        let (ra, rb) = {
            let (a2, b2) = (Arc::clone(&a), Arc::clone(&b));
            let (ann2, bob2) = (ann.clone(), bob.clone());
            let ta = tokio::spawn(async move { a2.claim_with_code(DEV, &ann2).await });
            let tb = tokio::spawn(async move { b2.claim_with_code(DEV, &bob2).await });
            (ta.await.unwrap(), tb.await.unwrap())
        };
        match (&ra, &rb) {
            (Ok(w), Err(StoreError::Owned)) => {
                assert_eq!(w, "ann");
                winners[0] += 1;
            }
            (Err(StoreError::Owned), Ok(w)) => {
                assert_eq!(w, "bob");
                winners[1] += 1;
            }
            other => panic!("round {round}: {other:?}"),
        }
        let owner = a.device(DEV).await.unwrap().unwrap().owner.unwrap();
        assert_eq!(owner, if ra.is_ok() { "ann" } else { "bob" });
        a.set_owner(DEV, None).await.unwrap();
    }
    assert_eq!(winners[0] + winners[1], 100);
}

/// Two nodes start an update of one device at once: one starts, the other is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    spark_no_postgres,
    ignore = "needs postgres and initdb (Debian postgresql)"
)]
async fn of_two_concurrent_flash_starts_one_runs() {
    let pg = Postgres::start();
    let url = pg.database().await;
    let a = Arc::new(PostgresStore::connect(&url, BITS).await.unwrap());
    let b = Arc::new(PostgresStore::connect(&url, BITS).await.unwrap());
    store::create_user(&*a, "ann", "pw").await.unwrap();
    a.provision(DEV, &key_a(), Some("ann")).await.unwrap();
    for round in 0..50 {
        let (a2, b2) = (Arc::clone(&a), Arc::clone(&b));
        let ta = tokio::spawn(async move { a2.start_flash(DEV, "node-a").await });
        let tb = tokio::spawn(async move { b2.start_flash(DEV, "node-b").await });
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        let job = match (ra, rb) {
            (Ok(j), Err(StoreError::FlashInProgress))
            | (Err(StoreError::FlashInProgress), Ok(j)) => j,
            other => panic!("round {round}: {other:?}"),
        };
        a.finish_flash(job.id, "success").await.unwrap();
    }
    assert_eq!(a.flash_jobs(DEV).await.unwrap().len(), 50);
}

/// A rotation made through one node is what the other reads, and its generation moved.
#[tokio::test]
#[cfg_attr(
    spark_no_postgres,
    ignore = "needs postgres and initdb (Debian postgresql)"
)]
async fn a_rotation_on_one_node_reaches_the_other() {
    let pg = Postgres::start();
    let url = pg.database().await;
    let a = PostgresStore::connect(&url, BITS).await.unwrap();
    let b = PostgresStore::connect(&url, BITS).await.unwrap();
    let seen = b.admin_generation().await.unwrap();
    let rotated = store::rotate_server_key(&a).await.unwrap();
    assert_ne!(b.admin_generation().await.unwrap(), seen);
    assert!(b.server_keys().await.unwrap().current.public_key() == rotated.current.public_key());
}

#[tokio::test]
async fn a_bad_store_url_or_an_unreachable_server_is_a_clear_error() {
    for bad in [
        "mysql://x@y/z",
        "postgres://",
        "postgres://u@h:notaport/db",
        "",
    ] {
        let e = PostgresStore::connect(bad, BITS).await.unwrap_err();
        assert!(e.to_string().contains("--store"), "{bad:?}: {e}");
    }
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = PostgresStore::connect(&format!("postgres://spark@127.0.0.1:{port}/db"), BITS)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Unavailable(why) if why.contains("cannot connect")),
        "{e}"
    );
}

/// `spark-cloud --store URL` as an operator runs it: the admin subcommands work on the database, and a bad URL or
/// an unreachable server stops the start with one clear line and a non-zero exit, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    spark_no_postgres,
    ignore = "needs postgres and initdb (Debian postgresql)"
)]
async fn the_binary_takes_a_store_url_for_its_admin_commands() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let pg = Postgres::start();
    let url = pg.database().await;
    let scratch = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spark-cloud"))
            .args([
                "--dir",
                scratch.path().to_str().unwrap(),
                "--key-bits",
                "1024",
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&["--store", &url, "user", "add", "Joe"], "pw\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = PostgresStore::connect(&url, BITS).await.unwrap();
    assert!(s.user_exists("joe").await.unwrap());
    let (token, _) = store::issue_token(&s, "joe", "spark", None).await.unwrap();

    let first = s.server_keys().await.unwrap().current.public_key();
    let out = run(&["--store", &url, "keys", "rotate"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = s.server_keys().await.unwrap();
    assert!(keys.previous.unwrap().public_key() == first);
    let out = run(&["--store", &url, "keys", "show", "--previous"], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        first.to_spki_pem().unwrap()
    );
    let out = run(&["--store", &url, "keys", "retire"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.server_keys().await.unwrap().previous.is_none());

    let tomorrow = (store_now() + 86_400).to_string();
    let out = run(
        &["--store", &url, "tokens", "invalidate-before", &tomorrow],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.authenticate(&token_digest(&token)).await.is_err());

    for (bad, says) in [
        ("mysql://x@y/z".to_owned(), "postgres://"),
        (
            format!(
                "postgres://spark@127.0.0.1:{}/db",
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            ),
            "cannot connect",
        ),
    ] {
        let out = run(&["--store", &bad, "--http", "127.0.0.1:0"], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: {err}");
        assert!(err.contains(says), "{bad}: {err}");
        assert!(!err.contains("panicked"), "{bad}: {err}");
    }
}

/// Two clouds on one database: a rotation made through one reaches the other through the generation read
/// (`Cloud::follow_store`, what the binary runs every 2 s), and a token revoked through one is refused by the
/// other at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    spark_no_postgres,
    ignore = "needs postgres and initdb (Debian postgresql)"
)]
async fn a_cloud_follows_what_another_node_changed() {
    let pg = Postgres::start();
    let url = pg.database().await;
    let config = store::StoreConfig::Postgres(url);
    let scratch = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        let dir = scratch.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = config.clone();
        async move {
            spark_cloud::open_store(
                &config,
                &dir,
                BITS,
                Arc::new(spark_cloud::hub::ScriptedHub::new()),
            )
            .await
            .unwrap()
        }
    };
    let a = node("a").await;
    let b = node("b").await;
    let (a2, b2) = (Arc::clone(&a), Arc::clone(&b));
    tokio::task::spawn_blocking(move || {
        let before = b2.server_keys().unwrap().current.public_key();
        assert!(!b2.follow_store().unwrap(), "the first read only records");
        assert!(!b2.follow_store().unwrap(), "nothing moved");
        let rotated = a2.rotate_server_key().unwrap();
        assert!(b2.server_keys().unwrap().current.public_key() == before);
        assert!(b2.follow_store().unwrap(), "the generation moved");
        let held = b2.server_keys().unwrap();
        assert!(held.current.public_key() == rotated.current.public_key());
        assert!(held.previous.unwrap().public_key() == before);
        assert!(b2.handshake_keys().unwrap().window_open());
    })
    .await
    .unwrap();

    store::create_user(&**a.store(), "ann", "pw").await.unwrap();
    let (token, _) = store::issue_token(&**a.store(), "ann", "spark", None)
        .await
        .unwrap();
    assert!(b.store().authenticate(&token_digest(&token)).await.is_ok());
    let a3 = Arc::clone(&a);
    let t = token.clone();
    assert!(
        tokio::task::spawn_blocking(move || a3.revoke_token("ann", &t))
            .await
            .unwrap()
            .unwrap()
    );
    assert!(b.store().authenticate(&token_digest(&token)).await.is_err());
}

/// The server ends every connection of the store (what a database restart or failover does): the store connects
/// again and the next calls succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    spark_no_postgres,
    ignore = "needs postgres and initdb (Debian postgresql)"
)]
async fn the_store_reconnects_after_the_server_drops_its_connections() {
    let pg = Postgres::start();
    let url = pg.database().await;
    let s = PostgresStore::connect(&url, BITS).await.unwrap();
    store::create_user(&s, "ann", "pw").await.unwrap();
    // Every connection in use: statements and a transaction.
    s.add_claim_code(&token_digest("c"), "ann", store_now() + 60, 8)
        .await
        .unwrap();
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let ended: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ended >= 2, "the store's connections were ended ({ended})");
    // The connections notice the server's goodbye; the store opens new ones at their next use.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..8 {
        assert!(s.user_exists("ann").await.unwrap());
        s.add_claim_code(&token_digest(&format!("d{n}")), "ann", store_now() + 60, 8)
            .await
            .unwrap();
    }
}
