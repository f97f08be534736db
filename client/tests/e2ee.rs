//! Acceptance tests of issue 6 through the real server with the native client: Olm DMs between
//! two users with two devices each (every device decrypts every message; the database never
//! holds a plaintext), and a Megolm channel session shared with three members and rotated when
//! one is removed (the removed member cannot decrypt what follows, the others can).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::collections::BTreeSet;

use copains_client::{E2eeClient, GroupTransport, Incoming};
use support::{TestServer, befriend};

fn dms(incoming: &[Incoming]) -> BTreeSet<(String, String, String)> {
    incoming
        .iter()
        .map(|i| match i {
            Incoming::Dm {
                sender,
                sender_device,
                body,
            } => (sender.clone(), sender_device.clone(), body.clone()),
            other => panic!("expected only DMs, got {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn two_users_two_devices_each_exchange_dms_and_the_database_holds_no_plaintext() {
    let s = TestServer::start().await;
    let alice_api = s.register("alice").await;
    let bob_api = s.register("bob").await;
    befriend(&alice_api, &bob_api).await;
    let alice = alice_api.user_id().to_owned();
    let bob = bob_api.user_id().to_owned();

    let mut a1 = E2eeClient::create_device(alice_api, "ALICE_LAPTOP", 10)
        .await
        .unwrap();
    let mut a2 = E2eeClient::create_device(s.login("alice").await, "ALICE_PHONE", 10)
        .await
        .unwrap();
    let mut b1 = E2eeClient::create_device(bob_api, "BOB_LAPTOP", 10)
        .await
        .unwrap();
    let mut b2 = E2eeClient::create_device(s.login("bob").await, "BOB_PHONE", 10)
        .await
        .unwrap();

    // Round 1 opens sessions (pre-key messages); round 2 uses them (normal messages).
    let mut sent: Vec<(String, String, String)> = Vec::new();
    for round in 1..=2 {
        for (dev, to) in [
            (&mut a1, &bob),
            (&mut a2, &bob),
            (&mut b1, &alice),
            (&mut b2, &alice),
        ] {
            let body = format!(
                "plaintext-secret round {round} from {} to {to}: rendez-vous at the old mill",
                dev.device_id()
            );
            let n = dev.send_dm(to, &body).await.unwrap();
            // Two devices of the recipient plus my other device.
            assert_eq!(n, 3, "{} queued for {n} devices", dev.device_id());
            sent.push((dev.user_id().to_owned(), dev.device_id().to_owned(), body));
        }
        // Before anything is acknowledged, the queue holds every message — as ciphertext only.
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM to_device_messages")
            .fetch_one(&s.state.db)
            .await
            .unwrap();
        assert_eq!(queued, 12);
        let dump = s.dump().await;
        assert!(
            dump.contains("ALICE_PHONE"),
            "the dump covers the keys tables"
        );
        assert!(
            dump.contains("copains.olm"),
            "the dump covers the queued messages"
        );
        for (_, _, body) in &sent {
            assert!(
                !dump.contains(body.as_str()),
                "plaintext found in the database"
            );
            assert!(
                !dump.contains("rendez-vous"),
                "plaintext found in the database"
            );
        }

        for dev in [&mut a1, &mut a2, &mut b1, &mut b2] {
            let got = dms(&dev.sync().await.unwrap());
            let expected: BTreeSet<_> = sent
                .iter()
                .filter(|(_, d, b)| d != dev.device_id() && b.contains(&format!("round {round}")))
                .cloned()
                .collect();
            assert_eq!(got, expected, "device {} round {round}", dev.device_id());
        }
        // Everything was acknowledged, so the queue is empty.
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM to_device_messages")
            .fetch_one(&s.state.db)
            .await
            .unwrap();
        assert_eq!(queued, 0);
    }
    let dump = s.dump().await;
    for (_, _, body) in &sent {
        assert!(!dump.contains(body.as_str()));
    }

    // A removed device stops receiving: Bob deletes his phone, Alice's next DM reaches 2 devices.
    b2.api().delete_device("BOB_PHONE").await.unwrap();
    let n = a1.send_dm(&bob, "after removal").await.unwrap();
    assert_eq!(n, 2);
    let got = dms(&b1.sync().await.unwrap());
    assert_eq!(
        got,
        BTreeSet::from([(
            alice.clone(),
            "ALICE_LAPTOP".to_owned(),
            "after removal".to_owned()
        )])
    );
    assert!(
        b2.sync().await.is_err(),
        "a deleted device can no longer fetch its queue"
    );
}

#[tokio::test]
async fn megolm_channel_key_shared_with_three_members_then_rotated_on_removal() {
    let s = TestServer::start().await;
    let alice_api = s.register("alice").await;
    let mut members = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let api = s.register(name).await;
        befriend(&alice_api, &api).await;
        members.push(
            E2eeClient::create_device(api, &format!("{}_DEV", name.to_uppercase()), 5)
                .await
                .unwrap(),
        );
    }
    let mut alice = E2eeClient::create_device(alice_api, "ALICE_DEV", 5)
        .await
        .unwrap();
    let ids: Vec<String> = members.iter().map(|m| m.user_id().to_owned()).collect();
    let channel = "channel-42";

    let first = alice.create_group_session(channel).unwrap();
    assert_eq!(alice.share_group_session(channel, &ids).await.unwrap(), 3);
    for m in &mut members {
        let got = m.sync().await.unwrap();
        assert_eq!(
            got,
            vec![Incoming::RoomKey {
                sender: alice.user_id().to_owned(),
                sender_device: "ALICE_DEV".into(),
                channel_id: channel.into(),
                session_id: first.clone(),
            }]
        );
    }
    let hello = b"megolm plaintext before removal";
    assert_eq!(
        alice
            .send_group(channel, hello, GroupTransport::ToDevice(&ids))
            .await
            .unwrap(),
        3
    );
    for m in &mut members {
        match &m.sync().await.unwrap()[..] {
            [
                Incoming::Group {
                    plaintext,
                    channel_id,
                    sender_device,
                    ..
                },
            ] => {
                assert_eq!(plaintext, hello);
                assert_eq!(channel_id, channel);
                assert_eq!(sender_device, "ALICE_DEV");
            }
            other => panic!("{} got {other:?}", m.device_id()),
        }
    }

    // Dave is removed: a new session, shared only with Bob and Carol.
    let remaining = &ids[..2];
    let second = alice
        .rotate_group_session(channel, remaining)
        .await
        .unwrap();
    assert_ne!(second, first);
    let secret = b"megolm plaintext after dave left";
    let msg = alice.encrypt_group(channel, secret).unwrap();
    // The ciphertext still reaches Dave (as a channel broadcast or a leak would).
    assert_eq!(
        alice
            .send_group_ciphertext(channel, &msg, &ids)
            .await
            .unwrap(),
        3
    );
    for m in &mut members[..2] {
        let got = m.sync().await.unwrap();
        assert!(
            matches!(&got[0], Incoming::RoomKey { session_id, .. } if *session_id == second),
            "{got:?}"
        );
        match &got[1] {
            Incoming::Group { plaintext, .. } => assert_eq!(plaintext, secret),
            other => panic!("{} got {other:?}", m.device_id()),
        }
        assert_eq!(got.len(), 2);
    }
    let dave = &mut members[2];
    let got = dave.sync().await.unwrap();
    assert_eq!(got.len(), 1, "Dave receives no new room key: {got:?}");
    match &got[0] {
        Incoming::Undecryptable { kind, error, .. } => {
            assert_eq!(kind, copains_client::e2ee::MEGOLM_TYPE);
            assert!(
                error.contains("unknown") || error.contains("Unknown"),
                "{error}"
            );
        }
        other => panic!("Dave decrypted a message sent after his removal: {other:?}"),
    }
    assert!(
        dave.decrypt_group(alice.user_id(), "ALICE_DEV", &msg)
            .is_err()
    );

    // A replayed Megolm message is refused; a forged sender is refused.
    let bob = &mut members[0];
    assert!(
        bob.decrypt_group(alice.user_id(), "ALICE_DEV", &msg)
            .is_err(),
        "replay accepted"
    );
    let next = alice.encrypt_group(channel, b"third").unwrap();
    let carol_id = ids[1].clone();
    assert!(
        bob.decrypt_group(&carol_id, "CAROL_DEV", &next).is_err(),
        "forged sender accepted"
    );
    assert_eq!(
        bob.decrypt_group(alice.user_id(), "ALICE_DEV", &next)
            .unwrap()
            .plaintext,
        b"third"
    );

    // Nothing of it is in the database.
    let dump = s.dump().await;
    for p in ["megolm plaintext", "dave left", "before removal"] {
        assert!(!dump.contains(p));
    }
}

#[tokio::test]
async fn tampered_olm_envelopes_are_reported_not_fatal() {
    let s = TestServer::start().await;
    let a_api = s.register("alice").await;
    let b_api = s.register("bob").await;
    befriend(&a_api, &b_api).await;
    let bob_id = b_api.user_id().to_owned();
    let mut a = E2eeClient::create_device(a_api, "A", 3).await.unwrap();
    let mut b = E2eeClient::create_device(b_api, "B", 3).await.unwrap();
    // Garbage sent as an Olm envelope, then a real DM: the garbage is reported, the DM arrives.
    let mut garbage = std::collections::BTreeMap::new();
    garbage.insert(
        bob_id.clone(),
        std::collections::BTreeMap::from([(
            "B".to_owned(),
            serde_json::json!({"type": 0, "body": "AAAA", "sender_key": a.identity_keys().curve25519}),
        )]),
    );
    a.api()
        .send_to_device("A", "garbage-1", "copains.olm", &garbage)
        .await
        .unwrap();
    a.send_dm(&bob_id, "real one").await.unwrap();
    let got = b.sync().await.unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(matches!(got[0], Incoming::Undecryptable { .. }));
    assert!(matches!(&got[1], Incoming::Dm { body, .. } if body == "real one"));
}

#[tokio::test]
async fn megolm_keys_survive_a_new_device_through_the_encrypted_backup() {
    let s = TestServer::start().await;
    let a_api = s.register("alice").await;
    let b_api = s.register("bob").await;
    befriend(&a_api, &b_api).await;
    let bob_id = b_api.user_id().to_owned();
    let mut alice = E2eeClient::create_device(a_api, "A", 3).await.unwrap();
    let mut bob = E2eeClient::create_device(b_api, "B_OLD", 3).await.unwrap();
    alice.create_group_session("chan").unwrap();
    alice
        .share_group_session("chan", std::slice::from_ref(&bob_id))
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let msg = alice
        .encrypt_group("chan", b"history worth keeping")
        .unwrap();

    let recovery = copains_crypto::backup::RecoveryKey::generate().unwrap();
    assert_eq!(bob.backup_room_keys(&recovery).await.unwrap(), 1);

    // A new device of Bob's, which never received the room key over Olm.
    let mut bob_new = E2eeClient::create_device(s.login("bob").await, "B_NEW", 3)
        .await
        .unwrap();
    assert!(bob_new.decrypt_group(alice.user_id(), "A", &msg).is_err());
    let wrong = copains_crypto::backup::RecoveryKey::generate().unwrap();
    assert!(
        bob_new.restore_room_keys(&wrong).await.is_err(),
        "wrong recovery key accepted"
    );
    assert_eq!(bob_new.restore_room_keys(&recovery).await.unwrap(), 1);
    let d = bob_new.decrypt_group(alice.user_id(), "A", &msg).unwrap();
    assert_eq!(d.plaintext, b"history worth keeping");

    // The server holds the blob but not the session key.
    let exported = bob.export_room_keys();
    assert_eq!(exported.len(), 1);
    let dump = s.dump().await;
    assert!(
        dump.contains("copains.backup.v1"),
        "the backup is in the dump"
    );
    assert!(!dump.contains(&exported[0].exported_key));
    assert!(!dump.contains("history worth keeping"));
}

#[tokio::test]
async fn dm_place_history_is_megolm_ciphertext_every_device_decrypts() {
    let s = TestServer::start().await;
    let alice_api = s.register("alice").await;
    let bob_api = s.register("bob").await;
    let bob_id = bob_api.user_id().to_owned();
    let alice_id = alice_api.user_id().to_owned();
    // A DM is enough for the two to see each other's keys (no friendship needed): they are
    // friends to open it (the default DM policy refuses strangers), then no longer.
    befriend(&alice_api, &bob_api).await;
    let dm = alice_api
        .open_dm(std::slice::from_ref(&bob_id))
        .await
        .unwrap();
    let _: serde_json::Value = alice_api
        .request(
            reqwest::Method::DELETE,
            &format!("/users/@me/relationships/{bob_id}"),
            None,
            None,
        )
        .await
        .unwrap();
    let mut devices = vec![
        E2eeClient::create_device(alice_api, "A1", 10)
            .await
            .unwrap(),
        E2eeClient::create_device(s.login("alice").await, "A2", 10)
            .await
            .unwrap(),
        E2eeClient::create_device(bob_api, "B1", 10).await.unwrap(),
        E2eeClient::create_device(s.login("bob").await, "B2", 10)
            .await
            .unwrap(),
    ];
    // Every device shares its own Megolm session of the DM with the other user's devices
    // and its owner's other device (3 devices each).
    for d in &mut devices {
        d.create_group_session(&dm).unwrap();
        let other = if d.user_id() == alice_id {
            &bob_id
        } else {
            &alice_id
        };
        assert_eq!(
            d.share_group_session(&dm, std::slice::from_ref(other))
                .await
                .unwrap(),
            3
        );
    }
    for d in &mut devices {
        let got = d.sync().await.unwrap();
        assert_eq!(got.len(), 3, "{}: {got:?}", d.device_id());
        assert!(got.iter().all(|i| matches!(i, Incoming::RoomKey { .. })));
    }
    let mut sent = Vec::new();
    for d in &mut devices {
        let text = format!(
            "dm-plaintext from {} about the surprise party",
            d.device_id()
        );
        d.send_group(&dm, text.as_bytes(), GroupTransport::ChannelMessages)
            .await
            .unwrap();
        sent.push(text);
    }
    for d in &mut devices {
        let history = d.api().channel_messages(&dm).await.unwrap();
        assert_eq!(history.len(), 4);
        let mut read = Vec::new();
        for m in &history {
            assert!(m.content.is_none(), "a DM message carried plaintext");
            let p = d.decrypt_channel_message(m).unwrap();
            read.push(String::from_utf8(p.plaintext).unwrap());
        }
        assert_eq!(read, sent, "device {}", d.device_id());
    }
    let dump = s.dump().await;
    assert!(
        dump.contains("copains.megolm.v1"),
        "the messages are in the dump"
    );
    for t in &sent {
        assert!(!dump.contains(t.as_str()));
    }
    assert!(!dump.contains("surprise party"));
}

/// `POST` through a client, asserting success.
async fn post(
    api: &copains_client::ApiClient,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    api.request(reqwest::Method::POST, path, None, Some(&body))
        .await
        .unwrap()
}

#[tokio::test]
async fn room_keys_go_only_to_the_readers_the_server_names() {
    let s = TestServer::start().await;
    let alice_api = s.register("alice").await;
    let bob_api = s.register("bob").await;
    let carol_api = s.register("carol").await;
    let server = post(&alice_api, "/servers", serde_json::json!({"name": "crew"})).await;
    let server = server["id"].as_str().unwrap().to_owned();
    let code = post(
        &alice_api,
        &format!("/servers/{server}/invites"),
        serde_json::json!({}),
    )
    .await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    for api in [&bob_api, &carol_api] {
        post(api, &format!("/invites/{code}"), serde_json::json!({})).await;
    }
    let channel = post(
        &alice_api,
        &format!("/servers/{server}/channels"),
        serde_json::json!({"name": "secret", "kind": "text", "encrypted": true}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Hidden from @everyone (whose role id is the server's), open to Carol.
    for (target, body) in [
        (
            server.clone(),
            serde_json::json!({"kind": "role", "allow": 0, "deny": 1u64}),
        ),
        (
            carol_api.user_id().to_owned(),
            serde_json::json!({"kind": "member", "allow": 1u64, "deny": 0}),
        ),
    ] {
        let _: serde_json::Value = alice_api
            .request(
                reqwest::Method::PUT,
                &format!("/channels/{channel}/overwrites/{target}"),
                None,
                Some(&body),
            )
            .await
            .unwrap();
    }
    let mut readers = alice_api.place_readers(&channel).await.unwrap();
    readers.sort();
    let mut expected = vec![
        alice_api.user_id().to_owned(),
        carol_api.user_id().to_owned(),
    ];
    expected.sort();
    assert_eq!(readers, expected);

    let mut bob = E2eeClient::create_device(bob_api, "BOB", 5).await.unwrap();
    let mut carol = E2eeClient::create_device(carol_api, "CAROL", 5)
        .await
        .unwrap();
    let mut alice = E2eeClient::create_device(alice_api, "ALICE", 5)
        .await
        .unwrap();
    let session = alice.create_group_session(&channel).unwrap();
    // Carol's one device; Alice has no other device; Bob is not a reader.
    assert_eq!(
        alice
            .share_group_session_with_readers(&channel)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        carol.sync().await.unwrap(),
        vec![Incoming::RoomKey {
            sender: alice.user_id().to_owned(),
            sender_device: "ALICE".into(),
            channel_id: channel.clone(),
            session_id: session,
        }]
    );
    assert_eq!(bob.sync().await.unwrap(), vec![]);
    // Bob may not even ask who reads it.
    assert!(bob.api().place_readers(&channel).await.is_err());
}
