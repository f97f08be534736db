import { describe, expect, it } from 'vitest';
import { backoffDelay, GatewayClient, gatewayUrl, type GatewayOptions, type GatewayStatus, type SocketLike, type Timers } from '../src/lib/gateway/client';

/**
 * A stand-in for the browser's WebSocket, written for these tests of the gateway client's own
 * logic: the test plays the server by pushing frames (`serverSends`) and closing (`serverCloses`),
 * and reads what the client sent (`sent`).
 */
class FakeSocket implements SocketLike {
	readyState = 0;
	onopen: ((ev: unknown) => void) | null = null;
	onmessage: ((ev: { data: unknown }) => void) | null = null;
	onclose: ((ev: { code: number; reason?: string }) => void) | null = null;
	onerror: ((ev: unknown) => void) | null = null;
	sent: Record<string, unknown>[] = [];
	closedWith: number | null = null;

	constructor(readonly url: string) {}

	send(data: string): void {
		if (this.readyState !== 1) throw new Error('not open');
		this.sent.push(JSON.parse(data));
	}
	close(code = 1000): void {
		this.closedWith = code;
		this.readyState = 3;
	}
	open(): void {
		this.readyState = 1;
		this.onopen?.({});
	}
	serverSends(frame: unknown): void {
		this.onmessage?.({ data: JSON.stringify(frame) });
	}
	serverCloses(code: number): void {
		this.readyState = 3;
		this.onclose?.({ code });
	}
	ops(): unknown[] {
		return this.sent.map((f) => f.op);
	}
}

