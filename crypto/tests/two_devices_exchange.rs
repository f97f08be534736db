//! Two users with two devices each do the full flow the app runs: publish prekey bundles,
//! claim keys, open Olm sessions, share a Megolm channel key over Olm, exchange channel
//! messages, then remove a member and rotate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use copains_crypto::{
    device::{ClaimedKey, Device, KeysUpload},
    megolm::{
        GroupMessage, InboundGroup, InboundGroupStore, MegolmError, OutboundGroup, RoomKey,
        RotationPolicy, RotationReason,
    },
    olm::{OlmEnvelope, OlmSession, OlmSessions},
    sframe::{Codec, FrameReceiver, FrameSender},
};

/// What the server would hand out from `keys/claim` (taking one one-time key).
fn claim(server_bundle: &mut KeysUpload) -> ClaimedKey {
    let key_id = server_bundle.one_time_keys.keys().next().unwrap().clone();
    let k = server_bundle.one_time_keys.remove(&key_id).unwrap();
    ClaimedKey {
        user_id: server_bundle.user_id.clone(),
        device_id: server_bundle.device_id.clone(),
        identity_keys: server_bundle.identity_keys.clone(),
        key_id,
        key: k.key,
        signature: k.signature,
        fallback: false,
    }
}

struct Client {
    device: Device,
    olm: OlmSessions,
    groups: InboundGroupStore,
}

impl Client {
    fn new(user: &str, dev: &str) -> (Self, KeysUpload) {
        let mut device = Device::new(user, dev).unwrap();
        device.generate_one_time_keys(10);
        device.generate_fallback_key();
        let upload = KeysUpload::from_json(&device.keys_for_upload().to_json()).unwrap();
        upload.verify().expect("server accepts the bundle");
        device.mark_keys_as_published();
        (
            Self {
                device,
                olm: OlmSessions::new(),
                groups: InboundGroupStore::new(),
            },
            upload,
        )
    }

    /// Receive a to-device Olm envelope carrying a room key.
    fn receive_to_device(&mut self, json: &str) {
        let env = OlmEnvelope::from_json(json).unwrap();
        let pt = self.olm.decrypt(&mut self.device, &env).unwrap();
        let key = RoomKey::from_json(std::str::from_utf8(&pt).unwrap()).unwrap();
        self.groups
            .insert(InboundGroup::from_room_key(&key).unwrap());
    }
}

