//! Sans-IO tests of the room: real str0m clients in memory, simulated clock, no sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{World, vp8};
use copains_sfu::{LeaveReason, ParticipantId, RoomEvent, TrackId, TrackKind, ViewSize};

const MS: Duration = Duration::from_millis(1);

#[test]
fn join_forwards_identical_payloads() {
    let mut w = World::new();
    w.join(1, true);
    w.join(2, false);
    w.connect();
    let published = w.events_of(|e| match e {
        RoomEvent::TrackPublished { track, kind } => Some((track.publisher, *kind)),
        _ => None,
    });
    assert!(published.contains(&(ParticipantId(1), TrackKind::Audio)));
    assert!(published.contains(&(ParticipantId(1), TrackKind::Video)));
    assert!(published.contains(&(ParticipantId(2), TrackKind::Audio)));

    for i in 0..20u32 {
        w.with_client(1, |c, now| {
            let mid = c.audio_mid.unwrap();
            c.send(now, mid, None, format!("a1-{i}").into_bytes(), true)
        });
        w.with_client(2, |c, now| {
            let mid = c.audio_mid.unwrap();
            c.send(now, mid, None, format!("a2-{i}").into_bytes(), true)
        });
        w.video_frame(1, i % 10 == 0, i);
        w.run(20 * MS, 5 * MS);
    }
    w.run(200 * MS, 5 * MS);
    let c2 = w.client(2);
    let all: Vec<Vec<u8>> = c2.got.iter().map(|g| g.payload.clone()).collect();
    for i in 0..20u32 {
        assert!(
            all.contains(&format!("a1-{i}").into_bytes()),
            "audio {i} missing at 2"
        );
    }
    // Video: a tile at 1 Mbit/s gets "h", and only "h", from the first key frame on.
    let video: Vec<Vec<u8>> = all
        .iter()
        .filter(|p| p.first() == Some(&0x10))
        .cloned()
        .collect();
    assert_eq!(video.len(), 20, "video at 2: {video:?}");
    for (i, p) in video.iter().enumerate() {
        assert_eq!(p, &vp8(i % 10 == 0, format!("h{i}").as_bytes()));
    }
    let c1 = w.client(1);
    let a2: Vec<Vec<u8>> = c1.got.iter().map(|g| g.payload.clone()).collect();
    for i in 0..20u32 {
        assert!(
            a2.contains(&format!("a2-{i}").into_bytes()),
            "audio {i} missing at 1"
        );
    }
    // Nobody receives their own media.
    assert!(!a2.iter().any(|p| p.starts_with(b"a1-")));
    assert_eq!(w.room.stats().transmits_dropped, 0);
}

#[test]
fn leave_stops_everything() {
    let mut w = World::new();
    w.join(1, true);
    w.join(2, false);
    w.connect();
    w.with_client(1, |c, now| {
        let mid = c.audio_mid.unwrap();
        c.send(now, mid, None, b"before".to_vec(), true)
    });
    w.run(50 * MS, 5 * MS);
    assert!(w.client(2).got.iter().any(|g| g.payload == b"before"));
    w.room.leave(w.now, ParticipantId(1)).unwrap();
    w.pump();
    let left = w.events_of(|e| match e {
        RoomEvent::ParticipantLeft {
            participant,
            reason,
        } => Some((*participant, *reason)),
        _ => None,
    });
    assert_eq!(left, vec![(ParticipantId(1), LeaveReason::Left)]);
    let unpublished = w.events_of(|e| match e {
        RoomEvent::TrackUnpublished { track } => Some(track.publisher),
        _ => None,
    });
    assert_eq!(unpublished.len(), 2);
    let n_before = w.client(2).got.len();
    let n1_before = w.client(1).got.len();
    // Client 1 keeps sending: nothing reaches 2, and nothing is sent to 1.
    for i in 0..10u32 {
        w.with_client(1, |c, now| {
            let mid = c.audio_mid.unwrap();
            c.send(now, mid, None, format!("after{i}").into_bytes(), true)
        });
        w.with_client(2, |c, now| {
            let mid = c.audio_mid.unwrap();
            c.send(now, mid, None, format!("to1-{i}").into_bytes(), true)
        });
        w.run(20 * MS, 5 * MS);
    }
    assert_eq!(w.client(2).got.len(), n_before);
    assert_eq!(w.client(1).got.len(), n1_before);
    assert!(!w.room.contains(ParticipantId(1)));
    assert_eq!(w.room.tracks().count(), 1);
}