/** Manual clock: timers run only when the test advances time. */
class FakeTimers implements Timers {
	now = 0;
	#next = 1;
	#tasks = new Map<number, { at: number; fn: () => void; every: number | null }>();
	setTimeout(fn: () => void, ms: number): unknown {
		const id = this.#next++;
		this.#tasks.set(id, { at: this.now + ms, fn, every: null });
		return id;
	}
	setInterval(fn: () => void, ms: number): unknown {
		const id = this.#next++;
		this.#tasks.set(id, { at: this.now + ms, fn, every: ms });
		return id;
	}
	clearTimeout(id: unknown): void {
		this.#tasks.delete(id as number);
	}
	clearInterval(id: unknown): void {
		this.#tasks.delete(id as number);
	}
	pending(): number[] {
		return [...this.#tasks.values()].map((t) => t.at - this.now);
	}
	advance(ms: number): void {
		const end = this.now + ms;
		for (;;) {
			let best: [number, { at: number; fn: () => void; every: number | null }] | null = null;
			for (const e of this.#tasks) if (e[1].at <= end && (!best || e[1].at < best[1].at)) best = e;
			if (!best) break;
			const [id, t] = best;
			this.now = t.at;
			if (t.every === null) this.#tasks.delete(id);
			else t.at += t.every;
			t.fn();
		}
		this.now = end;
	}
}

const flush = () => new Promise((r) => setTimeout(r, 0));

function setup(overrides: Partial<GatewayOptions> = {}) {
	const sockets: FakeSocket[] = [];
	const timers = new FakeTimers();
	const events: [string, unknown][] = [];
	const readies: [Record<string, unknown>, string][] = [];
	const statuses: GatewayStatus[] = [];
	let token = 'token-1';
	let refreshes = 0;
	let authLost = 0;
	let resumed = 0;
	const client = new GatewayClient({
		url: 'ws://copains.test/gateway',
		connect: (url) => {
			const s = new FakeSocket(url);
			sockets.push(s);
			return s;
		},
		getToken: async () => token,
		refreshToken: async () => {
			refreshes++;
			token = `token-${refreshes + 1}`;
			return token;
		},
		onReady: (d, sid) => readies.push([d, sid]),
		onDispatch: (t, d) => events.push([t, d]),
		onResumed: () => resumed++,
		onStatus: (s) => statuses.push(s),
		onAuthLost: () => authLost++,
		timers,
		random: () => 0.5,
		...overrides
	});
	const last = () => sockets[sockets.length - 1];
	/** The server side of a connection: open, hello, and wait for the client's answer. */
	const hello = async (s = last()) => {
		s.open();
		s.serverSends({ op: 'hello', heartbeat_interval_ms: 40000 });
		await flush();
	};
	return {
		client,
		sockets,
		timers,
		events,
		readies,
		statuses,
		last,
		hello,
		get refreshes() {
			return refreshes;
		},
		get authLost() {
			return authLost;
		},
		get resumed() {
			return resumed;
		},
		setToken: (t: string) => (token = t)
	};
}

async function connected(t: ReturnType<typeof setup>) {
	t.client.start();
	await t.hello();
	t.last().serverSends({ op: 'ready', session_id: 'sess-1', d: { user: { id: '1' }, servers: [] } });
}

describe('gateway client', () => {
	it('identifies with the token in the identify frame only, never in the URL', async () => {
		const t = setup();
		t.client.start();
		expect(t.sockets).toHaveLength(1);
		expect(t.last().url).toBe('ws://copains.test/gateway');
		expect(t.last().url).not.toContain('token');
		await t.hello();
		expect(t.last().sent).toEqual([{ op: 'identify', token: 'token-1' }]);
		t.last().serverSends({ op: 'ready', session_id: 'sess-1', d: { user: { id: '1' } } });
		expect(t.readies).toEqual([[{ user: { id: '1' } }, 'sess-1']]);
		expect(t.client.state).toBe('ready');
		expect(t.client.sessionId).toBe('sess-1');
	});

	it('dispatches events in order, once each, and ignores noop and replays already seen', async () => {
		const t = setup();
		await connected(t);
		const s = t.last();
		s.serverSends({ op: 'dispatch', s: 1, t: 'message_create', d: { message: { id: 'a' } } });
		s.serverSends({ op: 'dispatch', s: 2, t: 'noop', d: {} });
		s.serverSends({ op: 'dispatch', s: 3, t: 'typing_start', d: { channel_id: 'c' } });
		s.serverSends({ op: 'dispatch', s: 3, t: 'typing_start', d: { channel_id: 'c' } });
		s.serverSends({ op: 'dispatch', s: 1, t: 'message_create', d: { message: { id: 'a' } } });
		expect(t.events.map(([name]) => name)).toEqual(['message_create', 'typing_start']);
		expect(t.client.seq).toBe(3);
	});

	it('ignores frames that are not JSON objects', async () => {
		const t = setup();
		await connected(t);
		t.last().onmessage?.({ data: 'not json' });
		t.last().onmessage?.({ data: '42' });
		t.last().onmessage?.({ data: new ArrayBuffer(2) });
		expect(t.client.state).toBe('ready');
		expect(t.events).toEqual([]);
	});

	it('heartbeats every interval with the last sequence number', async () => {
		const t = setup();
		await connected(t);
		const s = t.last();
		s.serverSends({ op: 'dispatch', s: 7, t: 'presence_update', d: { user_id: '2', status: 'idle' } });
		t.timers.advance(40000);
		expect(s.sent.at(-1)).toEqual({ op: 'heartbeat', seq: 7 });
		s.serverSends({ op: 'heartbeat_ack' });
		t.timers.advance(40000);
		expect(s.sent.filter((f) => f.op === 'heartbeat')).toHaveLength(2);
	});

	it('treats a missing heartbeat ack as a dead link: closes it and resumes on a new socket', async () => {
		const t = setup();
		await connected(t);
		const first = t.last();
		t.timers.advance(40000); // heartbeat sent, never acked
		t.timers.advance(40000); // no ack: give up on this socket
		expect(first.closedWith).toBe(4900);
		expect(t.client.state).toBe('reconnecting');
		t.timers.advance(1000);
		expect(t.sockets).toHaveLength(2);
		await t.hello();
		expect(t.last().sent[0]).toEqual({ op: 'resume', token: 'token-1', session_id: 'sess-1', seq: 0 });
	});

	it('after a drop, reconnects with backoff and resumes from the last sequence number', async () => {
		const t = setup();
		await connected(t);
		t.last().serverSends({ op: 'dispatch', s: 5, t: 'message_create', d: { message: {} } });
		t.last().serverCloses(1006);
		expect(t.statuses.at(-1)).toEqual({ state: 'reconnecting', attempt: 1, retryInMs: 1000 });
		expect(t.sockets).toHaveLength(1);
		t.timers.advance(999);
		expect(t.sockets).toHaveLength(1);
		t.timers.advance(1);
		expect(t.sockets).toHaveLength(2);
		await t.hello();
		expect(t.last().sent).toEqual([{ op: 'resume', token: 'token-1', session_id: 'sess-1', seq: 5 }]);
		// The server replays what was missed, then says resumed.
		t.last().serverSends({ op: 'dispatch', s: 6, t: 'message_create', d: { message: { id: 'missed' } } });
		t.last().serverSends({ op: 'resumed', session_id: 'sess-1' });
		expect(t.resumed).toBe(1);
		expect(t.client.state).toBe('ready');
		expect(t.events.at(-1)).toEqual(['message_create', { message: { id: 'missed' } }]);
		expect(t.readies).toHaveLength(1); // no second ready: the session went on
	});

	it('backs off exponentially while the server stays down, up to the cap, and resets after success', async () => {
		const t = setup({ backoffMaxMs: 8000 });
		await connected(t);
		t.last().serverCloses(1006);
		const delays: number[] = [];
		for (let i = 0; i < 5; i++) {
			const st = t.statuses.at(-1);
			delays.push(st?.retryInMs ?? -1);
			t.timers.advance(st?.retryInMs ?? 0);
			t.last().serverCloses(1006); // refused again
		}
		expect(delays).toEqual([1000, 2000, 4000, 8000, 8000]);
		t.timers.advance(t.statuses.at(-1)?.retryInMs ?? 0);
		await t.hello();
		t.last().serverSends({ op: 'resumed', session_id: 'sess-1' });
		t.last().serverCloses(1006);
		expect(t.statuses.at(-1)).toEqual({ state: 'reconnecting', attempt: 1, retryInMs: 1000 });
	});

	it('reconnects at once when nudged (back online) instead of waiting out the backoff', async () => {
		const t = setup();
		await connected(t);
		t.last().serverCloses(1006);
		t.timers.advance(1000);
		t.last().serverCloses(1006); // attempt 2 now waits 2 s
		expect(t.sockets).toHaveLength(2);
		t.client.nudge();
		expect(t.sockets).toHaveLength(3);
		expect(t.timers.pending()).toEqual([]); // the pending retry was cancelled
		await t.hello();
		expect(t.last().sent[0].op).toBe('resume');
		t.client.nudge(); // not reconnecting: nothing happens
		expect(t.sockets).toHaveLength(3);
	});

	it('identifies again on the same connection after invalid_session', async () => {
		const t = setup();
		await connected(t);
		t.last().serverCloses(1006);
		t.timers.advance(1000);
		await t.hello();
		const s = t.last();
		expect(s.sent[0].op).toBe('resume');
		s.serverSends({ op: 'invalid_session', resumable: false });
		await flush();
		expect(s.sent[1]).toEqual({ op: 'identify', token: 'token-1' });
		s.serverSends({ op: 'ready', session_id: 'sess-2', d: { servers: [] } });
		expect(t.readies.map(([, sid]) => sid)).toEqual(['sess-1', 'sess-2']);
		expect(t.client.seq).toBe(0);
	});

	it('on 4004 refreshes the token and tries again with the new one', async () => {
		const t = setup();
		t.client.start();
		await t.hello();
		t.last().serverCloses(4004);
		await flush();
		expect(t.refreshes).toBe(1);
		expect(t.sockets).toHaveLength(2);
		await t.hello();
		expect(t.last().sent).toEqual([{ op: 'identify', token: 'token-2' }]);
		t.last().serverSends({ op: 'ready', session_id: 's', d: {} });
		expect(t.client.state).toBe('ready');
	});

	it('gives up and reports the session lost when the refresh is refused', async () => {
		const t = setup({ refreshToken: async () => null });
		t.client.start();
		await t.hello();
		t.last().serverCloses(4004);
		await flush();
		expect(t.authLost).toBe(1);
		expect(t.client.state).toBe('stopped');
		t.timers.advance(60000);
		expect(t.sockets).toHaveLength(1);
	});

	it('stops for good when the login session is revoked (4012)', async () => {
		const t = setup();
		await connected(t);
		t.last().serverCloses(4012);
		await flush();
		expect(t.authLost).toBe(1);
		t.timers.advance(60000);
		expect(t.sockets).toHaveLength(1);
	});

	it('after a close that cannot be resumed, identifies afresh', async () => {
		const t = setup();
		await connected(t);
		t.last().serverSends({ op: 'dispatch', s: 3, t: 'x', d: {} });
		t.last().serverCloses(4007);
		t.timers.advance(1000);
		await t.hello();
		expect(t.last().sent).toEqual([{ op: 'identify', token: 'token-1' }]);
	});

	it('resumes after a slow-consumer close (4011)', async () => {
		const t = setup();
		await connected(t);
		t.last().serverSends({ op: 'dispatch', s: 9, t: 'x', d: {} });
		t.last().serverCloses(4011);
		t.timers.advance(1000);
		await t.hello();
		expect(t.last().sent).toEqual([{ op: 'resume', token: 'token-1', session_id: 'sess-1', seq: 9 }]);
	});

	it('reports the session lost when there is no token to identify with', async () => {
		const t = setup({ getToken: async () => null });
		t.client.start();
		await t.hello();
		expect(t.authLost).toBe(1);
		expect(t.last().sent).toEqual([]);
	});

	it('sends client ops only while ready, and stop() closes without reconnecting', async () => {
		const t = setup();
		t.client.start();
		expect(t.client.send('typing_start', { channel_id: 'c' })).toBe(false);
		await t.hello();
		t.last().serverSends({ op: 'ready', session_id: 's', d: {} });
		expect(t.client.send('typing_start', { channel_id: 'c' })).toBe(true);
		expect(t.last().sent.at(-1)).toEqual({ op: 'typing_start', channel_id: 'c' });
		// A field cannot override the op.
		t.client.send('presence_update', { op: 'identify', status: 'dnd' });
		expect(t.last().sent.at(-1)).toEqual({ op: 'presence_update', status: 'dnd' });
		const s = t.last();
		t.client.stop();
		expect(s.closedWith).toBe(1000);
		expect(t.client.state).toBe('stopped');
		t.timers.advance(60000);
		expect(t.sockets).toHaveLength(1);
		expect(t.timers.pending()).toEqual([]);
	});
});

describe('backoff and URL', () => {
	it('doubles from the base, caps, and jitters ±25 %', () => {
		expect([1, 2, 3, 4, 10].map((a) => backoffDelay(a, 1000, 30000, () => 0.5))).toEqual([1000, 2000, 4000, 8000, 30000]);
		expect(backoffDelay(1, 1000, 30000, () => 0)).toBe(750);
		expect(backoffDelay(1, 1000, 30000, () => 0.999999)).toBe(1250);
		expect(backoffDelay(1e9, 1000, 30000, () => 0.5)).toBe(30000);
	});

	it('uses wss under https', () => {
		expect(gatewayUrl({ protocol: 'https:', host: 'chat.example' })).toBe('wss://chat.example/gateway');
		expect(gatewayUrl({ protocol: 'http:', host: '127.0.0.1:8080' })).toBe('ws://127.0.0.1:8080/gateway');
	});
});
