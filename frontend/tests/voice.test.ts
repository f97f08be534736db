import { describe, expect, it } from 'vitest';
import {
	accept,
	applyVoiceOther,
	applyVoiceState,
	connectionChanged,
	decline,
	emptyVoice,
	heard,
	inChannel,
	join,
	leave,
	newSession,
	qualityOf,
	RING_REPEAT_MS,
	RING_TIMEOUT_MS,
	setSelf,
	streamIdOf,
	tick,
	userOfStream,
	videoKindOf,
	type VoiceModel
} from '../src/lib/voice/machine';

const ME = '100';
const BOB = '200';
const CAROL = '300';
const DM = '900';
const SERVER = '1';
const LOUNGE = '10';

function model(): VoiceModel {
	const s = emptyVoice();
	newSession(s, ME, 'sess-me');
	return s;
}

function state(user: string, server: string | null, channel: string | null, extra: Record<string, unknown> = {}) {
	return { server_id: server, channel_id: channel, user_id: user, session_id: `sess-${user}`, self_mute: false, self_deaf: false, self_video: false, self_stream: false, ...extra };
}

describe('voice machine: server channels', () => {
	it('joins with one state frame and is confirmed by the echo', () => {
		const s = model();
		const ops = join(s, SERVER, LOUNGE, 0);
		expect(ops).toEqual([
			{ op: 'voice_state_update', fields: { server_id: SERVER, channel_id: LOUNGE, self_mute: false, self_deaf: false, self_video: false, self_stream: false } }
		]);
		expect(s.call?.phase).toBe('connecting');
		expect(s.call?.confirmed).toBe(false);
		applyVoiceState(s, { ...state(ME, SERVER, LOUNGE), session_id: 'sess-me' }, 1);
		expect(s.call?.confirmed).toBe(true);
		expect(inChannel(s, LOUNGE)).toEqual([ME]);
	});

	it('restates my voice state when someone new joins my channel, not when they only change flags', () => {
		const s = model();
		join(s, SERVER, LOUNGE, 0);
		const first = applyVoiceState(s, state(BOB, SERVER, LOUNGE), 1);
		expect(first.ops).toHaveLength(1);
		expect(first.ops[0].fields.channel_id).toBe(LOUNGE);
		const again = applyVoiceState(s, state(BOB, SERVER, LOUNGE, { self_mute: true }), 2);
		expect(again.ops).toHaveLength(0);
		expect(s.members[BOB]?.mute).toBe(true);
		expect(inChannel(s, LOUNGE).sort()).toEqual([ME, BOB].sort());
	});

	it('tracks other channels without restating, and forgets who left', () => {
		const s = model();
		join(s, SERVER, LOUNGE, 0);
		expect(applyVoiceState(s, state(BOB, SERVER, '11'), 1).ops).toEqual([]);
		expect(inChannel(s, '11')).toEqual([BOB]);
		applyVoiceState(s, state(BOB, SERVER, null), 2);
		expect(inChannel(s, '11')).toEqual([]);
		expect(s.call?.channelId).toBe(LOUNGE); // someone leaving a server channel does not end my call
	});

	it('mute, deafen, camera and screen flags go out as state frames; deafened implies muted', () => {
		const s = model();
		expect(setSelf(s, { selfMute: true })).toEqual([]); // not in a call: nothing to send
		join(s, SERVER, LOUNGE, 0);
		expect(s.members[ME]?.mute).toBe(true);
		const [op] = setSelf(s, { selfMute: false, selfDeaf: true });
		expect(op.fields).toMatchObject({ self_mute: true, self_deaf: true });
		const [cam] = setSelf(s, { selfVideo: true });
		expect(cam.fields).toMatchObject({ self_video: true, self_stream: false });
		expect(s.members[ME]?.video).toBe(true);
	});

	it('hanging up sends the leave frame and resets camera and screen', () => {
		const s = model();
		join(s, SERVER, LOUNGE, 0);
		setSelf(s, { selfVideo: true, selfStream: true });
		const ops = leave(s);
		expect(ops[0].fields).toEqual({ server_id: SERVER, channel_id: null, self_mute: false, self_deaf: false, self_video: false, self_stream: false });
		expect(s.call).toBeNull();
		expect(s.lastEnd).toBe('hangup');
		expect(s.selfVideo).toBe(false);
		expect(inChannel(s, LOUNGE)).toEqual([]);
		expect(leave(s)).toEqual([]);
	});

	it('follows the connection, the SFU reconnect request, errors and the active speaker', () => {
		const s = model();
		join(s, SERVER, LOUNGE, 0);
		connectionChanged(s, 'connected');
		expect(s.call?.phase).toBe('connected');
		connectionChanged(s, 'disconnected');
		expect(s.call?.phase).toBe('reconnecting');
		expect(applyVoiceOther(s, { channel_id: LOUNGE, kind: 'other', data: { reconnect: true } })).toEqual({ reoffer: true, error: null });
		expect(applyVoiceOther(s, { channel_id: LOUNGE, kind: 'other', data: { error: 'missing_permission', message: 'nope' } }).error).toBe('missing_permission');
		expect(s.call?.error).toBe('nope');
		applyVoiceOther(s, { channel_id: '11', kind: 'other', data: { active_speaker: BOB } });
		expect(s.activeSpeaker['11']).toBe(BOB);
		applyVoiceOther(s, { channel_id: '11', kind: 'other', data: { active_speaker: null } });
		expect(s.activeSpeaker['11']).toBeNull();
	});

	it('a new gateway session ends the call (the server forgot the old session’s voice state)', () => {
		const s = model();
		join(s, SERVER, LOUNGE, 0);
		expect(newSession(s, ME, 'sess-2').ended).toBe('error');
		expect(s.call).toBeNull();
		expect(newSession(s, ME, 'sess-3').ended).toBeNull();
	});

	it('ignores malformed events', () => {
		const s = model();
		expect(applyVoiceState(s, null, 0)).toEqual({ ops: [], ended: null });
		expect(applyVoiceState(s, { channel_id: LOUNGE }, 0)).toEqual({ ops: [], ended: null });
		expect(applyVoiceOther(s, 'x')).toEqual({ reoffer: false, error: null });
	});
});