fn video_track(w: &World, publisher: u64) -> TrackId {
    w.room
        .tracks()
        .find(|(t, k)| t.publisher == ParticipantId(publisher) && *k == TrackKind::Video)
        .map(|(t, _)| t)
        .unwrap()
}

/// The video payloads (first byte 0x10) client `id` received, with their sequence numbers.
fn video_got(w: &mut World, id: u64) -> Vec<(u64, Vec<u8>)> {
    w.client(id)
        .got
        .iter()
        .filter(|g| g.payload.first() == Some(&0x10))
        .map(|g| (g.seq, g.payload.clone()))
        .collect()
}

#[test]
fn layer_switch_on_bandwidth_change() {
    let mut w = World::with_config(|mut c| {
        c.initial_bitrate = 5_000_000;
        c
    });
    w.join(1, true);
    w.join(2, false);
    w.connect();
    let track = video_track(&w, 1);
    let mut n = 0u32;
    let mut frames = |w: &mut World, count: u32, key_first: bool| {
        for i in 0..count {
            w.video_frame(1, key_first && i == 0, n);
            n += 1;
            w.run(33 * MS, 11 * MS);
        }
    };
    // Tile at 5 Mbit/s: "h".
    frames(&mut w, 5, true);
    assert_eq!(
        w.room.current_layer(ParticipantId(2), track),
        Some(copains_sfu::Layer::H)
    );
    // Focus: the SFU asks the publisher for an "f" key frame and switches on it, not before.
    w.room
        .set_view(w.now, ParticipantId(2), track, ViewSize::Focus)
        .unwrap();
    w.pump();
    w.run(20 * MS, 10 * MS);
    assert!(
        w.client(1)
            .keyframe_requests()
            .iter()
            .any(|(_, rid)| rid.as_deref() == Some("f")),
        "publisher got no PLI for f: {:?}",
        w.client(1).keyframe_requests()
    );
    frames(&mut w, 3, false);
    assert_eq!(
        w.room.current_layer(ParticipantId(2), track),
        Some(copains_sfu::Layer::H)
    );
    frames(&mut w, 3, true);
    assert_eq!(
        w.room.current_layer(ParticipantId(2), track),
        Some(copains_sfu::Layer::F)
    );
    // Bandwidth drops to 200 kbit/s: back to "q" on the next key frame.
    w.room
        .set_bandwidth_cap(w.now, ParticipantId(2), Some(200_000))
        .unwrap();
    w.pump();
    w.run(1100 * MS, 20 * MS);
    frames(&mut w, 2, false);
    assert_eq!(
        w.room.current_layer(ParticipantId(2), track),
        Some(copains_sfu::Layer::F)
    );
    frames(&mut w, 2, true);
    assert_eq!(
        w.room.current_layer(ParticipantId(2), track),
        Some(copains_sfu::Layer::Q)
    );
    w.run(100 * MS, 10 * MS);

    let got = video_got(&mut w, 2);
    let tags: Vec<String> = got
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(&p[2..]).into_owned())
        .collect();
    // Phases h → f → q, every frame once; at a switch frame the old layer's copy may come
    // first (the publisher's pacer orders its layers freely), the new layer's key frame always.
    let phase = |t: &str| "hfq".find(&t[..1]).unwrap();
    assert!(
        tags.windows(2).all(|p| phase(&p[0]) <= phase(&p[1])),
        "{tags:?}"
    );
    let of = |l: &str| -> Vec<u32> {
        tags.iter()
            .filter(|t| t.starts_with(l))
            .map(|t| t[1..].parse().unwrap())
            .collect()
    };
    let (h, f, q) = (of("h"), of("f"), of("q"));
    assert!(
        h == (0..8).collect::<Vec<_>>() || h == (0..9).collect::<Vec<_>>(),
        "{tags:?}"
    );
    assert!(
        f == (8..13).collect::<Vec<_>>() || f == (8..14).collect::<Vec<_>>(),
        "{tags:?}"
    );
    assert_eq!(q, vec![13, 14], "{tags:?}");
    // One continuous sequence across the switches.
    for pair in got.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1);
    }
    let switches = w.events_of(|e| match e {
        RoomEvent::LayerSwitched {
            subscriber, layer, ..
        } if subscriber.0 == 2 => Some(*layer),
        _ => None,
    });
    use copains_sfu::Layer::*;
    assert_eq!(switches, vec![H, F, Q]);
}