#[test]
fn two_users_two_devices_olm_and_megolm() {
    let (mut a1, a1_up) = Client::new("alice", "A1");
    let (mut a2, mut a2_up) = Client::new("alice", "A2");
    let (mut b1, mut b1_up) = Client::new("bob", "B1");
    let (mut b2, mut b2_up) = Client::new("bob", "B2");
    let _ = a1_up;

    // Alice's A1 opens Olm sessions to every other device (including her own A2).
    for up in [&mut a2_up, &mut b1_up, &mut b2_up] {
        let claimed = claim(up);
        let s = OlmSession::outbound(&a1.device, &claimed).unwrap();
        a1.olm.insert(s);
    }

    // A DM over Olm to each device: everyone decrypts.
    let targets: Vec<(String, &mut Client)> = vec![
        (a2.device.identity_keys().curve25519, &mut a2),
        (b1.device.identity_keys().curve25519, &mut b1),
        (b2.device.identity_keys().curve25519, &mut b2),
    ];
    let mut dm_envelopes = Vec::new();
    for (key, _) in &targets {
        let env = a1
            .olm
            .session_for(key)
            .unwrap()
            .encrypt(b"hello, direct")
            .unwrap();
        dm_envelopes.push(env.to_json());
    }
    for ((_, client), json) in targets.into_iter().zip(&dm_envelopes) {
        let env = OlmEnvelope::from_json(json).unwrap();
        assert_eq!(
            client.olm.decrypt(&mut client.device, &env).unwrap(),
            b"hello, direct"
        );
        assert!(!json.contains("hello"));
    }

    // Bob replies over the session his B1 now has: Alice decrypts a normal message.
    let reply = b1
        .olm
        .session_for(&a1.device.identity_keys().curve25519)
        .unwrap()
        .encrypt(b"hi alice")
        .unwrap();
    assert_eq!(reply.message_type, 1);
    assert_eq!(a1.olm.decrypt(&mut a1.device, &reply).unwrap(), b"hi alice");

    // Channel: A1 creates a Megolm session and shares it over Olm.
    let mut out = OutboundGroup::new("channel-1", 1_000).unwrap();
    let room_key = out.room_key().to_json();
    let mut shares = Vec::new();
    for key in [
        a2.device.identity_keys().curve25519,
        b1.device.identity_keys().curve25519,
        b2.device.identity_keys().curve25519,
    ] {
        shares.push(
            a1.olm
                .session_for(&key)
                .unwrap()
                .encrypt(room_key.as_bytes())
                .unwrap()
                .to_json(),
        );
    }
    a2.receive_to_device(&shares[0]);
    b1.receive_to_device(&shares[1]);
    b2.receive_to_device(&shares[2]);

    let msgs: Vec<String> = (0..5)
        .map(|i| {
            out.encrypt(format!("channel message {i}").as_bytes())
                .unwrap()
                .to_json()
        })
        .collect();
    for client in [&mut a2, &mut b1, &mut b2] {
        for (i, m) in msgs.iter().enumerate() {
            let gm = GroupMessage::from_json(m).unwrap();
            let d = client.groups.decrypt(&gm).unwrap();
            assert_eq!(d.plaintext, format!("channel message {i}").as_bytes());
            assert_eq!(d.message_index as usize, i);
        }
        // Replaying any of them is refused.
        let gm = GroupMessage::from_json(&msgs[2]).unwrap();
        assert!(matches!(
            client.groups.decrypt(&gm),
            Err(MegolmError::Replayed(2))
        ));
    }

    // Bob's B2 is removed: rotate, share the new session only with A2 and B1.
    out.member_left();
    assert_eq!(
        out.needs_rotation(&RotationPolicy::default(), 2_000),
        Some(RotationReason::MemberLeft)
    );
    let mut out2 = OutboundGroup::new("channel-1", 2_000).unwrap();
    let rk2 = out2.room_key().to_json();
    let (a2_key, b1_key) = (
        a2.device.identity_keys().curve25519,
        b1.device.identity_keys().curve25519,
    );
    for (client, key) in [(&mut a2, a2_key), (&mut b1, b1_key)] {
        let env = a1
            .olm
            .session_for(&key)
            .unwrap()
            .encrypt(rk2.as_bytes())
            .unwrap()
            .to_json();
        client.receive_to_device(&env);
    }
    let after =
        GroupMessage::from_json(&out2.encrypt(b"after removal").unwrap().to_json()).unwrap();
    assert_eq!(
        a2.groups.decrypt(&after).unwrap().plaintext,
        b"after removal"
    );
    assert_eq!(
        b1.groups.decrypt(&after).unwrap().plaintext,
        b"after removal"
    );
    assert!(matches!(
        b2.groups.decrypt(&after),
        Err(MegolmError::UnknownSession(_))
    ));

    // A media frame key shared over Olm, then frames round-trip.
    let base = copains_crypto::sframe::generate_base_key().unwrap();
    let env = a1
        .olm
        .session_for(&b1.device.identity_keys().curve25519)
        .unwrap()
        .encrypt(&base)
        .unwrap();
    let got = b1.olm.decrypt(&mut b1.device, &env).unwrap();
    let mut tx = FrameSender::new(0, &base).unwrap();
    let mut rx = FrameReceiver::default();
    rx.add_key(0, &got, 0).unwrap();
    let frame = vec![0x10u8; 1200];
    let enc = tx.encrypt(Codec::Vp8, &frame).unwrap();
    assert_eq!(rx.decrypt(Codec::Vp8, &enc, 5).unwrap(), frame);
}
