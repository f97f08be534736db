/**
 * The app's gateway connection: started when the user is signed in, stopped on logout. Events go
 * into the chat model (`$lib/chat/state.svelte`); the connection state drives the reconnecting banner.
 */
import { api } from '$lib/api';
import { applyDispatch, applyReady, chat, resetChat } from '$lib/chat/state.svelte';
import { connection, setOnline, setReconnecting } from '$lib/connection.svelte';
import { GatewayClient, gatewayUrl } from './client';

export { GatewayClient, backoffDelay, gatewayUrl } from './client';
export type { GatewayOptions, GatewayState, GatewayStatus, SocketLike, Timers } from './client';

let client: GatewayClient | null = null;
let lostHandler: (() => void) | null = null;

/** Starts the gateway for the signed-in user; `onAuthLost` runs when the login session is gone. */
export function startGateway(onAuthLost: () => void): void {
	if (client) return;
	lostHandler = onAuthLost;
	client = new GatewayClient({
		url: gatewayUrl(window.location),
		getToken: () => api.gatewayToken(),
		refreshToken: () => api.refreshForGateway(),
		onReady: (d) => {
			applyReady(chat, d);
			// A new session starts online: restate the status the user chose.
			if (chat.myStatus !== 'online') client?.send('presence_update', { status: chat.myStatus });
		},
		onDispatch: (t, d) => applyDispatch(chat, t, d),
		onStatus: (st) => {
			if (st.state === 'ready') {
				if (connection.status !== 'offline') setOnline();
			} else if (st.state === 'reconnecting' && connection.status !== 'offline') {
				setReconnecting(st.attempt, st.retryInMs === null ? null : Math.ceil(st.retryInMs / 1000));
			}
		},
		onAuthLost: () => lostHandler?.()
	});
	client.start();
}

/** Stops the gateway and forgets the chat model (logout). */
export function stopGateway(): void {
	client?.stop();
	client = null;
	resetChat();
	setOnline();
}

/** Sends a client op on the live connection; false when not connected. */
export function gatewaySend(op: string, fields: Record<string, unknown> = {}): boolean {
	return client?.send(op, fields) ?? false;
}
