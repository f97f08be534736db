//! Loopback integration: the real UDP driver on 127.0.0.1 and native str0m clients.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use copains_sfu::client::{NativeClient, Publish};
use copains_sfu::{ParticipantId, RoomEvent, RoomId, SfuConfig, SfuEvent, SfuHandle};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::Receiver;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ROOM: RoomId = RoomId(7);

struct Peer {
    id: ParticipantId,
    client: NativeClient,
    /// (sender tag, payload) of every RTP packet received.
    got: Vec<Vec<u8>>,
    active: bool,
    in_room: bool,
}

struct Net {
    rt: Runtime,
    sfu: SfuHandle,
    events: Receiver<SfuEvent>,
    peers: Vec<Peer>,
    seen: Vec<RoomEvent>,
}

impl Net {
    fn start() -> Net {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = SfuConfig {
            bind_ip: LO,
            ports: "47100-47199".parse().unwrap(),
            workers: 2,
            ..SfuConfig::default()
        };
        let (sfu, events) = SfuHandle::start(config).unwrap();
        Net {
            rt,
            sfu,
            events,
            peers: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn join(&mut self, id: u64, video: bool) {
        let (mut client, offer) = NativeClient::new(
            LO,
            if video {
                Publish::AudioVideo
            } else {
                Publish::Audio
            },
            Instant::now(),
        )
        .unwrap();
        let pid = ParticipantId(id);
        let neg = self.rt.block_on(self.sfu.join(ROOM, pid, offer)).unwrap();
        client.accept_answer(&neg.answer).unwrap();
        let mut next = neg.offer;
        while let Some(o) = next {
            let answer = client.answer_offer(&o).unwrap();
            next = self
                .rt
                .block_on(self.sfu.accept_answer(ROOM, pid, answer))
                .unwrap();
        }
        self.peers.push(Peer {
            id: pid,
            client,
            got: Vec::new(),
            active: true,
            in_room: true,
        });
    }

    fn peer(&mut self, id: u64) -> &mut Peer {
        self.peers.iter_mut().find(|p| p.id.0 == id).unwrap()
    }

    /// Drives clients and relays server offers for `d`.
    fn run(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.step();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn step(&mut self) {
        for p in self.peers.iter_mut().filter(|p| p.active) {
            let got = &mut p.got;
            p.client
                .tick(&mut |r| got.push(r.packet.payload.to_vec()))
                .unwrap();
        }
        while let Ok(ev) = self.events.try_recv() {
            assert_eq!(ev.room, ROOM);
            if let RoomEvent::Offer { participant, sdp } = &ev.event
                && let Some(p) = self
                    .peers
                    .iter_mut()
                    .find(|p| p.id == *participant && p.in_room)
            {
                let answer = p.client.answer_offer(sdp).unwrap();
                let mut next = self
                    .rt
                    .block_on(self.sfu.accept_answer(ROOM, *participant, answer))
                    .unwrap();
                while let Some(o) = next {
                    let a = p.client.answer_offer(&o).unwrap();
                    next = self
                        .rt
                        .block_on(self.sfu.accept_answer(ROOM, *participant, a))
                        .unwrap();
                }
            }
            self.seen.push(ev.event);
        }
    }

    fn connect(&mut self) {
        let end = Instant::now() + Duration::from_secs(10);
        while !self.peers.iter().all(|p| p.client.is_connected()) {
            assert!(Instant::now() < end, "clients did not connect");
            self.step();
            std::thread::sleep(Duration::from_millis(1));
        }
        self.run(Duration::from_millis(300));
    }

    /// Every active publisher sends `n` audio packets and `n` three-layer video frames.
    fn send_round(&mut self, tag: &str, n: u32) {
        for i in 0..n {
            let now = Instant::now();
            for p in self.peers.iter_mut().filter(|p| p.active) {
                let who = p.id.0;
                let audio = format!("{tag}-a{who}-{i}").into_bytes();
                p.client.send_audio(now, audio, i * 960, -30).unwrap();
                if p.client.video_mid.is_some() {
                    for rid in ["q", "h", "f"] {
                        let mut v = vec![0x10, if i == 0 { 0x00 } else { 0x01 }];
                        v.extend_from_slice(format!("{tag}-v{who}{rid}-{i}").as_bytes());
                        p.client.send_video(now, rid, v, true, i * 3000).unwrap();
                    }
                }
            }
            self.run(Duration::from_millis(20));
        }
        self.run(Duration::from_millis(300));
    }
}

fn count(p: &Peer, prefix: &str) -> usize {
    p.got
        .iter()
        .filter(|g| g.windows(prefix.len()).any(|w| w == prefix.as_bytes()))
        .count()
}

#[test]
fn loopback_two_publishers_identical_payloads_and_nothing_after_leave_or_kick() {
    let mut net = Net::start();
    net.join(1, true);
    net.join(2, true);
    net.join(3, false);
    net.connect();
    net.send_round("r1", 30);

    // Every subscriber receives every packet of the others, bytes identical.
    for (sub, pubs) in [(1u64, [2u64, 3]), (2, [1, 3]), (3, [1, 2])] {
        let p = net.peer(sub);
        for publisher in pubs {
            for i in 0..30 {
                let audio = format!("r1-a{publisher}-{i}").into_bytes();
                assert!(p.got.contains(&audio), "{sub} missed audio {publisher}/{i}");
            }
            if publisher != 3 {
                // One layer per publisher (chosen from the bandwidth estimate), every frame of
                // it from the first key frame on, and nothing of the other layers.
                let layers: Vec<&str> = ["q", "h", "f"]
                    .into_iter()
                    .filter(|rid| count(p, &format!("r1-v{publisher}{rid}")) > 0)
                    .collect();
                assert_eq!(
                    layers.len(),
                    1,
                    "{sub} got layers {layers:?} of {publisher}"
                );
                for i in 0..30 {
                    let mut v = vec![0x10, if i == 0 { 0x00 } else { 0x01 }];
                    v.extend_from_slice(format!("r1-v{publisher}{}-{i}", layers[0]).as_bytes());
                    assert!(p.got.contains(&v), "{sub} missed video {publisher}/{i}");
                }
                assert_eq!(count(p, &format!("r1-v{publisher}{}", layers[0])), 30);
            }
        }
        // Nothing of their own.
        assert_eq!(count(p, &format!("r1-a{sub}-")), 0);
    }

    // A garbage flood from a stranger does not disturb anyone.
    let stranger = UdpSocket::bind((LO, 0)).unwrap();
    for addr in net.sfu.local_addrs() {
        for i in 0..2000u32 {
            let junk: Vec<u8> = (0..(i % 1200)).map(|b| (b ^ i) as u8).collect();
            let _ = stranger.send_to(&junk, addr);
        }
    }

    // Kick 2, then 1 leaves.
    net.peer(2).in_room = false;
    net.peer(1).in_room = false;
    net.rt
        .block_on(net.sfu.kick(ROOM, ParticipantId(2)))
        .unwrap();
    net.rt
        .block_on(net.sfu.leave(ROOM, ParticipantId(1)))
        .unwrap();
    net.run(Duration::from_millis(200));
    for id in [1, 2] {
        net.peer(id).got.clear();
    }
    net.peer(3).got.clear();
    // 1 and 2 keep sending as if nothing happened; 3 sends too.
    net.send_round("r2", 20);
    assert_eq!(
        count(net.peer(3), "r2-a1"),
        0,
        "1's audio forwarded after leave"
    );
    assert_eq!(
        count(net.peer(3), "r2-a2"),
        0,
        "2's audio forwarded after kick"
    );
    assert_eq!(
        count(net.peer(3), "r2-v"),
        0,
        "video forwarded after leave/kick"
    );
    assert_eq!(
        count(net.peer(1), "r2-"),
        0,
        "left participant still receives"
    );
    assert_eq!(
        count(net.peer(2), "r2-"),
        0,
        "kicked participant still receives"
    );

    let left: HashMap<u64, copains_sfu::LeaveReason> = net
        .seen
        .iter()
        .filter_map(|e| match e {
            RoomEvent::ParticipantLeft {
                participant,
                reason,
            } => Some((participant.0, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(left.get(&2), Some(&copains_sfu::LeaveReason::Kicked));
    assert_eq!(left.get(&1), Some(&copains_sfu::LeaveReason::Left));
    let stats = net.rt.block_on(net.sfu.stats()).unwrap();
    assert!(stats.unrouted >= 2000, "{stats:?}");
    assert!(stats.rtp_forwarded > 0);
}

#[test]
fn port_range_and_announced_address_are_validated() {
    assert!("0-5".parse::<copains_sfu::PortRange>().is_err());
    let config = SfuConfig {
        announced_ip: None,
        ..SfuConfig::default()
    };
    assert!(matches!(
        SfuHandle::start(config),
        Err(copains_sfu::SfuError::Config(_))
    ));
}