#[test]
fn keyframe_requests_are_throttled_to_one_per_second() {
    let mut w = World::new();
    w.join(1, true);
    w.join(2, false);
    w.connect();
    for n in 0..10 {
        w.video_frame(1, n == 0, n);
        w.run(33 * MS, 11 * MS);
    }
    w.run(1500 * MS, 50 * MS);
    let before = w.client(1).keyframe_requests().len();
    let mid = w.client(2).recv_mids().into_iter().find(|m| {
        w.clients[1]
            .got
            .iter()
            .any(|g| g.mid == *m && g.payload.first() == Some(&0x10))
    });
    let mid = mid.unwrap();
    // The subscriber asks for a key frame every 20 ms for 3 s.
    for _ in 0..150 {
        w.client(2).request_keyframe(mid);
        w.advance(20 * MS);
    }
    let after = w.client(1).keyframe_requests().len();
    let passed = after - before;
    assert!(
        (2..=4).contains(&passed),
        "{passed} requests reached the publisher in 3 s"
    );
    assert!(w.room.stats().keyframe_requests_throttled > 0);
    let reqs = w.events_of(|e| match e {
        RoomEvent::KeyframeRequested { track, layer } => Some((*track, *layer)),
        _ => None,
    });
    assert!(reqs.iter().all(|(_, l)| *l == Some(copains_sfu::Layer::H)));
}

#[test]
fn active_speaker_follows_the_loudest() {
    let mut w = World::new();
    w.join(1, false);
    w.join(2, false);
    w.join(3, false);
    w.connect();
    let talk = |w: &mut World, loud: u64, ms: u32| {
        for _ in 0..ms / 20 {
            for id in 1..=3u64 {
                let level = if id == loud { -20 } else { -100 };
                w.with_client(id, |c, now| {
                    c.send_audio_level(now, vec![0xf8, 1, 2, 3], level)
                });
            }
            w.advance(20 * MS);
        }
    };
    talk(&mut w, 2, 1500);
    assert_eq!(w.room.active_speaker(), Some(ParticipantId(2)));
    talk(&mut w, 3, 1500);
    assert_eq!(w.room.active_speaker(), Some(ParticipantId(3)));
    let changes = w.events_of(|e| match e {
        RoomEvent::ActiveSpeakerChanged { participant } => Some(*participant),
        _ => None,
    });
    assert_eq!(
        changes,
        vec![Some(ParticipantId(2)), Some(ParticipantId(3))]
    );
    // Silence: announced as nobody after the level fades.
    w.run(2000 * MS, 20 * MS);
    assert_eq!(w.room.active_speaker(), None);
}

#[test]
fn kick_removes_at_once() {
    let mut w = World::new();
    w.join(1, true);
    w.join(2, true);
    w.connect();
    w.room.kick(w.now, ParticipantId(2)).unwrap();
    w.pump();
    let left = w.events_of(|e| match e {
        RoomEvent::ParticipantLeft {
            participant,
            reason,
        } => Some((*participant, *reason)),
        _ => None,
    });
    assert_eq!(left, vec![(ParticipantId(2), LeaveReason::Kicked)]);
    let got1 = w.client(1).got.len();
    let got2 = w.client(2).got.len();
    for i in 0..20 {
        w.with_client(1, |c, now| {
            let mid = c.audio_mid.unwrap();
            c.send(now, mid, None, vec![1, 2, i], true)
        });
        w.video_frame(2, i == 0, i as u32);
        w.video_frame(1, i == 0, i as u32);
        w.advance(20 * MS);
    }
    assert_eq!(
        w.client(2).got.len(),
        got2,
        "kicked participant still receives"
    );
    assert_eq!(
        w.client(1).got.len(),
        got1,
        "kicked participant's media still forwarded"
    );
    assert!(
        w.room_errors > 0,
        "kicked participant's datagrams were accepted"
    );
    assert_eq!(
        w.room.kick(w.now, ParticipantId(2)),
        Err(copains_sfu::RoomError::UnknownParticipant)
    );
    // Client 1 got an offer removing 2's tracks.
    assert!(
        w.room
            .tracks()
            .all(|(t, _)| t.publisher == ParticipantId(1))
    );
}

