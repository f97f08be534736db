/**
 * The WebRTC side of a call (loaded lazily, when the user joins voice): one RTCPeerConnection to
 * the SFU, negotiated over the gateway's `voice_signal` (docs/gateway.md, "Voice in copains
 * serve"; the same SDP handling as sfu/browser-test/voice.mjs). My microphone, camera
 * (simulcast q/h/f) and screen (one layer) are `sendonly` transceivers; the SFU offers one
 * `recvonly` transceiver per forwarded track, its stream labelled `p<hash of the publisher's
 * session>` ({@link streamIdOf}). Every sender and receiver goes through frame encryption when
 * `./e2ee` exists. Hanging up stops every local track and closes the connection.
 */
import { api } from '$lib/api';
import {
	applyVoiceOther,
	connectionChanged,
	heard,
	qualityOf,
	tick,
	userOfStream,
	videoKindOf,
	type EndReason,
	type Op,
	type VoiceModel
} from './machine';
import type { RemoteAudio, RemoteTile, VoiceUi } from './ui';

/** The frame-encryption module's interface (frontend/src/lib/voice/e2ee/index.ts). */
interface FrameCrypto {
	attachSender(sender: RTCRtpSender, kind: 'audio' | 'video'): void;
	attachReceiver(receiver: RTCRtpReceiver, kind: 'audio' | 'video'): void;
	setParticipants(userIds: string[]): void;
	close(): void;
}
interface E2eeModule {
	createFrameCrypto(opts: { channelId: string; selfUserId: string }): Promise<FrameCrypto>;
	needsInsertableStreamsFlag: boolean;
}
// Present once the frame-encryption module has landed; the glob is empty otherwise.
const e2eeModules = import.meta.glob<E2eeModule>('./e2ee/index.ts');

/** What the engine needs from the app. */
export interface EngineHost {
	model: VoiceModel;
	ui: VoiceUi;
	send(op: Op): void;
	/** The call ended on its own (unanswered ring, fatal error): the host hangs up. */
	end(reason: EndReason): void;
}

