/**
 * The app's voice state (always loaded, small): who is in which voice channel, incoming DM
 * rings, my call and its controls. The WebRTC engine (`./engine.ts`) is imported only when the
 * user joins a call, so it stays out of the initial bundle.
 */
import * as m from './machine';
import { emptyUi, type VoiceUi } from './ui';
import type { VoiceEngine } from './engine';
import { rememberDmNames } from './names';

/** The reactive voice model (see `./machine.ts`). */
export const voice: m.VoiceModel = $state(m.emptyVoice());
/** The reactive call view (tiles, quality, devices). */
export const voiceUi: VoiceUi = $state(emptyUi());

let send: ((op: string, fields: Record<string, unknown>) => boolean) | null = null;
let engine: VoiceEngine | null = null;
/** The engine being started (controls wait for it). */
let starting: Promise<void> | null = null;

function emit(ops: m.Op[]): void {
	for (const o of ops) send?.(o.op, o.fields);
}

/** Connects the voice model to the gateway (called when the gateway starts). */
export function bindVoiceGateway(sender: (op: string, fields: Record<string, unknown>) => boolean): void {
	send = sender;
}

/** A full `ready`: a new gateway session (a call of the old one is rejoined). */
export function voiceReady(meId: string | null, sessionId: string, d?: Record<string, unknown>): void {
	rememberDmNames(d?.dm_channels);
	if (voice.sessionId === sessionId && voice.meId === meId) return;
	const call = voice.call ? { serverId: voice.call.serverId, channelId: voice.call.channelId } : null;
	const out = m.newSession(voice, meId, sessionId);
	if (out.ended) {
		stopEngine();
		if (call) void joinVoice(call.serverId, call.channelId);
	}
}

/** Gateway events for voice. */
export function voiceDispatch(t: string, d: unknown): void {
	if (t === 'voice_state_update') {
		const out = m.applyVoiceState(voice, d, Date.now());
		emit(out.ops);
		if (out.ended) stopEngine();
		else engine?.membersChanged();
	} else if (t === 'voice_signal') {
		const sig = (d && typeof d === 'object' ? d : {}) as Record<string, unknown>;
		if (engine && sig.channel_id === engine.channelId) engine.onSignal(sig);
		else m.applyVoiceOther(voice, sig); // active speaker of a channel I am not in
	}
}

/** Joins a server voice channel, or starts a DM call (`serverId` null). */
export function joinVoice(serverId: string | null, channelId: string): Promise<void> {
	if (voice.call?.channelId === channelId) return starting ?? Promise.resolve();
	const p = startCall(serverId, channelId).finally(() => {
		if (starting === p) starting = null;
	});
	starting = p;
	return p;
}

/**
 * Closing or leaving the page hangs up (best effort), so others see me leave at once rather than
 * when the SFU notices the dead connection and the server announces the leave.
 */
function onPageHide(): void {
	if (voice.call) hangUp();
}

async function startCall(serverId: string | null, channelId: string): Promise<void> {
	if (voice.call) hangUp();
	if (typeof window !== 'undefined') {
		window.removeEventListener('pagehide', onPageHide);
		window.addEventListener('pagehide', onPageHide);
	}
	emit(m.join(voice, serverId, channelId, Date.now()));
	Object.assign(voiceUi, emptyUi(voiceUi.chosen, voiceUi.volumes));
	const [{ VoiceEngine }, ok] = await Promise.all([import('./engine'), confirmed(channelId)]);
	if (voice.call?.channelId !== channelId) return; // hung up meanwhile
	if (!ok) {
		voiceUi.error = 'The server did not accept the call.';
		emit(m.leave(voice, 'error'));
		return;
	}
	const e = new VoiceEngine({ model: voice, ui: voiceUi, send: (o) => emit([o]), end: (reason) => endCall(reason) }, channelId);
	engine = e;
	await e.start();
	if (engine === e) e.membersChanged();
}

/**
 * Waits for the gateway's echo of my join (a DM opened a moment ago may not be in my session's
 * scope yet: the join is then dropped, so it is sent again), up to 5 s.
 */
