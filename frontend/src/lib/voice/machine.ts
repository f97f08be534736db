/**
 * The call state machine: who is in which voice channel or DM call, the call I am in, incoming
 * rings, and what to tell the gateway. Plain functions of a plain {@link VoiceModel} (no DOM, no
 * WebRTC), so unit tests drive it with gateway events; the app keeps the model in `$state`
 * (`./lobby.svelte.ts`) and the peer-connection glue (`./engine.ts`) follows it.
 *
 * Protocol (docs/gateway.md, "Voice in copains serve"): joining or leaving is a
 * `voice_state_update {server_id, channel_id, self_mute, self_deaf, self_video, self_stream}`;
 * for a DM call `server_id` is null and the DM's recipients receive my state: that is the ring.
 *
 * Two conventions of this client, because `ready` carries no voice states and the protocol has no
 * "decline": (1) when someone new joins my channel I restate my own voice state, so the newcomer
 * learns who is already there; (2) declining a DM call is a join immediately followed by a leave
 * (sent only when I am in no call), and a caller whose DM call loses its last other participant
 * before any of their media arrived reports the call as declined.
 */

/** A `voice_state_update` as dispatched by the gateway. */
export interface VoiceStateEvent {
	server_id: string | null;
	channel_id: string | null;
	user_id: string;
	session_id: string;
	self_mute: boolean;
	self_deaf: boolean;
	self_video: boolean;
	self_stream: boolean;
}

/** What everyone sees of one user in voice. */
export interface VoiceMember {
	serverId: string | null;
	channelId: string;
	sessionId: string;
	mute: boolean;
	deaf: boolean;
	video: boolean;
	stream: boolean;
}

/** Where my call stands. */
export type CallPhase = 'ringing' | 'connecting' | 'connected' | 'reconnecting';

/** Why a call ended (shown once after it ends). */
export type EndReason = 'hangup' | 'declined' | 'unanswered' | 'left' | 'error' | 'kicked';

/** The call I am in. */
export interface Call {
	serverId: string | null;
	channelId: string;
	phase: CallPhase;
	/** Unix ms when I joined. */
	since: number;
	/** A DM call I started: ringing until someone joins or `ringUntil` passes. */
	outgoing: boolean;
	/** Unix ms after which an unanswered outgoing ring gives up. */
	ringUntil: number;
	/** Unix ms when my ringing state is sent again (a recipient whose gateway learnt of a new DM
	 * only after my first frame would otherwise never ring). */
	ringAgainAt: number;
	/** Others whose media reached me at least once (answered, for the decline rule). */
	heard: string[];
	/** Last error shown in the call view (e.g. missing permission). */
	error: string | null;
	/** The gateway echoed my join (it accepted it: signalling may start). */
	confirmed: boolean;
}

/** A DM call ringing me. */
export interface Ring {
	channelId: string;
	fromUserId: string;
	since: number;
}

/** The whole voice model. */
export interface VoiceModel {
	meId: string | null;
	/** My gateway session id (voice states of my other sessions are not this call). */
	sessionId: string | null;
	/** Voice states by user id (only users in voice). */
	members: Record<string, VoiceMember | undefined>;
	call: Call | null;
	rings: Ring[];
	/** DM channels whose current ring I declined (ignored until the caller leaves). */
	declined: string[];
	selfMute: boolean;
	selfDeaf: boolean;
	selfVideo: boolean;
	selfStream: boolean;
	/** The SFU's active speaker per channel. */
	activeSpeaker: Record<string, string | null | undefined>;
	/** How the last call ended (cleared when a new one starts). */
	lastEnd: EndReason | null;
}

/** A frame to send on the gateway. */
export interface Op {
	op: 'voice_state_update' | 'voice_signal';
	fields: Record<string, unknown>;
}

/** How long an outgoing DM call rings before giving up. */
export const RING_TIMEOUT_MS = 45_000;
/** How often an unanswered outgoing DM call restates itself (rings again where it did not). */
export const RING_REPEAT_MS = 2_000;

/** A fresh model. */
export function emptyVoice(): VoiceModel {
	return {
		meId: null,
		sessionId: null,
		members: {},
		call: null,
		rings: [],
		declined: [],
		selfMute: false,
		selfDeaf: false,
		selfVideo: false,
		selfStream: false,
		activeSpeaker: {},
		lastEnd: null
	};
}

