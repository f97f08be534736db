//! Native crypto benchmark; writes `bench/results/crypto.json`.
//!
//! Rerun:   cargo bench -p copains-crypto --bench crypto_bench
//! (wasm half: crypto/scripts/build-wasm.sh && cd crypto/browser-test &&
//!  BENCH_OUT=../../bench/results/crypto.json node run.mjs)
//!
//! Plain `Instant` loops: a warm-up, then several timed rounds; the median round is
//! reported in µs per operation. Every crypto figure sits beside raw AES-128-GCM over the
//! same number of bytes with the same `aes-gcm` backend, measured in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::{hint::black_box, time::Instant};

use aes_gcm::{AeadInOut, Aes128Gcm, KeyInit, aead::Nonce};
use copains_crypto::{
    megolm::{InboundGroup, OutboundGroup},
    sframe::{Codec, FrameReceiver, FrameSender},
};

const ROUNDS: usize = 9;

fn time_round(iters: usize, f: &mut impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / iters as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn measure(iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 4 + 10 {
        f();
    }
    median((0..ROUNDS).map(|_| time_round(iters, &mut f)).collect())
}

/// Time two operations in alternating rounds (so load changes on the shared machine hit
/// both alike); returns both medians.
fn measure_pair(iters: usize, mut f: impl FnMut(), mut g: impl FnMut()) -> (f64, f64) {
    for _ in 0..iters / 4 + 10 {
        f();
        g();
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(time_round(iters, &mut f));
        b.push(time_round(iters, &mut g));
    }
    (median(a), median(b))
}

/// Raw AES-128-GCM seal of `len` bytes in place (key schedule done once, counter nonce).
fn raw_aes_op(len: usize) -> impl FnMut() {
    let cipher = Aes128Gcm::new(&[7u8; 16].into());
    let mut buf = vec![1u8; len];
    let mut ctr = 0u64;
    move || {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&ctr.to_be_bytes());
        ctr += 1;
        let tag = cipher
            .encrypt_inout_detached(&Nonce::<Aes128Gcm>::from(n), &[], buf.as_mut_slice().into())
            .unwrap();
        black_box(tag);
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn main() {
    // Megolm: encrypt + decrypt of a 200-byte message.
    let mut out = OutboundGroup::new("bench", 0).unwrap();
    let mut inb = InboundGroup::from_room_key(&out.room_key()).unwrap();
    let msg = [65u8; 200];
    let megolm = measure(2000, || {
        let m = out.encrypt(&msg).unwrap();
        black_box(inb.decrypt(&m).unwrap());
    });
    let aes_200 = measure(200_000, raw_aes_op(200));

    // SFrame: the allocating API the app calls (`encrypt`), and the buffer-reusing one.
    let key = [9u8; 32];
    let mut results = Vec::new();
    for (len, iters) in [(1200usize, 200_000usize), (30_000, 10_000)] {
        let mut tx = FrameSender::new(0, &key).unwrap();
        let mut frame = vec![0x31u8; len]; // VP8 delta frame: 3 clear bytes
        frame[0] = 0x31;
        let (alloc, aes) = measure_pair(
            iters,
            || {
                black_box(tx.encrypt(Codec::Vp8, black_box(&frame)).unwrap());
            },
            raw_aes_op(len),
        );
        let mut buf = Vec::with_capacity(len + 64);
        let reuse = measure(iters, || {
            buf.clear();
            tx.encrypt_into(Codec::Vp8, black_box(&frame), &mut buf)
                .unwrap();
            black_box(&buf);
        });
        // Decrypt: a ring of distinct frames (the receiver refuses replays), a fresh
        // receiver per round.
        let ring: Vec<Vec<u8>> = (0..(8_000_000 / len).clamp(64, 4096))
            .map(|_| tx.encrypt(Codec::Vp8, &frame).unwrap())
            .collect();
        let mut dec_rounds = Vec::new();
        for r in 0..=ROUNDS {
            let mut rx = FrameReceiver::default();
            rx.add_key(0, &key, 0).unwrap();
            let t = Instant::now();
            for f in &ring {
                black_box(rx.decrypt(Codec::Vp8, black_box(f), 0).unwrap());
            }
            if r > 0 {
                dec_rounds.push(t.elapsed().as_secs_f64() * 1e6 / ring.len() as f64);
            }
        }
        let dec = median(dec_rounds);
        results.push((len, alloc, reuse, dec, aes));
    }

    let (_, f1_alloc, f1_reuse, f1_dec, aes1) = results[0];
    let (_, f30_alloc, f30_reuse, f30_dec, aes30) = results[1];
    let ratio = f1_alloc / aes1;
    let native = serde_json::json!({
        "megolm_encrypt_decrypt_200b_us": round3(megolm),
        "aes_gcm_200b_us": round3(aes_200),
        "frame_encrypt_1200b_us": round3(f1_alloc),
        "frame_encrypt_into_1200b_us": round3(f1_reuse),
        "frame_decrypt_1200b_us": round3(f1_dec),
        "aes_gcm_1200b_us": round3(aes1),
        "frame_vs_aes_ratio": round3(ratio),
        "frame_encrypt_30000b_us": round3(f30_alloc),
        "frame_encrypt_into_30000b_us": round3(f30_reuse),
        "frame_decrypt_30000b_us": round3(f30_dec),
        "aes_gcm_30000b_us": round3(aes30),
        "frame_vs_aes_ratio_30000b": round3(f30_alloc / aes30),
    });
    println!("{}", serde_json::to_string_pretty(&native).unwrap());

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/results/crypto.json");
    let mut doc: serde_json::Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    doc["rerun"] = serde_json::json!({
        "native": "cargo bench -p copains-crypto --bench crypto_bench",
        "wasm": "crypto/scripts/build-wasm.sh && cd crypto/browser-test && npm install && BENCH_OUT=../../bench/results/crypto.json node run.mjs",
    });
    doc["method"] = serde_json::json!(
        "median of 9 timed rounds after warm-up, µs per operation; frame = SFrame AES_128_GCM_SHA256_128 \
         of a VP8 delta frame (3 clear bytes) via FrameSender::encrypt (allocates the output); \
         aes_gcm = raw aes-gcm 0.11 Aes128Gcm seal in place of the same byte count, same run; \
         frame_vs_aes_ratio = frame_encrypt_1200b_us / aes_gcm_1200b_us (target <= 1.25)"
    );
    doc["frame_vs_aes_ratio"] = serde_json::json!(round3(ratio));
    doc["native"] = native;
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/results")).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    println!("wrote {path}");
}