#[test]
fn garbage_and_bad_stun_do_not_disturb_others() {
    let mut w = World::new();
    w.join(1, false);
    w.join(2, false);
    w.connect();
    let sfu = w.sfu;
    let src = w.client(2).addr;
    let ufrag = w.room.ice_ufrag(ParticipantId(2)).unwrap().to_string();
    let mut bad_stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    bad_stun.extend_from_slice(&[9; 12]);
    let user = format!("{ufrag}:evil");
    let mut attr = vec![0x00, 0x06, 0x00, user.len() as u8];
    attr.extend_from_slice(user.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    // MESSAGE-INTEGRITY of zeros: must fail verification.
    attr.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    attr.extend_from_slice(&[0; 20]);
    bad_stun[2..4].copy_from_slice(&(attr.len() as u16).to_be_bytes());
    bad_stun.extend_from_slice(&attr);
    let mut fake_rtp = vec![0x80, 111, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    fake_rtp.extend_from_slice(&[0x55; 100]);
    let mut fake_dtls = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 200];
    fake_dtls.extend_from_slice(&[0xaa; 50]);
    for i in 0..50u32 {
        let junk: Vec<u8> = (0..(i * 37 % 1400)).map(|b| (b * 31 + i) as u8).collect();
        for d in [
            &junk[..],
            &bad_stun[..],
            &fake_rtp[..],
            &fake_dtls[..],
            &[][..],
            &[0xff; 3][..],
        ] {
            let _ = w.room.handle_datagram(w.now, ParticipantId(2), src, sfu, d);
        }
        assert!(
            w.room
                .handle_datagram(w.now, ParticipantId(99), src, sfu, &junk)
                .is_err()
        );
        w.pump();
        w.with_client(1, |c, now| {
            let mid = c.audio_mid.unwrap();
            c.send(now, mid, None, format!("ok{i}").into_bytes(), true)
        });
        w.with_client(2, |c, now| {
            let mid = c.audio_mid.unwrap();
            c.send(now, mid, None, format!("ok{i}").into_bytes(), true)
        });
        w.advance(20 * MS);
    }
    w.run(100 * MS, 10 * MS);
    assert!(w.room.stats().datagrams_rejected > 0);
    for id in [1, 2] {
        let got: Vec<Vec<u8>> = w.client(id).got.iter().map(|g| g.payload.clone()).collect();
        for i in 0..50 {
            assert!(
                got.contains(&format!("ok{i}").into_bytes()),
                "client {id} lost ok{i}"
            );
        }
        assert!(w.client(id).rtc.is_connected());
    }
    assert_eq!(w.room.len(), 2);
}

#[test]
fn server_mute_drops_audio_only() {
    let mut w = World::new();
    w.join(1, true);
    w.join(2, false);
    w.connect();
    let send = |w: &mut World, tag: &str, i: u32| {
        w.with_client(1, |c, now| {
            let mid = c.audio_mid.unwrap();
            c.send(now, mid, None, format!("{tag}{i}").into_bytes(), true)
        });
        w.video_frame(1, i == 0, i);
        w.advance(20 * MS);
    };
    for i in 0..5 {
        send(&mut w, "pre", i);
    }
    w.room.set_muted(ParticipantId(1), true).unwrap();
    for i in 5..10 {
        send(&mut w, "muted", i);
    }
    w.room.set_muted(ParticipantId(1), false).unwrap();
    for i in 10..15 {
        send(&mut w, "post", i);
    }
    w.run(100 * MS, 10 * MS);
    let audio: Vec<(u64, String)> = w
        .client(2)
        .got
        .iter()
        .filter(|g| g.payload.first() != Some(&0x10))
        .map(|g| (g.seq, String::from_utf8_lossy(&g.payload).into_owned()))
        .collect();
    let tags: Vec<&str> = audio.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        tags,
        [
            "pre0", "pre1", "pre2", "pre3", "pre4", "post10", "post11", "post12", "post13",
            "post14"
        ]
    );
    // No gap in sequence numbers across the mute.
    for p in audio.windows(2) {
        assert_eq!(p[1].0, p[0].0 + 1);
    }
    // Video kept flowing while muted.
    assert_eq!(video_got(&mut w, 2).len(), 15);
    let mutes = w.events_of(|e| match e {
        RoomEvent::MuteChanged { muted, .. } => Some(*muted),
        _ => None,
    });
    assert_eq!(mutes, vec![true, false]);
}