/** My voice state frame for the current call (or a leave frame when none). */
export function stateOp(s: VoiceModel): Op {
	return {
		op: 'voice_state_update',
		fields: {
			server_id: s.call?.serverId ?? null,
			channel_id: s.call?.channelId ?? null,
			self_mute: s.selfMute || s.selfDeaf,
			self_deaf: s.selfDeaf,
			self_video: !!s.call && s.selfVideo,
			self_stream: !!s.call && s.selfStream
		}
	};
}

/** Starts a call in a server voice channel (`serverId`) or a DM (`serverId` null: it rings). */
export function join(s: VoiceModel, serverId: string | null, channelId: string, now: number): Op[] {
	s.call = {
		serverId,
		channelId,
		phase: 'connecting',
		since: now,
		outgoing: false,
		ringUntil: 0,
		ringAgainAt: 0,
		heard: [],
		error: null,
		confirmed: false
	};
	if (serverId === null) {
		const others = othersIn(s, channelId);
		if (others.length === 0) {
			s.call.phase = 'ringing';
			s.call.outgoing = true;
			s.call.ringUntil = now + RING_TIMEOUT_MS;
			s.call.ringAgainAt = now + RING_REPEAT_MS;
		}
	}
	s.selfVideo = false;
	s.selfStream = false;
	s.lastEnd = null;
	s.rings = s.rings.filter((r) => r.channelId !== channelId);
	if (s.meId) setMember(s, s.meId, { serverId, channelId, sessionId: s.sessionId ?? '', mute: s.selfMute, deaf: s.selfDeaf, video: false, stream: false });
	return [stateOp(s)];
}

/** Ends my call (hang up, or the call ended for `reason`); returns the leave frame. */
export function leave(s: VoiceModel, reason: EndReason = 'hangup'): Op[] {
	if (!s.call) return [];
	// The leave names the server I leave: the gateway tells that server's members.
	const serverId = s.call.serverId;
	s.call = null;
	s.selfVideo = false;
	s.selfStream = false;
	s.lastEnd = reason;
	if (s.meId) delete s.members[s.meId];
	const op = stateOp(s);
	op.fields.server_id = serverId;
	return [op];
}

/** Accepts a ring: joins that DM call. */
export function accept(s: VoiceModel, channelId: string, now: number): Op[] {
	const ops = s.call ? leave(s, 'hangup') : [];
	return [...ops, ...join(s, null, channelId, now)];
}

/**
 * Declines a ring. When I am in no call, the caller is told with a join immediately followed by
 * a leave; otherwise the ring is only dismissed here.
 */
export function decline(s: VoiceModel, channelId: string): Op[] {
	s.rings = s.rings.filter((r) => r.channelId !== channelId);
	if (!s.declined.includes(channelId)) s.declined.push(channelId);
	if (s.call) return [];
	const blip = (channel: string | null): Op => ({
		op: 'voice_state_update',
		fields: { server_id: null, channel_id: channel, self_mute: true, self_deaf: true, self_video: false, self_stream: false }
	});
	return [blip(channelId), blip(null)];
}

/** Users other than me in a voice channel. */
export function othersIn(s: VoiceModel, channelId: string): string[] {
	return Object.entries(s.members)
		.filter(([uid, m]) => m && m.channelId === channelId && uid !== s.meId)
		.map(([uid]) => uid);
}

/** Everyone in a voice channel (me included when I am there), for the sidebar and the grid. */
export function inChannel(s: VoiceModel, channelId: string): string[] {
	return Object.entries(s.members)
		.filter(([, m]) => m && m.channelId === channelId)
		.map(([uid]) => uid);
}

function setMember(s: VoiceModel, userId: string, m: VoiceMember): void {
	s.members[userId] = m;
}

function parseState(raw: unknown): VoiceStateEvent | null {
	if (!raw || typeof raw !== 'object') return null;
	const d = raw as Record<string, unknown>;
	const str = (v: unknown) => (typeof v === 'string' ? v : null);
	const user = str(d.user_id);
	if (!user) return null;
	return {
		server_id: str(d.server_id),
		channel_id: str(d.channel_id),
		user_id: user,
		session_id: str(d.session_id) ?? '',
		self_mute: d.self_mute === true,
		self_deaf: d.self_deaf === true,
		self_video: d.self_video === true,
		self_stream: d.self_stream === true
	};
}