async function confirmed(channelId: string): Promise<boolean> {
	for (let i = 0; i < 25; i++) {
		const c = voice.call;
		if (!c || c.channelId !== channelId) return false;
		if (c.confirmed) return true;
		if (i > 0 && i % 5 === 0) emit([m.stateOp(voice)]);
		await new Promise((r) => setTimeout(r, 200));
	}
	return false;
}

function stopEngine(): void {
	engine?.stop();
	engine = null;
	Object.assign(voiceUi, emptyUi(voiceUi.chosen, voiceUi.volumes));
}

function endCall(reason: m.EndReason): void {
	const why = voiceUi.error;
	emit(m.leave(voice, reason));
	stopEngine();
	// Say why a call was lost (the notice shows it).
	if (reason !== 'hangup') voiceUi.error = why;
}

/** Hangs up: leaves voice and releases the camera and microphone. */
export function hangUp(): void {
	endCall('hangup');
}

/** Accepts a DM call ringing me. */
export function acceptRing(channelId: string): Promise<void> {
	if (voice.call) hangUp();
	return joinVoice(null, channelId);
}

/** Declines a DM call ringing me. */
export function declineRing(channelId: string): void {
	emit(m.decline(voice, channelId));
}

/** Mute or unmute my microphone. */
export function toggleMute(): void {
	emit(m.setSelf(voice, voice.selfDeaf ? { selfDeaf: false, selfMute: false } : { selfMute: !voice.selfMute }));
	engine?.applyMute();
}

/** Deafen (hear nothing, and muted) or undeafen. */
export function toggleDeafen(): void {
	emit(m.setSelf(voice, { selfDeaf: !voice.selfDeaf }));
	engine?.applyMute();
}

async function withBusy(fn: () => Promise<void>): Promise<void> {
	if (starting) await starting;
	if (!engine || voiceUi.busy) return;
	voiceUi.busy = true;
	voiceUi.error = null;
	try {
		await fn();
	} catch (e) {
		voiceUi.error = e instanceof Error ? (e.name === 'NotAllowedError' ? 'Permission denied.' : e.message || e.name) : String(e);
	} finally {
		voiceUi.busy = false;
	}
}

/** Camera on/off. */
export function toggleCamera(): Promise<void> {
	return withBusy(async () => {
		const on = await (engine as VoiceEngine).setCamera(!voice.selfVideo);
		emit(m.setSelf(voice, { selfVideo: on }));
	});
}

/** Screen share on/off. */
export function toggleScreen(): Promise<void> {
	const stopped = () => {
		void engine?.setScreen(false).then(() => emit(m.setSelf(voice, { selfStream: false })));
	};
	return withBusy(async () => {
		const want = !voice.selfStream;
		// Say it first, so others label the new video track as a screen share.
		if (want) emit(m.setSelf(voice, { selfStream: true }));
		const on = await (engine as VoiceEngine).setScreen(want, stopped).catch((e) => {
			emit(m.setSelf(voice, { selfStream: false }));
			throw e;
		});
		emit(m.setSelf(voice, { selfStream: on }));
	});
}

/** Picks the microphone, camera or speaker. */
export function chooseDevice(kind: 'audioinput' | 'videoinput' | 'audiooutput', id: string): Promise<void> {
	if (kind === 'audiooutput' || !engine) {
		voiceUi.chosen[kind] = id;
		return Promise.resolve();
	}
	return withBusy(() => (engine as VoiceEngine).setDevice(kind, id));
}

/** Playback volume of one user (0–1). */
export function setVolume(userId: string, v: number): void {
	voiceUi.volumes[userId] = Math.min(1, Math.max(0, v));
}

/** Tells the SFU how large a user's video is shown. */
export function setView(userId: string, size: 'tile' | 'focus' | 'hidden'): void {
	engine?.setView(userId, size);
}

/** Logout: hang up and forget everything. */
export function resetVoice(): void {
	if (voice.call) hangUp();
	Object.assign(voice, m.emptyVoice());
	send = null;
}

export { inChannel } from './machine';
