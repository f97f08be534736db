/**
 * Listeners of the gateway's dispatched events outside the chat model (the lazily loaded E2EE
 * engine subscribes here). `ready` is reported as an event too (with its payload).
 */
type Listener = (t: string, d: unknown) => void;

const listeners = new Set<Listener>();

/** Subscribes to every dispatched event (and `ready`); returns an unsubscribe function. */
export function onGatewayEvent(fn: Listener): () => void {
	listeners.add(fn);
	return () => listeners.delete(fn);
}

/** Called by the gateway connection for each event. */
export function emitGatewayEvent(t: string, d: unknown): void {
	for (const fn of listeners) {
		try {
			fn(t, d);
		} catch (e) {
			console.warn(`gateway listener failed on ${t}:`, e);
		}
	}
}

let boundDevice: string | null = null;

/** Records the E2EE device named in the gateway's last identify (to_device events reach only it). */
export function setGatewayDevice(deviceId: string | null): void {
	boundDevice = deviceId;
}

/** The E2EE device the gateway connection pushes to_device events for, if any. */
export function gatewayDevice(): string | null {
	return boundDevice;
}