describe('voice machine: DM calls', () => {
	it('an outgoing DM call rings until someone joins', () => {
		const s = model();
		join(s, null, DM, 0);
		expect(s.call?.phase).toBe('ringing');
		expect(s.call?.outgoing).toBe(true);
		const out = applyVoiceState(s, state(BOB, null, DM), 1000);
		expect(s.call?.phase).toBe('connecting');
		expect(out.ops).toHaveLength(1); // restate for bob
		expect(s.rings).toEqual([]); // my own call is not a ring
		expect(tick(s, 10 * RING_REPEAT_MS).ops).toEqual([]); // answered: no more rings
	});

	it('an unanswered ring rings again every few seconds and gives up after the timeout', () => {
		const s = model();
		join(s, null, DM, 0);
		expect(tick(s, RING_REPEAT_MS - 1).ops).toEqual([]);
		const again = tick(s, RING_REPEAT_MS);
		expect(again.ops).toHaveLength(1);
		expect(again.ops[0].fields).toMatchObject({ server_id: null, channel_id: DM });
		expect(tick(s, RING_REPEAT_MS + 1).ops).toEqual([]);
		expect(tick(s, RING_TIMEOUT_MS - 1).ended).toBeNull();
		const out = tick(s, RING_TIMEOUT_MS);
		expect(out.ended).toBe('unanswered');
		expect(out.ops[0].fields.channel_id).toBeNull();
		expect(s.call).toBeNull();
	});

	it('rings me when someone calls, until they leave', () => {
		const s = model();
		applyVoiceState(s, state(BOB, null, DM), 5);
		expect(s.rings).toEqual([{ channelId: DM, fromUserId: BOB, since: 5 }]);
		applyVoiceState(s, state(BOB, null, DM, { self_mute: true }), 6);
		expect(s.rings).toHaveLength(1);
		applyVoiceState(s, state(BOB, null, null), 7);
		expect(s.rings).toEqual([]);
	});

	it('a server channel never rings', () => {
		const s = model();
		applyVoiceState(s, state(BOB, SERVER, LOUNGE), 5);
		expect(s.rings).toEqual([]);
	});

	it('accepting joins the DM call (connecting, not ringing) and stops the ring', () => {
		const s = model();
		applyVoiceState(s, state(BOB, null, DM), 0);
		const ops = accept(s, DM, 10);
		expect(ops).toHaveLength(1);
		expect(ops[0].fields).toMatchObject({ server_id: null, channel_id: DM });
		expect(s.call?.phase).toBe('connecting');
		expect(s.call?.outgoing).toBe(false);
		expect(s.rings).toEqual([]);
	});

	it('another of my sessions answering stops the ring here', () => {
		const s = model();
		applyVoiceState(s, state(BOB, null, DM), 0);
		applyVoiceState(s, { ...state(ME, null, DM), session_id: 'other-tab' }, 1);
		expect(s.rings).toEqual([]);
		expect(s.call).toBeNull();
	});

	it('declining blips join+leave, and the caller’s restate does not ring again', () => {
		const s = model();
		applyVoiceState(s, state(BOB, null, DM), 0);
		const ops = decline(s, DM);
		expect(ops.map((o) => o.fields.channel_id)).toEqual([DM, null]);
		expect(s.rings).toEqual([]);
		applyVoiceState(s, state(BOB, null, DM), 1); // bob restates after seeing my blip
		expect(s.rings).toEqual([]);
		// Bob gives up; his next call rings again.
		applyVoiceState(s, state(BOB, null, null), 2);
		applyVoiceState(s, state(BOB, null, DM), 3);
		expect(s.rings).toHaveLength(1);
	});

	it('declining while in another call only dismisses the ring', () => {
		const s = model();
		join(s, SERVER, LOUNGE, 0);
		applyVoiceState(s, state(BOB, null, DM), 1);
		expect(s.rings).toHaveLength(1);
		expect(decline(s, DM)).toEqual([]);
		expect(s.call?.channelId).toBe(LOUNGE);
	});

	it('the caller sees a decline: the callee left before any of their media arrived', () => {
		const s = model();
		join(s, null, DM, 0);
		applyVoiceState(s, state(BOB, null, DM, { self_mute: true, self_deaf: true }), 1);
		const out = applyVoiceState(s, state(BOB, null, null), 2);
		expect(out.ended).toBe('declined');
		expect(s.call).toBeNull();
		expect(s.lastEnd).toBe('declined');
		expect(out.ops.at(-1)?.fields.channel_id).toBeNull();
	});

	it('a 1:1 call ends when the other, who was heard, leaves', () => {
		const s = model();
		join(s, null, DM, 0);
		applyVoiceState(s, state(BOB, null, DM), 1);
		heard(s, BOB);
		expect(applyVoiceState(s, state(BOB, null, null), 2).ended).toBe('left');
	});

	it('a group call goes on while someone else is still there', () => {
		const s = model();
		join(s, null, DM, 0);
		applyVoiceState(s, state(BOB, null, DM), 1);
		applyVoiceState(s, state(CAROL, null, DM), 1);
		expect(applyVoiceState(s, state(BOB, null, null), 2).ended).toBeNull();
		expect(s.call?.channelId).toBe(DM);
	});
});