#[test]
fn screen_share_by_renegotiation() {
    let mut w = World::new();
    w.join(1, false);
    w.join(2, false);
    w.connect();
    let mid = w.start_screen(1);
    w.run(50 * MS, 10 * MS);
    let kinds = w.events_of(|e| match e {
        RoomEvent::TrackPublished { kind, .. } => Some(*kind),
        _ => None,
    });
    assert!(kinds.contains(&TrackKind::Screen));
    for i in 0..10u32 {
        w.with_client(1, |c, now| {
            c.send(
                now,
                mid,
                None,
                vp8(i == 0, format!("screen{i}").as_bytes()),
                true,
            )
        });
        w.advance(30 * MS);
    }
    w.run(100 * MS, 10 * MS);
    let got = video_got(&mut w, 2);
    assert_eq!(got.len(), 10);
    for (i, (_, p)) in got.iter().enumerate() {
        assert_eq!(p, &vp8(i == 0, format!("screen{i}").as_bytes()));
    }
}

#[test]
fn a_screen_share_whose_key_frame_was_missed_gets_one_requested() {
    let mut w = World::new();
    w.join(1, false);
    w.join(2, false);
    w.connect();
    let mid = w.start_screen(1);
    w.run(50 * MS, 10 * MS);
    let before = w.client(1).keyframe_requests().len();
    // Only delta frames (a still screen: its key frame went out before anyone subscribed):
    // nothing can be forwarded, so the SFU asks the publisher for a key frame.
    for i in 0..5u32 {
        w.with_client(1, |c, now| {
            c.send(now, mid, None, vp8(false, format!("d{i}").as_bytes()), true)
        });
        w.advance(30 * MS);
    }
    w.run(1200 * MS, 10 * MS);
    assert!(video_got(&mut w, 2).is_empty());
    assert!(
        w.client(1).keyframe_requests().len() > before,
        "the publisher of the screen share got no key frame request"
    );
    // The key frame it sends starts the stream for the subscriber.
    for i in 0..3u32 {
        w.with_client(1, |c, now| {
            c.send(
                now,
                mid,
                None,
                vp8(i == 0, format!("k{i}").as_bytes()),
                true,
            )
        });
        w.advance(30 * MS);
    }
    w.run(100 * MS, 10 * MS);
    let got = video_got(&mut w, 2);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].1, vp8(true, b"k0"));
}

#[test]
fn nack_recovers_loss_towards_a_subscriber() {
    let mut w = World::new();
    w.join(1, true);
    w.join(2, false);
    w.connect();
    w.client(2).loss_in = 0.05;
    for i in 0..200u32 {
        w.video_frame(1, i % 30 == 0, i);
        w.advance(10 * MS);
    }
    w.run(1000 * MS, 10 * MS);
    assert!(w.client(2).dropped_in > 5);
    let mut tags: Vec<String> = video_got(&mut w, 2)
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(&p[2..]).into_owned())
        .collect();
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), 200, "recovered {} of 200", tags.len());
}

#[test]
fn wrong_dtls_fingerprint_is_refused_without_disturbing_others() {
    let mut w = World::new();
    w.join(1, false);
    w.join(2, false);
    w.join_with_wrong_fingerprint(3);
    for i in 0..150u32 {
        for id in [1, 2] {
            w.with_client(id, |c, now| {
                let mid = c.audio_mid.unwrap();
                c.send(now, mid, None, format!("x{id}-{i}").into_bytes(), true)
            });
        }
        w.advance(20 * MS);
    }
    // The impostor never gets media, and the SFU drops it.
    assert!(w.client(3).got.is_empty());
    let left = w.events_of(|e| match e {
        RoomEvent::ParticipantLeft {
            participant,
            reason,
        } => Some((*participant, *reason)),
        _ => None,
    });
    assert_eq!(left, vec![(ParticipantId(3), LeaveReason::Disconnected)]);
    // 1 and 2 exchanged everything sent once they were connected.
    for (me, other) in [(1u64, 2u64), (2, 1)] {
        let got: Vec<Vec<u8>> = w.client(me).got.iter().map(|g| g.payload.clone()).collect();
        for i in 20..150 {
            assert!(
                got.contains(&format!("x{other}-{i}").into_bytes()),
                "{me} lost {other}/{i}"
            );
        }
    }
}
