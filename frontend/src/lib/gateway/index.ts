/**
 * The app's gateway connection: started when the user is signed in, stopped on logout. Events go
 * into the chat model (`$lib/chat/state.svelte`); the connection state drives the reconnecting banner.
 */
import { goto } from '$app/navigation';
import { api } from '$lib/api';
import { applyDispatch, applyReady, chat, nameOf, resetChat } from '$lib/chat/state.svelte';
import { segments } from '$lib/chat/mentions';
import { notifyMessage } from '$lib/notify.svelte';
import type { Message } from '$lib/api';
import { connection, setOnline, setReconnecting } from '$lib/connection.svelte';
import { GatewayClient, gatewayUrl } from './client';
import { bindVoiceGateway, resetVoice, voiceDispatch, voiceReady } from '$lib/voice/lobby.svelte';
import { emitGatewayEvent, setGatewayDevice } from './events';
import { loadAnnouncedServer, loadDms } from '$lib/chat/actions';
import { session } from '$lib/session.svelte';
import { ensureE2ee, stopE2ee, storedDeviceId } from '$lib/e2ee';

export { GatewayClient, backoffDelay, gatewayUrl } from './client';
export type { GatewayOptions, GatewayState, GatewayStatus, SocketLike, Timers } from './client';

let client: GatewayClient | null = null;
let lostHandler: (() => void) | null = null;

/** Extra listeners (lazily loaded features such as the whiteboard): every dispatch, every `ready`. */
const dispatchListeners = new Set<(t: string, d: unknown) => void>();
const readyListeners = new Set<() => void>();

/**
 * Calls `fn` with each dispatched event (after the chat model applied it); returns an unsubscribe
 * function. `onReady` runs after each new gateway session (not after a resume): events may have
 * been missed, so refetch what you show.
 */
export function listenGateway(fn: (t: string, d: unknown) => void, onReady?: () => void): () => void {
	dispatchListeners.add(fn);
	if (onReady) readyListeners.add(onReady);
	return () => {
		dispatchListeners.delete(fn);
		if (onReady) readyListeners.delete(onReady);
	};
}

/** Starts the gateway for the signed-in user; `onAuthLost` runs when the login session is gone. */
export function startGateway(onAuthLost: () => void): void {
	if (client) return;
	lostHandler = onAuthLost;
	client = new GatewayClient({
		url: gatewayUrl(window.location),
		getToken: () => api.gatewayToken(),
		refreshToken: () => api.refreshForGateway(),
		deviceId: () => {
			const id = session.user ? storedDeviceId(session.user.id) : null;
			setGatewayDevice(id);
			return id;
		},
		onReady: (d, sessionId) => {
			applyReady(chat, d);
			voiceReady(chat.meId, sessionId, d);
			emitGatewayEvent('ready', d);
			// A new session starts online: restate the status the user chose.
			if (chat.myStatus !== 'online' || chat.myCustomStatus) {
				client?.send('presence_update', chat.myCustomStatus ? { status: chat.myStatus, custom_status: chat.myCustomStatus } : { status: chat.myStatus });
			}
			for (const fn of readyListeners) fn();
		},
		onDispatch: (t, d) => {
			applyDispatch(chat, t, d);
			if (t === 'server_create') announced(d);
			if (t.startsWith('voice_')) voiceDispatch(t, d);
			emitGatewayEvent(t, d);
			if (t === 'message_create') noteDm((d as { message?: Message } | null)?.message);
			if (t === 'message_create') notifyFor((d as { message?: Message } | null)?.message);
			for (const fn of dispatchListeners) fn(t, d);
		},
		onStatus: (st) => {
			if (st.state === 'ready') {
				if (connection.status !== 'offline') setOnline();
			} else if (st.state === 'reconnecting' && connection.status !== 'offline') {
				setReconnecting(st.attempt, st.retryInMs === null ? null : Math.ceil(st.retryInMs / 1000));
			}
		},
		onAuthLost: () => lostHandler?.()
	});
	bindVoiceGateway((op, fields) => client?.send(op, fields) ?? false);
	client.start();
	window.addEventListener('online', onOnline);
	// This browser's E2EE device: created (first login) or restored now, its keys uploaded. The
	// crypto wasm is a separate chunk, fetched here rather than with the app.
	void ensureE2ee().catch((e) => console.warn('e2ee:', e));
}

/** Back online: retry now rather than after the backoff delay. */
function onOnline(): void {
	client?.nudge();
}

/** Stops the gateway and forgets the chat model (logout). */
export function stopGateway(): void {
	window.removeEventListener('online', onOnline);
	resetVoice();
	client?.stop();
	client = null;
	stopE2ee();
	resetChat();
	setOnline();
}

/** Sends a client op on the live connection; false when not connected. */
export function gatewaySend(op: string, fields: Record<string, unknown> = {}): boolean {
	return client?.send(op, fields) ?? false;
}

/** `server_create` carries the server without its channels and roles: load them if the model has none. */
function announced(d: unknown): void {
	const id = (d as { server?: { id?: unknown } } | null)?.server?.id;
	if (typeof id === 'string') void loadAnnouncedServer(id);
}

/** A message in a DM I do not know yet (someone opened one with me): refresh my DM list. */
function noteDm(m: Message | undefined): void {
	if (!m || m.server_id || typeof m.channel_id !== 'string') return;
	if (chat.dms.some((d) => d.id === m.channel_id) || chat.servers.some((s) => s.channels.some((c) => c.id === m.channel_id))) return;
	void loadDms().catch(() => {});
}

/** A desktop notification for a new message that mentions me or is a DM (when enabled and not on screen). */
function notifyFor(m: Message | undefined): void {
	if (!m || typeof m.channel_id !== 'string') return;
	const server = m.server_id ? chat.servers.find((s) => s.id === m.server_id) : undefined;
	if (m.server_id && !server) return;
	const channel = server?.channels.find((c) => c.id === m.channel_id);
	// A DM's text is end-to-end encrypted: the event carries no plaintext to show.
	const body =
		typeof m.content === 'string'
			? segments(
					m.content,
					(id) => nameOf(chat, id, server?.id),
					(id) => server?.roles.find((r) => r.id === id)?.name ?? null
				)
					.map((p) => p.text)
					.join('')
			: 'New encrypted message';
	const author = nameOf(chat, m.author_id, server?.id);
	notifyMessage(m, {
		meId: chat.meId,
		viewing: chat.viewing,
		title: server ? `${author}${channel ? ` in #${channel.name}` : ''}` : `${author} (direct message)`,
		body,
		href: server ? `/servers/${server.id}/${m.channel_id}` : `/dms/${m.channel_id}`,
		open: (href) => void goto(href)
	});
}