/** Result of applying an event: frames to send, and whether my call just ended (and why). */
export interface Outcome {
	ops: Op[];
	ended: EndReason | null;
}

/** Applies a dispatched `voice_state_update`. */
export function applyVoiceState(s: VoiceModel, raw: unknown, now: number): Outcome {
	const out: Outcome = { ops: [], ended: null };
	const d = parseState(raw);
	if (!d) return out;
	const mine = d.user_id === s.meId;
	if (mine && d.session_id === s.sessionId) {
		// My own echo: the gateway accepted the join.
		if (s.call && d.channel_id === s.call.channelId) s.call.confirmed = true;
		return out;
	}
	if (mine) {
		// Another of my sessions: it answered a ring there, or it is in voice elsewhere.
		if (d.channel_id) s.rings = s.rings.filter((r) => r.channelId !== d.channel_id);
		if (!s.call) {
			if (d.channel_id) setMember(s, d.user_id, memberOf(d, d.channel_id));
			else delete s.members[d.user_id];
		}
		return out;
	}
	const before = s.members[d.user_id];
	if (d.channel_id) setMember(s, d.user_id, memberOf(d, d.channel_id));
	else delete s.members[d.user_id];
	const call = s.call;

	// Rings: a DM call I am not in.
	if (d.server_id === null && d.channel_id && call?.channelId !== d.channel_id) {
		if (!s.declined.includes(d.channel_id) && !s.rings.some((r) => r.channelId === d.channel_id)) {
			s.rings.push({ channelId: d.channel_id, fromUserId: d.user_id, since: now });
		}
	}
	// The caller left (or moved): that ring stops, and a later call may ring again.
	if (before && before.channelId !== d.channel_id) {
		const left = before.channelId;
		if (othersIn(s, left).length === 0) {
			s.rings = s.rings.filter((r) => r.channelId !== left);
			s.declined = s.declined.filter((c) => c !== left);
		} else {
			s.rings = s.rings.filter((r) => !(r.channelId === left && r.fromUserId === d.user_id));
		}
	}

	if (!call) return out;
	const joinedMine = d.channel_id === call.channelId && before?.channelId !== call.channelId;
	const leftMine = before?.channelId === call.channelId && d.channel_id !== call.channelId;
	if (joinedMine) {
		// Tell the newcomer I am here (`ready` carries no voice states).
		out.ops.push(stateOp(s));
		if (call.phase === 'ringing') call.phase = 'connecting';
	}
	if (leftMine && call.serverId === null && othersIn(s, call.channelId).length === 0) {
		// A DM call whose last other participant left: it is over for me too.
		const reason: EndReason = call.heard.includes(d.user_id) ? 'left' : 'declined';
		out.ops.push(...leave(s, reason));
		out.ended = reason;
	}
	return out;
}

function memberOf(d: VoiceStateEvent, channelId: string): VoiceMember {
	return {
		serverId: d.server_id,
		channelId,
		sessionId: d.session_id,
		mute: d.self_mute,
		deaf: d.self_deaf,
		video: d.self_video,
		stream: d.self_stream
	};
}

/** Applies a dispatched `voice_signal` that is not SDP: active speaker, errors, reconnect. */
export function applyVoiceOther(s: VoiceModel, raw: unknown): { reoffer: boolean; error: string | null } {
	const d = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
	const channel = typeof d.channel_id === 'string' ? d.channel_id : null;
	const data = (d.data && typeof d.data === 'object' ? d.data : {}) as Record<string, unknown>;
	if (!channel) return { reoffer: false, error: null };
	if ('active_speaker' in data) {
		s.activeSpeaker[channel] = typeof data.active_speaker === 'string' ? data.active_speaker : null;
		return { reoffer: false, error: null };
	}
	if (!s.call || s.call.channelId !== channel) return { reoffer: false, error: null };
	if (data.reconnect === true) {
		s.call.phase = 'reconnecting';
		return { reoffer: true, error: null };
	}
	if (typeof data.error === 'string') {
		const message = typeof data.message === 'string' ? data.message : data.error;
		s.call.error = message;
		return { reoffer: false, error: data.error };
	}
	return { reoffer: false, error: null };
}