const SIMULCAST: RTCRtpEncodingParameters[] = [
	{ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
	{ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
	{ rid: 'f', maxBitrate: 1_500_000 }
];

/** Mean audio level (0–1, linear) above which someone counts as speaking. */
const SPEAKING_LEVEL = 0.01;
/** How long the speaking ring stays after the last sound (ms). */
const SPEAKING_HOLD_MS = 600;

/** The gateway's limit on a `voice_signal`'s data (docs/gateway.md, Limits). */
const MAX_SIGNAL_BYTES = 12 * 1024;

/** Remote transceiver info by mid. */
interface RemoteInfo {
	streamId: string;
	kind: 'audio' | 'video';
	track: MediaStreamTrack;
	stream: MediaStream;
	label: 'camera' | 'screen' | null;
}

/** One call's peer connection and local media. */
export class VoiceEngine {
	readonly #h: EngineHost;
	readonly channelId: string;
	#pc: RTCPeerConnection | null = null;
	#mic: MediaStreamTrack | null = null;
	#camera: MediaStreamTrack | null = null;
	#screen: MediaStreamTrack | null = null;
	#micTx: RTCRtpTransceiver | null = null;
	#cameraTx: RTCRtpTransceiver | null = null;
	#screenTx: RTCRtpTransceiver | null = null;
	#local = new MediaStream();
	#remote = new Map<string, RemoteInfo>();
	#chain: Promise<void> = Promise.resolve();
	#wantOffer = false;
	#crypto: FrameCrypto | null = null;
	#insertable = false;
	#iceServers: RTCIceServer[] = [];
	#timers: ReturnType<typeof setInterval>[] = [];
	/** Audio energy counters per source (`me` or a receiving mid), for speaking detection. */
	#energy = new Map<string, { energy: number; duration: number }>();
	/** When each user was last heard above the speaking threshold (Unix ms). */
	#spokeAt = new Map<string, number>();
	#lastLoss = { lost: 0, received: 0 };
	#closed = false;
	#retries = 0;
	/** The SFU's refusals of my offers since the last accepted one. */
	#refusals = 0;
	/**
	 * My offers sent and not yet answered or refused, oldest first (the SFU answers in order).
	 * An offer I rolled back because the SFU's own offer crossed it is `abandoned`: the SFU
	 * refuses it, and that refusal needs nothing more (a new offer is already due).
	 */
	#inflight: { abandoned: boolean }[] = [];
	#restartTimer: ReturnType<typeof setTimeout> | null = null;

	constructor(host: EngineHost, channelId: string) {
		this.#h = host;
		this.channelId = channelId;
	}

	/** Opens the microphone and the connection, and sends the first offer. */
	async start(): Promise<void> {
		const ui = this.#h.ui;
		const load = e2eeModules['./e2ee/index.ts'];
		if (load && this.#h.model.meId) {
			try {
				const mod = await load();
				this.#insertable = mod.needsInsertableStreamsFlag;
				this.#crypto = await mod.createFrameCrypto({ channelId: this.channelId, selfUserId: this.#h.model.meId });
				ui.encrypted = true;
			} catch (e) {
				ui.error = `Media encryption is unavailable: ${String(e)}`;
				this.#h.end('error');
				return;
			}
		}
		try {
			const ice = await api.request<{ ice_servers?: RTCIceServer[] }>('GET', '/voice/ice-servers');
			this.#iceServers = Array.isArray(ice?.ice_servers) ? ice.ice_servers : [];
		} catch {
			this.#iceServers = [];
		}
		if (this.#closed) return;
		try {
			this.#mic = await this.#openMic(ui.chosen.audioinput);
		} catch (e) {
			ui.error = `No microphone: ${errorText(e)}. You can listen, not speak.`;
		}
		if (this.#closed) {
			this.#mic?.stop();
			return;
		}
		this.applyMute();
		this.#open();
		void this.refreshDevices();
		this.#timers.push(setInterval(() => void this.#stats(), 1000));
		this.#timers.push(setInterval(() => void this.#levels(), 250));
		this.#timers.push(
			setInterval(() => {
				const out = tick(this.#h.model, Date.now());
				out.ops.forEach((o) => this.#h.send(o));
				if (out.ended) this.#h.end(out.ended);
			}, 1000)
		);
	}

	async #openMic(deviceId: string): Promise<MediaStreamTrack> {
		const s = await navigator.mediaDevices.getUserMedia({
			audio: { ...(deviceId ? { deviceId: { exact: deviceId } } : {}), echoCancellation: true, noiseSuppression: true, autoGainControl: true }
		});
		return s.getAudioTracks()[0];
	}

	/** A new peer connection carrying my current tracks (first start, or after the SFU asked to reconnect). */
	#open(): void {
		const config: RTCConfiguration & { encodedInsertableStreams?: boolean } = { iceServers: this.#iceServers, bundlePolicy: 'max-bundle' };
		if (this.#insertable) config.encodedInsertableStreams = true;
		const pc = new RTCPeerConnection(config);
		this.#pc = pc;
		this.#remote.clear();
		pc.ontrack = (e) => this.#onTrack(e);
		pc.onconnectionstatechange = () => {
			if (this.#pc !== pc) return;
			connectionChanged(this.#h.model, pc.connectionState);
			if (pc.connectionState === 'failed') this.#scheduleRestart();
			if (pc.connectionState === 'connected') this.#retries = 0;
		};
		this.#micTx = this.#mic ? this.#send(this.#mic, 'audio') : pc.addTransceiver('audio', { direction: 'recvonly' });
		this.#cameraTx = this.#camera ? this.#send(this.#camera, 'video', SIMULCAST) : null;
		this.#screenTx = this.#screen ? this.#send(this.#screen, 'video') : null;
		this.#refresh();
		this.negotiate();
	}

	#send(track: MediaStreamTrack, kind: 'audio' | 'video', sendEncodings?: RTCRtpEncodingParameters[]): RTCRtpTransceiver {
		const pc = this.#pc as RTCPeerConnection;
		const tx = pc.addTransceiver(track, { direction: 'sendonly', streams: [this.#local], ...(sendEncodings ? { sendEncodings } : {}) });
		this.#crypto?.attachSender(tx.sender, kind);
		return tx;
	}

	#onTrack(e: RTCTrackEvent): void {
		const mid = e.transceiver.mid;
		if (!mid) return;
		const kind = e.track.kind === 'video' ? 'video' : 'audio';
		this.#crypto?.attachReceiver(e.receiver, kind);
		this.#remote.set(mid, { streamId: e.streams[0]?.id ?? '', kind, track: e.track, stream: new MediaStream([e.track]), label: null });
		e.track.onended = () => this.#refresh();
		this.#refresh();
	}

	/** Rebuilds the remote tiles and audio from the live receiving transceivers. */
	#refresh(): void {
		const pc = this.#pc;
		const ui = this.#h.ui;
		const model = this.#h.model;
		if (!pc || this.#closed) return;
		const tiles: RemoteTile[] = [];
		const audio: RemoteAudio[] = [];
		const live = new Set<string>();
		for (const t of pc.getTransceivers()) {
			const info = t.mid ? this.#remote.get(t.mid) : undefined;
			if (!t.mid || !info || t.currentDirection === 'inactive' || t.currentDirection === 'stopped' || info.track.readyState !== 'live') continue;
			if (t.currentDirection !== 'recvonly' && t.currentDirection !== 'sendrecv') continue;
			live.add(t.mid);
			const userId = userOfStream(model, this.channelId, info.streamId);
			if (userId) heard(model, userId);
			if (info.kind === 'audio') {
				audio.push({ key: t.mid, userId, stream: info.stream });
				continue;
			}
			if (!info.label && userId) {
				const shown = { camera: 0, screen: 0 };
				for (const other of this.#remote.values()) {
					if (other !== info && other.label && userOfStream(model, this.channelId, other.streamId) === userId) shown[other.label] += 1;
				}
				info.label = videoKindOf(model.members[userId], shown);
			}
			const prev = ui.tiles.find((x) => x.key === t.mid);
			tiles.push({ key: t.mid, userId, kind: info.label ?? 'camera', stream: info.stream, framesDecoded: prev?.framesDecoded ?? 0 });
		}
		for (const mid of [...this.#remote.keys()]) {
			const t = pc.getTransceivers().find((x) => x.mid === mid);
			if (!t || t.currentDirection === 'inactive' || t.currentDirection === 'stopped') this.#remote.delete(mid);
		}
		ui.tiles = tiles;
		ui.audio = audio;
		ui.localCamera = this.#camera ? new MediaStream([this.#camera]) : null;
		ui.localScreen = this.#screen ? new MediaStream([this.#screen]) : null;
	}

	/** Voice states changed (names for streams, camera vs screen, participants for key rotation). */
	membersChanged(): void {
		this.#refresh();
		const model = this.#h.model;
		if (this.#crypto && model.meId) {
			const ids = Object.entries(model.members)
				.filter(([, m]) => m?.channelId === this.channelId)
				.map(([u]) => u);
			if (!ids.includes(model.meId)) ids.push(model.meId);
			this.#crypto.setParticipants(ids.sort());
		}
	}

	/** Asks for a (re)negotiation: an offer goes out as soon as the connection is stable. */
	negotiate(): void {
		this.#wantOffer = true;
		this.#pump();
	}

	/**
	 * Opus for audio and VP8 (with RTX) for video on every transceiver: the SFU forwards packets
	 * as they are, so everyone must use the same codec, and the gateway caps a signal at 12 KiB,
	 * which Chrome's SDP with every codec would exceed after a few tracks.
	 */
	#preferCodecs(pc: RTCPeerConnection): void {
		if (typeof RTCRtpReceiver === 'undefined' || !RTCRtpReceiver.getCapabilities) return;
		for (const t of pc.getTransceivers()) {
			if (t.currentDirection === 'stopped' || !t.setCodecPreferences) continue;
			const kind = t.receiver.track.kind as 'audio' | 'video';
			const wanted = kind === 'audio' ? ['audio/opus'] : ['video/vp8', 'video/rtx'];
			const codecs = (RTCRtpReceiver.getCapabilities(kind)?.codecs ?? []).filter((c) => wanted.includes(c.mimeType.toLowerCase()));
			try {
				if (codecs.length) t.setCodecPreferences(codecs);
			} catch {
				// An older browser refusing the list keeps its defaults.
			}
		}
	}

	#pump(): void {
		this.#chain = this.#chain
			.then(async () => {
				const pc = this.#pc;
				if (!pc || this.#closed || !this.#wantOffer || pc.signalingState !== 'stable') return;
				this.#wantOffer = false;
				this.#preferCodecs(pc);
				await pc.setLocalDescription(await pc.createOffer());
				this.#inflight.push({ abandoned: false });
				this.#signal('offer', { sdp: pc.localDescription?.sdp });
			})
			.catch((e) => this.#fail(e));
	}

	#signal(kind: 'offer' | 'answer' | 'other', data: Record<string, unknown>): void {
		// The gateway closes the connection on a signal over 12 KiB: never send one.
		if (JSON.stringify(data).length > MAX_SIGNAL_BYTES) {
			this.#h.ui.error = 'Too many media streams in this call for the signalling limit; turn off a camera or screen share.';
			return;
		}
		this.#h.send({ op: 'voice_signal', fields: { channel_id: this.channelId, kind, data } });
	}

	/** A `voice_signal` from the SFU (or the server's active-speaker notices). */
	onSignal(d: Record<string, unknown>): void {
		const kind = d.kind;
		const data = (d.data && typeof d.data === 'object' ? d.data : {}) as Record<string, unknown>;
		const sdp = typeof data.sdp === 'string' ? data.sdp : null;
		if (kind === 'other') {
			const r = applyVoiceOther(this.#h.model, d);
			if (r.reoffer) this.#restart();
			else if (r.error === 'negotiation_failed') {
				// In order with the answers: which of my offers was refused.
				this.#chain = this.#chain.then(() => {
					const refused = this.#inflight.shift();
					if (!refused?.abandoned) this.#offerAgain();
				});
			} else if (r.error === 'missing_permission') this.#h.end('kicked');
			return;
		}
		if (!sdp) return;
		this.#chain = this.#chain
			.then(async () => {
				const pc = this.#pc;
				if (!pc || this.#closed) return;
				if (kind === 'answer') {
					const answered = this.#inflight.shift();
					if (pc.signalingState !== 'have-local-offer' || answered?.abandoned) return;
					await pc.setRemoteDescription({ type: 'answer', sdp });
					this.#refusals = 0;
				} else if (kind === 'offer') {
					if (pc.signalingState === 'have-local-offer') {
						// Glare: the SFU's offer wins (it refuses mine); mine goes again afterwards.
						await pc.setLocalDescription({ type: 'rollback' });
						const mine = this.#inflight.at(-1);
						if (mine) mine.abandoned = true;
						this.#wantOffer = true;
					}
					await pc.setRemoteDescription({ type: 'offer', sdp });
					this.#preferCodecs(pc);
					await pc.setLocalDescription(await pc.createAnswer());
					this.#signal('answer', { sdp: pc.localDescription?.sdp });
				}
				this.#refresh();
			})
			.catch((e) => this.#fail(e));
		this.#pump();
	}

	/**
	 * The SFU refused my offer (typically: its own offer was outstanding, and I answered that one
	 * instead): drop my offer if it is still pending and offer again shortly.
	 */
	#offerAgain(): void {
		this.#refusals += 1;
		if (this.#refusals > 5) return this.#scheduleRestart();
		this.#chain = this.#chain
			.then(async () => {
				const pc = this.#pc;
				if (!pc || this.#closed) return;
				if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
				this.#wantOffer = true;
				await new Promise((r) => setTimeout(r, 200 * this.#refusals));
			})
			.catch((e) => this.#fail(e));
		this.#pump();
	}

	#fail(e: unknown): void {
		if (this.#closed) return;
		this.#h.ui.error = `Negotiation failed: ${errorText(e)}`;
		this.#scheduleRestart();
	}

	#scheduleRestart(): void {
		if (this.#closed || this.#restartTimer) return;
		this.#retries += 1;
		if (this.#retries > 5) {
			this.#h.end('error');
			return;
		}
		this.#restartTimer = setTimeout(() => {
			this.#restartTimer = null;
			this.#restart();
		}, 1000 * this.#retries);
	}

	/** A fresh connection with the same local tracks (the SFU node stopped, or ICE failed). */
	#restart(): void {
		if (this.#closed) return;
		const old = this.#pc;
		this.#pc = null;
		old?.close();
		this.#chain = Promise.resolve();
		this.#inflight = [];
		this.#open();
	}

	/** Applies mute/deafen to the microphone track. */
	applyMute(): void {
		const m = this.#h.model;
		if (this.#mic) this.#mic.enabled = !(m.selfMute || m.selfDeaf);
	}

	/** Turns the camera on or off; returns whether it is on. */
	async setCamera(on: boolean): Promise<boolean> {
		const pc = this.#pc;
		if (!pc || this.#closed) return false;
		if (on && !this.#camera) {
			const id = this.#h.ui.chosen.videoinput;
			const s = await navigator.mediaDevices.getUserMedia({
				video: { ...(id ? { deviceId: { exact: id } } : {}), width: { ideal: 960 }, height: { ideal: 540 }, frameRate: { ideal: 24 } }
			});
			if (this.#closed || this.#pc !== pc) {
				s.getTracks().forEach((t) => t.stop());
				return false;
			}
			this.#camera = s.getVideoTracks()[0];
			this.#cameraTx = this.#send(this.#camera, 'video', SIMULCAST);
			void this.refreshDevices();
		} else if (!on && this.#camera) {
			this.#camera.stop();
			this.#camera = null;
			this.#retire(this.#cameraTx);
			this.#cameraTx = null;
		}
		this.#refresh();
		this.negotiate();
		return !!this.#camera;
	}

	/** Starts or stops sharing my screen; returns whether it is shared. */
	async setScreen(on: boolean, onStopped?: () => void): Promise<boolean> {
		const pc = this.#pc;
		if (!pc || this.#closed) return false;
		if (on && !this.#screen) {
			const s = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
			if (this.#closed || this.#pc !== pc) {
				s.getTracks().forEach((t) => t.stop());
				return false;
			}
			const track = s.getVideoTracks()[0];
			track.contentHint = 'detail';
			// The browser's own "stop sharing" button.
			track.addEventListener('ended', () => {
				if (this.#screen === track) onStopped?.();
			});
			this.#screen = track;
			this.#screenTx = this.#send(track, 'video');
		} else if (!on && this.#screen) {
			this.#screen.stop();
			this.#screen = null;
			this.#retire(this.#screenTx);
			this.#screenTx = null;
		}
		this.#refresh();
		this.negotiate();
		return !!this.#screen;
	}

	/** Stops sending on a transceiver (the SFU unpublishes the track on the next offer). */
	#retire(tx: RTCRtpTransceiver | null): void {
		if (!tx || tx.currentDirection === 'stopped') return;
		void tx.sender.replaceTrack(null).catch(() => {});
		tx.direction = 'inactive';
	}

	/** Lists microphones, cameras and speakers (labels once a device was opened). */
	async refreshDevices(): Promise<void> {
		try {
			const all = await navigator.mediaDevices.enumerateDevices();
			const pick = (k: MediaDeviceKind) => all.filter((d) => d.kind === k && d.deviceId).map((d, i) => ({ id: d.deviceId, label: d.label || `${k} ${i + 1}` }));
			this.#h.ui.devices = { audioinput: pick('audioinput'), videoinput: pick('videoinput'), audiooutput: pick('audiooutput') };
		} catch {
			// No device list (permissions): the picker stays empty.
		}
	}

	/** Switches the microphone or camera to another device (speakers are applied by the audio elements). */
	async setDevice(kind: 'audioinput' | 'videoinput', deviceId: string): Promise<void> {
		this.#h.ui.chosen[kind] = deviceId;
		if (kind === 'audioinput' && this.#mic && this.#micTx) {
			const next = await this.#openMic(deviceId);
			if (this.#closed) return void next.stop();
			await this.#micTx.sender.replaceTrack(next);
			this.#mic.stop();
			this.#mic = next;
			this.applyMute();
		} else if (kind === 'videoinput' && this.#camera && this.#cameraTx) {
			const s = await navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: deviceId }, width: { ideal: 960 }, height: { ideal: 540 } } });
			const next = s.getVideoTracks()[0];
			if (this.#closed) return void next.stop();
			await this.#cameraTx.sender.replaceTrack(next);
			this.#camera.stop();
			this.#camera = next;
			this.#refresh();
		}
	}

	/** Tells the SFU how large I show a user's video (it picks the simulcast layer). */
	setView(userId: string, size: 'tile' | 'focus' | 'hidden'): void {
		this.#signal('other', { view: { user_id: userId, size } });
	}

	/**
	 * Who is speaking: the mean level of my microphone and of each received audio track since
	 * the last look, from the energy counters of getStats (a short sound between two looks
	 * counts too), held for a moment so the ring does not flicker.
	 */
	async #levels(): Promise<void> {
		const pc = this.#pc;
		const model = this.#h.model;
		if (!pc || this.#closed) return;
		const now = Date.now();
		const level = async (key: string, source: RTCRtpSender | RTCRtpReceiver | null, type: string): Promise<number> => {
			if (!source) return 0;
			let energy = 0;
			let duration = 0;
			try {
				(await source.getStats()).forEach((r: Record<string, unknown>) => {
					if (r.type === type && typeof r.totalAudioEnergy === 'number' && typeof r.totalSamplesDuration === 'number') {
						energy = r.totalAudioEnergy;
						duration = r.totalSamplesDuration;
					}
				});
			} catch {
				return 0;
			}
			const prev = this.#energy.get(key);
			this.#energy.set(key, { energy, duration });
			if (!prev || duration <= prev.duration) return 0;
			return Math.sqrt(Math.max(0, energy - prev.energy) / (duration - prev.duration));
		};
		if (model.meId && this.#micTx && this.#mic?.enabled) {
			if ((await level('me', this.#micTx.sender, 'media-source')) > SPEAKING_LEVEL) this.#spokeAt.set(model.meId, now);
		}
		for (const a of this.#h.ui.audio) {
			const t = pc.getTransceivers().find((x) => x.mid === a.key);
			if (a.userId && t && (await level(a.key, t.receiver, 'inbound-rtp')) > SPEAKING_LEVEL) this.#spokeAt.set(a.userId, now);
		}
		if (this.#closed) return;
		const speaking: Record<string, boolean> = {};
		for (const [uid, at] of this.#spokeAt) if (now - at < SPEAKING_HOLD_MS) speaking[uid] = true;
		const prev = this.#h.ui.speaking;
		const same = Object.keys(prev).length === Object.keys(speaking).length && Object.keys(speaking).every((k) => prev[k]);
		if (!same) this.#h.ui.speaking = speaking;
	}

	/** Round-trip time, loss and decoded frames, every second. */
	async #stats(): Promise<void> {
		const pc = this.#pc;
		if (!pc || this.#closed) return;
		let rtt: number | null = null;
		let lost = 0;
		let received = 0;
		const frames = new Map<string, number>();
		try {
			const report = await pc.getStats();
			report.forEach((s: Record<string, unknown>) => {
				if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && typeof s.currentRoundTripTime === 'number') rtt = s.currentRoundTripTime;
				if (s.type === 'inbound-rtp') {
					lost += Number(s.packetsLost ?? 0);
					received += Number(s.packetsReceived ?? 0);
					if (s.kind === 'video' && typeof s.mid === 'string') frames.set(s.mid, Number(s.framesDecoded ?? 0));
				}
			});
		} catch {
			return;
		}
		const dl = lost - this.#lastLoss.lost;
		const dr = received - this.#lastLoss.received;
		this.#lastLoss = { lost, received };
		const ui = this.#h.ui;
		ui.rttMs = rtt === null ? null : Math.round(rtt * 1000);
		ui.loss = dl + dr > 0 ? Math.max(0, dl) / (dl + dr) : null;
		ui.quality = qualityOf(rtt, ui.loss);
		for (const t of ui.tiles) {
			const f = frames.get(t.key);
			if (f !== undefined && f !== t.framesDecoded) t.framesDecoded = f;
		}
	}

	/** Hangs up: stops every local track, closes the connection and the frame encryption. */
	stop(): void {
		this.#closed = true;
		for (const t of this.#timers) clearInterval(t);
		this.#timers = [];
		if (this.#restartTimer) clearTimeout(this.#restartTimer);
		for (const t of [this.#mic, this.#camera, this.#screen]) t?.stop();
		this.#mic = this.#camera = this.#screen = null;
		this.#pc?.getTransceivers().forEach((t) => t.sender.track?.stop());
		this.#pc?.close();
		this.#pc = null;
		this.#crypto?.close();
		this.#crypto = null;
		this.#remote.clear();
	}
}

function errorText(e: unknown): string {
	if (e instanceof Error) return e.name === 'NotAllowedError' ? 'permission denied' : e.message || e.name;
	return String(e);
}
