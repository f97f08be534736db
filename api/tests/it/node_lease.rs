//! Node id leases (issue 14 item 5): concurrent starts never share an id, an expired lease is
//! taken over, a live one is not, a lost lease is noticed, a released one is free again.

use std::collections::HashSet;
use std::time::Duration;

use copains_api::node_lease::{Held, LeaseError, MAX_NODE_ID, NodeLease};
use sqlx::PgPool;

use crate::support::TestDb;

const TTL: Duration = Duration::from_secs(30);

async fn migrated(db: &TestDb, connections: u32) -> PgPool {
    let pool = copains_api::db::connect(&db.url, connections)
        .await
        .unwrap();
    copains_api::db::migrate(&pool).await.unwrap();
    pool
}

/// Leases every id but `except` to other (live) holders, or expired ones for `expired`.
async fn fill(pool: &PgPool, except: &[i16], expired: &[i16]) {
    sqlx::query(
        "INSERT INTO node_leases (id, holder, expires_at) \
         SELECT g, gen_random_uuid(), CASE WHEN g = ANY($2) THEN now() - interval '1 second' \
                                          ELSE now() + interval '1 hour' END \
         FROM generate_series(0, 1023) g WHERE NOT g = ANY($1)",
    )
    .bind(except)
    .bind(expired)
    .execute(pool)
    .await
    .unwrap();
}

async fn holder_of(pool: &PgPool, id: i16) -> Option<String> {
    sqlx::query_scalar("SELECT holder::text FROM node_leases WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn twenty_concurrent_starts_never_share_an_id() {
    let db = TestDb::new().await;
    let pool = migrated(&db, 25).await;
    // Only 20 ids are free, so the 20 starters collide and must retry.
    let free: Vec<i16> = (100..120).collect();
    fill(&pool, &free, &[]).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { NodeLease::acquire(&pool, TTL).await })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut leases = Vec::new();
    for t in tasks {
        let lease = t.await.unwrap().expect("a free id for every starter");
        assert!(ids.insert(lease.id()), "id {} leased twice", lease.id());
        leases.push(lease);
    }
    assert_eq!(
        ids,
        free.iter().map(|&i| i as u16).collect::<HashSet<_>>(),
        "the 20 free ids, once each"
    );
    let holders: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT holder) FROM node_leases WHERE id BETWEEN 100 AND 119",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(holders, 20);
    // A 21st finds none.
    assert!(matches!(
        NodeLease::acquire(&pool, TTL).await,
        Err(LeaseError::NoFreeId)
    ));

    // And with the whole range free, 20 more starters still get 20 different ids.
    let db2 = TestDb::new().await;
    let pool2 = migrated(&db2, 25).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let pool = pool2.clone();
            tokio::spawn(async move { NodeLease::acquire(&pool, TTL).await.unwrap().id() })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        let id = t.await.unwrap();
        assert!(id <= MAX_NODE_ID);
        assert!(ids.insert(id), "id {id} leased twice");
    }
}

#[tokio::test]
async fn one_id_asked_by_many_goes_to_one() {
    let db = TestDb::new().await;
    let pool = migrated(&db, 15).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { NodeLease::acquire_id(&pool, 7, TTL, Duration::ZERO).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(l) => {
                assert_eq!(l.id(), 7);
                won += 1;
            }
            Err(LeaseError::Taken(7)) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one process holds id 7");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_a_live_one_is_not() {
    let db = TestDb::new().await;
    let pool = migrated(&db, 5).await;
    fill(&pool, &[], &[9]).await;
    let before = holder_of(&pool, 9).await;
    let lease = NodeLease::acquire(&pool, TTL).await.unwrap();
    assert_eq!(lease.id(), 9, "the only expired lease is the one taken");
    let after = holder_of(&pool, 9).await;
    assert_ne!(before, after, "the new holder replaced the old one");
    // Now every id is live: nothing is taken over.
    let snapshot: Vec<(i16, String)> =
        sqlx::query_as("SELECT id, holder::text FROM node_leases ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(matches!(
        NodeLease::acquire(&pool, TTL).await,
        Err(LeaseError::NoFreeId)
    ));
    assert!(matches!(
        NodeLease::acquire_id(&pool, 5, TTL, Duration::ZERO).await,
        Err(LeaseError::Taken(5))
    ));
    let unchanged: Vec<(i16, String)> =
        sqlx::query_as("SELECT id, holder::text FROM node_leases ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(snapshot, unchanged, "no live lease changed hands");
}

#[tokio::test]
async fn a_hand_set_id_waits_for_a_stale_lease_to_expire() {
    let db = TestDb::new().await;
    let pool = migrated(&db, 5).await;
    // A process killed without releasing id 4: its lease runs out in a moment.
    sqlx::query(
        "INSERT INTO node_leases VALUES (4, gen_random_uuid(), now() + interval '800 milliseconds')",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(matches!(
        NodeLease::acquire_id(&pool, 4, TTL, Duration::ZERO).await,
        Err(LeaseError::Taken(4))
    ));
    let lease = NodeLease::acquire_id(&pool, 4, TTL, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(lease.id(), 4);
}

#[tokio::test]
async fn renewal_keeps_the_lease_and_notices_a_takeover() {
    let db = TestDb::new().await;
    let pool = migrated(&db, 5).await;
    let mut lease = NodeLease::acquire_id(&pool, 3, Duration::from_secs(3), Duration::ZERO)
        .await
        .unwrap();
    let exp = |pool: PgPool| async move {
        sqlx::query_scalar::<_, f64>(
            "SELECT extract(epoch FROM expires_at)::float8 FROM node_leases WHERE id = 3",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let first = exp(pool.clone()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(lease.renew().await.unwrap());
    assert!(
        exp(pool.clone()).await > first,
        "renewing pushes expires_at"
    );

    // hold() renews until asked to stop.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let _ = tx.send(());
    });
    let held = lease
        .hold(async {
            let _ = rx.await;
        })
        .await;
    stopper.await.unwrap();
    assert_eq!(held, Held::Stopped);
    assert!(lease.renew().await.unwrap(), "still ours after hold()");

    // Another process takes the id over (as if this one had been paused past expiry).
    sqlx::query("UPDATE node_leases SET holder = gen_random_uuid() WHERE id = 3")
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        !lease.renew().await.unwrap(),
        "renewing a lease taken over fails"
    );
    let held = lease.hold(std::future::pending()).await;
    assert!(matches!(held, Held::Lost { .. }), "{held:?}");
}

#[tokio::test]
async fn a_lease_that_cannot_be_renewed_is_given_up_before_it_ends() {
    let db = TestDb::new().await;
    let pool = migrated(&db, 5).await;
    let mut lease = NodeLease::acquire(&pool, Duration::from_secs(3))
        .await
        .unwrap();
    let until = lease.valid_until();
    // The database goes away: every renewal fails.
    pool.close().await;
    let held = lease.hold(std::future::pending()).await;
    match held {
        Held::Lost { valid_until } => {
            assert_eq!(valid_until, until, "never renewed");
            assert!(
                tokio::time::Instant::now() < valid_until,
                "given up while the lease still stands"
            );
        }
        Held::Stopped => panic!("not stopped"),
    }
}

#[tokio::test]
async fn a_released_id_is_free_again() {
    let db = TestDb::new().await;
    let pool = migrated(&db, 5).await;
    let lease = NodeLease::acquire_id(&pool, 11, TTL, Duration::ZERO)
        .await
        .unwrap();
    lease.release().await;
    assert_eq!(holder_of(&pool, 11).await, None);
    let again = NodeLease::acquire_id(&pool, 11, TTL, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again.id(), 11);
}