/** Media of `userId` reached me in the current call (they answered). */
export function heard(s: VoiceModel, userId: string): void {
	if (s.call && !s.call.heard.includes(userId)) s.call.heard.push(userId);
}

/** The peer connection's state changed. */
export function connectionChanged(s: VoiceModel, state: RTCPeerConnectionState | string): void {
	if (!s.call) return;
	if (state === 'connected') {
		if (s.call.phase !== 'ringing') s.call.phase = 'connected';
	} else if (state === 'disconnected' || state === 'failed') {
		s.call.phase = 'reconnecting';
	}
}

/** Time passes: an unanswered outgoing ring rings again, and gives up after a while. */
export function tick(s: VoiceModel, now: number): Outcome {
	const call = s.call;
	if (call?.phase === 'ringing' && call.outgoing) {
		if (now >= call.ringUntil) return { ops: leave(s, 'unanswered'), ended: 'unanswered' };
		if (now >= call.ringAgainAt) {
			call.ringAgainAt = now + RING_REPEAT_MS;
			return { ops: [stateOp(s)], ended: null };
		}
	}
	return { ops: [], ended: null };
}

/** Sets my mute / deafen / camera / screen flags; returns the state frame when in a call. */
export function setSelf(s: VoiceModel, flags: Partial<Pick<VoiceModel, 'selfMute' | 'selfDeaf' | 'selfVideo' | 'selfStream'>>): Op[] {
	Object.assign(s, flags);
	if (!s.call) return [];
	if (s.meId) {
		const m = s.members[s.meId];
		if (m) Object.assign(m, { mute: s.selfMute || s.selfDeaf, deaf: s.selfDeaf, video: s.selfVideo, stream: s.selfStream });
	}
	return [stateOp(s)];
}

/** The gateway session changed (new `ready`): voice states of the old session are gone. */
export function newSession(s: VoiceModel, meId: string | null, sessionId: string | null): Outcome {
	const out: Outcome = { ops: [], ended: null };
	const hadCall = !!s.call;
	s.meId = meId;
	s.sessionId = sessionId;
	s.members = {};
	s.rings = [];
	s.activeSpeaker = {};
	if (hadCall) {
		// The server forgot my voice state with the old session: the call cannot continue.
		s.call = null;
		s.selfVideo = false;
		s.selfStream = false;
		s.lastEnd = 'error';
		out.ended = 'error';
	}
	return out;
}

/**
 * The SFU labels each forwarded track's stream `p<n>`, n being the FNV-1a hash (64-bit) of the
 * publisher's gateway session id (src/voice.rs `participant_of`). Returns that label.
 */
export function streamIdOf(sessionId: string): string {
	let h = 0xcbf29ce484222325n;
	for (const b of new TextEncoder().encode(sessionId)) {
		h ^= BigInt(b);
		h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
	}
	return `p${h}`;
}

/** The user whose stream id (from a received track) this is, among the members of a channel. */
export function userOfStream(s: VoiceModel, channelId: string, streamId: string): string | null {
	for (const [uid, m] of Object.entries(s.members)) {
		if (m && m.channelId === channelId && m.sessionId && streamIdOf(m.sessionId) === streamId) return uid;
	}
	return null;
}

/**
 * Whether a newly received video track of a user is their screen share or their camera: it is the
 * screen when they say they share one, and it is not already shown, and their camera is off or
 * already shown.
 */
export function videoKindOf(member: VoiceMember | undefined, shown: { camera: number; screen: number }): 'camera' | 'screen' {
	if (member?.stream && shown.screen === 0 && (!member.video || shown.camera > 0)) return 'screen';
	return 'camera';
}

/** Connection quality from round-trip time (seconds) and the fraction of packets lost. */
export type Quality = 'good' | 'fair' | 'poor' | 'unknown';

/** Grades a connection: good under 150 ms and 2 % loss, poor over 400 ms or 10 % loss. */
export function qualityOf(rttSeconds: number | null, lossFraction: number | null): Quality {
	if (rttSeconds === null && lossFraction === null) return 'unknown';
	const rtt = rttSeconds ?? 0;
	const loss = lossFraction ?? 0;
	if (rtt > 0.4 || loss > 0.1) return 'poor';
	if (rtt > 0.15 || loss > 0.02) return 'fair';
	return 'good';
}
