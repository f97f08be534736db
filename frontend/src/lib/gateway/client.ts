/**
 * The gateway client: one WebSocket to `/gateway` (protocol: signaling/README.md).
 *
 * hello → identify {token} (the token travels only in this frame, never in the URL) → ready →
 * dispatch {s, t, d}…, with heartbeats every `heartbeat_interval_ms`. After a drop it reconnects
 * with exponential backoff and resumes {token, session_id, seq}; `invalid_session` makes it
 * identify again on the same connection; close 4004 (token refused) refreshes the token first.
 *
 * It holds no Svelte state: the WebSocket constructor, timers and token source are injected, so
 * the unit tests drive it with a fake socket and fake clocks.
 */

/** The subset of the browser `WebSocket` the client uses (a fake implements it in tests). */
export interface SocketLike {
	readonly readyState: number;
	onopen: ((ev: unknown) => void) | null;
	onmessage: ((ev: { data: unknown }) => void) | null;
	onclose: ((ev: { code: number; reason?: string }) => void) | null;
	onerror: ((ev: unknown) => void) | null;
	send(data: string): void;
	close(code?: number, reason?: string): void;
}

/** Timers the client uses (the global ones by default). */
export interface Timers {
	/** Runs `fn` once after `ms`. */
	setTimeout(fn: () => void, ms: number): unknown;
	/** Cancels a `setTimeout`. */
	clearTimeout(id: unknown): void;
	/** Runs `fn` every `ms`. */
	setInterval(fn: () => void, ms: number): unknown;
	/** Cancels a `setInterval`. */
	clearInterval(id: unknown): void;
}

/** Where the connection stands. */
export type GatewayState = 'idle' | 'connecting' | 'ready' | 'reconnecting' | 'stopped';

/** A status report: the state, the reconnect attempt (1-based) and the delay before it. */
export interface GatewayStatus {
	state: GatewayState;
	attempt: number;
	retryInMs: number | null;
}

/** Options of {@link GatewayClient}. */
export interface GatewayOptions {
	/** The `ws:`/`wss:` URL of `/gateway`. */
	url: string;
	/** Opens a socket (default `new WebSocket(url)`). */
	connect?: (url: string) => SocketLike;
	/** The current access token (refreshing through the cookie if none is in memory); null when signed out. */
	getToken: () => Promise<string | null>;
	/** Refreshes the token after a 4004; null when the session is gone. */
	refreshToken: () => Promise<string | null>;
	/** This browser's E2EE device id, named in `identify` so `to_device` events reach it (optional). */
	deviceId?: () => string | null;
	/** A full `ready`: the payload and the new session id. */
	onReady: (d: Record<string, unknown>, sessionId: string) => void;
	/** A dispatched event (not `noop`), each sequence number once, in order. */
	onDispatch: (t: string, d: unknown) => void;
	/** The session was resumed: missed events were replayed through `onDispatch`. */
	onResumed?: () => void;
	/** State changes, for the reconnecting banner. */
	onStatus?: (status: GatewayStatus) => void;
	/** The login session was revoked or cannot be refreshed: the client stopped. */
	onAuthLost?: () => void;
	/** Timers (default the global ones; fakes in tests). */
	timers?: Timers;
	/** A number in [0, 1) for backoff jitter (default Math.random). */
	random?: () => number;
	/** First reconnect delay in ms (default 1000); doubles each attempt. */
	backoffBaseMs?: number;
	/** Largest reconnect delay in ms (default 30000). */
	backoffMaxMs?: number;
}

/** WebSocket `OPEN`. */
const OPEN = 1;

/** Close codes after which the session cannot be resumed: reconnect and identify afresh. */
const NOT_RESUMABLE = new Set([1009, 1011, 4001, 4002, 4003, 4005, 4007, 4010]);
/** Close code: the token was refused (refresh it, then try again). */
export const CLOSE_AUTH_FAILED = 4004;
/** Close code: the login session was revoked (log in again). */
export const CLOSE_SESSION_REVOKED = 4012;
/** Close code the client uses when it gives up on a silent connection (no heartbeat ack). */
export const CLOSE_ZOMBIE = 4900;

/** The reconnect delay before attempt `attempt` (1-based): base·2^(attempt−1), capped, with ±25 % jitter. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number): number {
	const raw = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(attempt - 1, 20)));
	return Math.round(raw * (0.75 + random() * 0.5));
}

/** A gateway connection that keeps itself alive until {@link GatewayClient.stop}. */
export class GatewayClient {
	readonly #o: GatewayOptions;
	readonly #timers: Timers;
	#ws: SocketLike | null = null;
	#state: GatewayState = 'idle';
	#sessionId: string | null = null;
	#seq = 0;
	#attempt = 0;
	#heartbeat: unknown = null;
	#retry: unknown = null;
	#acked = true;
	#authFailures = 0;