describe('voice machine: media mapping and quality', () => {
	it('stream ids are the SFU’s FNV-1a participant ids (src/voice.rs participant_of)', () => {
		// FNV-1a 64 of "" is the offset basis; of "a" is 0xaf63dc4c8601ec8c.
		expect(streamIdOf('')).toBe(`p${0xcbf29ce484222325n}`);
		expect(streamIdOf('a')).toBe(`p${0xaf63dc4c8601ec8cn}`);
	});

	it('maps a received stream to the user whose session sent it, in my channel only', () => {
		const s = model();
		join(s, SERVER, LOUNGE, 0);
		applyVoiceState(s, state(BOB, SERVER, LOUNGE), 1);
		applyVoiceState(s, state(CAROL, SERVER, '11'), 1);
		expect(userOfStream(s, LOUNGE, streamIdOf('sess-200'))).toBe(BOB);
		expect(userOfStream(s, LOUNGE, streamIdOf('sess-300'))).toBeNull();
		expect(userOfStream(s, LOUNGE, 'p1')).toBeNull();
	});

	it('labels a new video track as screen or camera from the sender’s flags', () => {
		const m = { serverId: null, channelId: DM, sessionId: 'x', mute: false, deaf: false, video: false, stream: false };
		expect(videoKindOf({ ...m, video: true }, { camera: 0, screen: 0 })).toBe('camera');
		expect(videoKindOf({ ...m, stream: true }, { camera: 0, screen: 0 })).toBe('screen');
		expect(videoKindOf({ ...m, video: true, stream: true }, { camera: 0, screen: 0 })).toBe('camera');
		expect(videoKindOf({ ...m, video: true, stream: true }, { camera: 1, screen: 0 })).toBe('screen');
		expect(videoKindOf({ ...m, video: true, stream: true }, { camera: 0, screen: 1 })).toBe('camera');
		expect(videoKindOf(undefined, { camera: 0, screen: 0 })).toBe('camera');
	});

	it('grades the connection', () => {
		expect(qualityOf(null, null)).toBe('unknown');
		expect(qualityOf(0.03, 0)).toBe('good');
		expect(qualityOf(0.2, 0)).toBe('fair');
		expect(qualityOf(0.03, 0.05)).toBe('fair');
		expect(qualityOf(0.5, 0)).toBe('poor');
		expect(qualityOf(null, 0.2)).toBe('poor');
	});
});