	constructor(options: GatewayOptions) {
		this.#o = options;
		this.#timers = options.timers ?? {
			setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
			clearTimeout: (id) => globalThis.clearTimeout(id as ReturnType<typeof setTimeout>),
			setInterval: (fn, ms) => globalThis.setInterval(fn, ms),
			clearInterval: (id) => globalThis.clearInterval(id as ReturnType<typeof setInterval>)
		};
	}

	/** Current state. */
	get state(): GatewayState {
		return this.#state;
	}

	/** The session id from `ready` (null before, or after the session was invalidated). */
	get sessionId(): string | null {
		return this.#sessionId;
	}

	/** The last sequence number received. */
	get seq(): number {
		return this.#seq;
	}

	/** Opens the connection (no-op when already started). */
	start(): void {
		if (this.#state !== 'idle' && this.#state !== 'stopped') return;
		this.#attempt = 0;
		this.#open();
	}

	/** Closes the connection for good (logout, page leaving). */
	stop(): void {
		this.#setState('stopped');
		this.#clearTimers();
		const ws = this.#ws;
		this.#ws = null;
		if (ws) {
			ws.onclose = null;
			ws.onmessage = null;
			try {
				ws.close(1000, 'bye');
			} catch {
				// Already closed.
			}
		}
		this.#sessionId = null;
		this.#seq = 0;
	}

	/** Reconnects at once if waiting for a retry (the browser came back online): no need to wait out the backoff. */
	nudge(): void {
		if (this.#state !== 'reconnecting' || this.#retry === null) return;
		this.#timers.clearTimeout(this.#retry);
		this.#retry = null;
		this.#open();
	}

	/** Sends a client op (`typing_start`, `presence_update`…) if the session is ready; returns whether it was sent. */
	send(op: string, fields: Record<string, unknown> = {}): boolean {
		if (this.#state !== 'ready' || !this.#ws || this.#ws.readyState !== OPEN) return false;
		this.#ws.send(JSON.stringify({ ...fields, op }));
		return true;
	}

	#open(): void {
		this.#clearTimers();
		this.#setState(this.#attempt === 0 ? 'connecting' : 'reconnecting');
		let ws: SocketLike;
		try {
			ws = (this.#o.connect ?? ((url) => new WebSocket(url) as unknown as SocketLike))(this.#o.url);
		} catch {
			this.#scheduleReconnect();
			return;
		}
		this.#ws = ws;
		ws.onmessage = (ev) => {
			if (this.#ws !== ws) return;
			void this.#onFrame(ev.data);
		};
		ws.onclose = (ev) => {
			if (this.#ws !== ws) return;
			this.#ws = null;
			void this.#onClose(ev.code);
		};
		ws.onerror = () => {
			// A close event follows; reconnection is handled there.
		};
	}

	async #onFrame(data: unknown): Promise<void> {
		if (typeof data !== 'string') return;
		let frame: Record<string, unknown>;
		try {
			const parsed: unknown = JSON.parse(data);
			if (!parsed || typeof parsed !== 'object') return;
			frame = parsed as Record<string, unknown>;
		} catch {
			return;
		}
		switch (frame.op) {
			case 'hello': {
				const interval = Number(frame.heartbeat_interval_ms);
				this.#startHeartbeat(Number.isFinite(interval) && interval >= 1000 ? interval : 40000);
				await this.#authenticate();
				break;
			}
			case 'ready': {
				const sid = frame.session_id;
				this.#sessionId = typeof sid === 'string' ? sid : null;
				this.#seq = 0;
				this.#connected();
				const d = frame.d && typeof frame.d === 'object' ? (frame.d as Record<string, unknown>) : {};
				this.#o.onReady(d, this.#sessionId ?? '');
				break;
			}
			case 'resumed':
				this.#connected();
				this.#o.onResumed?.();
				break;
			case 'dispatch': {
				const s = Number(frame.s);
				if (Number.isInteger(s)) {
					if (s <= this.#seq) return; // Already seen (a replay overlapping what we had).
					this.#seq = s;
				}
				if (typeof frame.t === 'string' && frame.t !== 'noop') this.#o.onDispatch(frame.t, frame.d);
				break;
			}
			case 'heartbeat_ack':
				this.#acked = true;
				break;
			case 'invalid_session':
				// The session cannot be resumed: identify again on this connection (the app refetches on ready).
				this.#sessionId = null;
				this.#seq = 0;
				await this.#authenticate();
				break;
			case 'reconnect':
				// The node is shutting down; close 1001 follows and we resume elsewhere.
				break;
		}
	}

	async #authenticate(): Promise<void> {
		const ws = this.#ws;
		let token: string | null;
		try {
			token = await this.#o.getToken();
		} catch {
			// Server unreachable: drop this socket and retry later.
			ws?.close(4000, 'no token');
			return;
		}
		if (this.#ws !== ws || !ws) return;
		if (token === null) {
			this.#authLost();
			return;
		}
		if (this.#sessionId !== null) {
			ws.send(JSON.stringify({ op: 'resume', token, session_id: this.#sessionId, seq: this.#seq }));
		} else {
			const deviceId = this.#o.deviceId?.() ?? null;
			ws.send(JSON.stringify(deviceId ? { op: 'identify', token, device_id: deviceId } : { op: 'identify', token }));
		}
	}

	#connected(): void {
		this.#attempt = 0;
		this.#authFailures = 0;
		this.#setState('ready');
	}

	#startHeartbeat(intervalMs: number): void {
		if (this.#heartbeat !== null) this.#timers.clearInterval(this.#heartbeat);
		this.#acked = true;
		this.#heartbeat = this.#timers.setInterval(() => {
			const ws = this.#ws;
			if (!ws) return;
			if (!this.#acked) {
				// No answer to the last heartbeat: the link is dead even if the socket says open.
				ws.onclose = null;
				this.#ws = null;
				try {
					ws.close(CLOSE_ZOMBIE, 'no heartbeat ack');
				} catch {
					// ignore
				}
				void this.#onClose(CLOSE_ZOMBIE);
				return;
			}
			this.#acked = false;
			if (ws.readyState === OPEN) ws.send(JSON.stringify({ op: 'heartbeat', seq: this.#seq }));
		}, intervalMs);
	}

	async #onClose(code: number): Promise<void> {
		this.#clearTimers();
		if (this.#state === 'stopped') return;
		if (code === CLOSE_SESSION_REVOKED) {
			this.#authLost();
			return;
		}
		if (code === CLOSE_AUTH_FAILED) {
			this.#authFailures += 1;
			if (this.#authFailures > 2) {
				this.#authLost();
				return;
			}
			let token: string | null = null;
			try {
				token = await this.#o.refreshToken();
			} catch {
				// Unreachable: keep trying with backoff below.
				this.#scheduleReconnect();
				return;
			}
			if (token === null) {
				this.#authLost();
				return;
			}
			// A fresh token: reconnect at once and try again (resume if the session still exists).
			this.#setState('reconnecting');
			this.#open();
			return;
		}
		if (NOT_RESUMABLE.has(code) || code === 1000) {
			this.#sessionId = null;
			this.#seq = 0;
		}
		this.#scheduleReconnect();
	}

	#scheduleReconnect(): void {
		if (this.#state === 'stopped') return;
		this.#attempt += 1;
		const delay = backoffDelay(
			this.#attempt,
			this.#o.backoffBaseMs ?? 1000,
			this.#o.backoffMaxMs ?? 30000,
			this.#o.random ?? Math.random
		);
		this.#state = 'reconnecting';
		this.#o.onStatus?.({ state: 'reconnecting', attempt: this.#attempt, retryInMs: delay });
		this.#retry = this.#timers.setTimeout(() => {
			this.#retry = null;
			if (this.#state !== 'stopped') this.#open();
		}, delay);
	}

	#authLost(): void {
		this.stop();
		this.#o.onAuthLost?.();
	}

	#clearTimers(): void {
		if (this.#heartbeat !== null) this.#timers.clearInterval(this.#heartbeat);
		if (this.#retry !== null) this.#timers.clearTimeout(this.#retry);
		this.#heartbeat = null;
		this.#retry = null;
	}

	#setState(state: GatewayState): void {
		if (this.#state === state && state !== 'reconnecting') return;
		this.#state = state;
		this.#o.onStatus?.({ state, attempt: this.#attempt, retryInMs: null });
	}
}

/** The gateway URL for this page's origin (`wss:` under HTTPS). */
export function gatewayUrl(location: { protocol: string; host: string }): string {
	return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/gateway`;
}
