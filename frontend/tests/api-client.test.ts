import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiClient, ApiError, CLIENT_HEADER, parseRetryAfter } from '../src/lib/api';

/**
 * A small in-memory stand-in for the auth part of the Copains API, written for these unit tests
 * of the client's own logic (token handling, refresh, error mapping). It behaves like a browser
 * plus the server: a web client's refresh token is kept in a "cookie jar" the client cannot read.
 */
class FakeServer {
	calls: { method: string; path: string; headers: Headers; body: string | undefined; credentials?: string }[] = [];
	cookieJar: string | null = null;
	validAccess = new Set<string>();
	refreshCount = 0;
	refreshAllowed = true;
	tokenSeq = 0;
	/** Per-path overrides that answer before the default behaviour. */
	overrides = new Map<string, (req: Request) => Response | Promise<Response>>();
	refreshDelayMs = 0;
	networkDown = false;

	fetch: typeof fetch = async (input, init) => {
		const req = new Request(new URL(String(input), 'http://copains.test'), init);
		const path = new URL(req.url).pathname;
		const body = init?.body === undefined ? undefined : String(init.body);
		this.calls.push({ method: req.method, path, headers: req.headers, body, credentials: init?.credentials });
		if (this.networkDown) throw new TypeError('Failed to fetch');
		const override = this.overrides.get(`${req.method} ${path}`);
		if (override) return override(req);
		const json = (status: number, value: unknown, headers: Record<string, string> = {}) =>
			new Response(JSON.stringify(value), { status, headers: { 'Content-Type': 'application/json', ...headers } });
		const bearer = req.headers.get('Authorization')?.replace(/^Bearer /, '') ?? null;
		const user = { id: '123456789012345678', username: 'alice', email: 'a@example.test', display_name: null, created_at: '2026-01-01T00:00:00Z' };
		const issue = () => {
			const access = `access-${++this.tokenSeq}`;
			this.validAccess.add(access);
			if (req.headers.get(CLIENT_HEADER) === 'web') this.cookieJar = `refresh-${this.tokenSeq}`;
			return access;
		};
		switch (`${req.method} ${path}`) {
			case 'POST /api/v1/auth/login': {
				const b = JSON.parse(body ?? '{}');
				if (b.password !== 'correct horse') return json(401, { code: 'invalid_credentials', message: 'Wrong username, email or password.' });
				return json(200, { user, access_token: issue(), refresh_token: null });
			}
			case 'POST /api/v1/auth/refresh': {
				this.refreshCount++;
				if (this.refreshDelayMs) await new Promise((r) => setTimeout(r, this.refreshDelayMs));
				if (!this.refreshAllowed || this.cookieJar === null) return json(401, { code: 'invalid_token', message: 'Session expired.' });
				return json(200, { access_token: issue(), refresh_token: null });
			}
			case 'POST /api/v1/auth/logout':
				if (bearer === null || !this.validAccess.has(bearer)) return json(401, { code: 'unauthorized', message: 'Invalid token.' });
				this.cookieJar = null;
				return new Response(null, { status: 204 });
			case 'GET /api/v1/users/@me':
				if (bearer === null || !this.validAccess.has(bearer)) return json(401, { code: 'unauthorized', message: 'Invalid token.' });
				return json(200, user);
			default:
				return json(404, { code: 'not_found', message: 'No route.' });
		}
	};

	/** Makes every access token issued so far invalid, as if 15 minutes had passed. */
	expireAccessTokens() {
		this.validAccess.clear();
	}

	count(method: string, path: string) {
		return this.calls.filter((c) => c.method === method && c.path === `/api/v1${path}`).length;
	}
}

/** A Storage that records every write, to prove the client never uses web storage. */
class RecordingStorage {
	writes: string[] = [];
	data = new Map<string, string>();
	get length() {
		return this.data.size;
	}
	key(i: number) {
		return [...this.data.keys()][i] ?? null;
	}
	getItem(k: string) {
		return this.data.get(k) ?? null;
	}
	setItem(k: string, v: string) {
		this.writes.push(k);
		this.data.set(k, v);
	}
	removeItem(k: string) {
		this.data.delete(k);
	}
	clear() {
		this.data.clear();
	}
}

let server: FakeServer;
let client: ApiClient;
let local: RecordingStorage;
let session: RecordingStorage;
let cookieWrites: string[];

beforeEach(() => {
	server = new FakeServer();
	client = new ApiClient({ fetch: server.fetch });
	local = new RecordingStorage();
	session = new RecordingStorage();
	cookieWrites = [];
	Object.assign(globalThis, {
		localStorage: local,
		sessionStorage: session,
		document: {
			get cookie() {
				return '';
			},
			set cookie(v: string) {
				cookieWrites.push(v);
			}
		}
	});
});

afterEach(() => {
	const g = globalThis as Record<string, unknown>;
	delete g.localStorage;
	delete g.sessionStorage;
	delete g.document;
});

describe('access token kept in memory only', () => {
	it('login keeps the access token in memory and never writes web storage or cookies', async () => {
		const user = await client.login({ login: 'alice', password: 'correct horse' });
		expect(user.username).toBe('alice');
		expect(client.accessToken).toBe('access-1');
		expect(local.writes).toEqual([]);
		expect(session.writes).toEqual([]);
		expect(cookieWrites).toEqual([]);
		await client.me();
		const me = server.calls.at(-1)!;
		expect(me.headers.get('Authorization')).toBe('Bearer access-1');
	});

	it('every request says it is the web client and sends cookies same-origin only', async () => {
		await client.login({ login: 'alice', password: 'correct horse' });
		await client.me();
		for (const c of server.calls) {
			expect(c.headers.get(CLIENT_HEADER)).toBe('web');
			expect(c.credentials).toBe('same-origin');
		}
	});

	it('a new client (a reloaded page) has no token until it refreshes through the cookie', async () => {
		await client.login({ login: 'alice', password: 'correct horse' });
		const reloaded = new ApiClient({ fetch: server.fetch });
		expect(reloaded.authenticated).toBe(false);
		expect(await reloaded.restoreSession()).toBe(true);
		const refresh = server.calls.find((c) => c.path === '/api/v1/auth/refresh')!;
		expect(refresh.body).toBe('{}');
		expect(refresh.headers.get(CLIENT_HEADER)).toBe('web');
		expect((await reloaded.me()).username).toBe('alice');
	});

	it('restoreSession is false when there is no refresh cookie', async () => {
		expect(await client.restoreSession()).toBe(false);
		expect(client.authenticated).toBe(false);
	});

	it('logout tells the server with the bearer token and forgets the token', async () => {
		await client.login({ login: 'alice', password: 'correct horse' });
		await client.logout();
		const call = server.calls.at(-1)!;
		expect(call.path).toBe('/api/v1/auth/logout');
		expect(call.headers.get('Authorization')).toBe('Bearer access-1');
		expect(client.authenticated).toBe(false);
		expect(server.cookieJar).toBeNull();
	});

	it('logout after the access token expired refreshes first, so the server session really ends', async () => {
		await client.login({ login: 'alice', password: 'correct horse' });
		server.expireAccessTokens();
		let lost = 0;
		client.onSessionLost(() => lost++);
		await client.logout();
		const logouts = server.calls.filter((c) => c.path === '/api/v1/auth/logout');
		expect(server.refreshCount).toBe(1);
		expect(logouts.at(-1)!.headers.get('Authorization')).toBe('Bearer access-2');
		expect(server.cookieJar).toBeNull();
		expect(client.authenticated).toBe(false);
		expect(lost).toBe(0);
	});

	it('logout with no session at all does not report a lost session', async () => {
		let lost = 0;
		client.onSessionLost(() => lost++);
		await client.logout();
		expect(lost).toBe(0);
		expect(client.authenticated).toBe(false);
	});

	it('logout forgets the token even when the server cannot be reached', async () => {
		await client.login({ login: 'alice', password: 'correct horse' });
		server.networkDown = true;
		await client.logout();
		expect(client.authenticated).toBe(false);
	});
});

describe('refresh on 401', () => {
	it('refreshes once for many concurrent 401s and retries each request (single-flight)', async () => {
		await client.login({ login: 'alice', password: 'correct horse' });
		server.expireAccessTokens();
		server.refreshDelayMs = 20;
		const users = await Promise.all([client.me(), client.me(), client.me(), client.me()]);
		expect(users.map((u) => u.username)).toEqual(['alice', 'alice', 'alice', 'alice']);
		expect(server.refreshCount).toBe(1);
		expect(server.count('GET', '/users/@me')).toBe(8);
		expect(client.accessToken).toBe('access-2');
		const retried = server.calls.filter((c) => c.path === '/api/v1/users/@me').slice(4);
		for (const c of retried) expect(c.headers.get('Authorization')).toBe('Bearer access-2');
	});

	it('an authenticated call on a fresh page refreshes first', async () => {
		await client.login({ login: 'alice', password: 'correct horse' });
		const fresh = new ApiClient({ fetch: server.fetch });
		expect((await fresh.me()).username).toBe('alice');
		expect(server.refreshCount).toBe(1);
	});

	it('a refused refresh ends the session: token cleared, listeners told once, typed error', async () => {
		await client.login({ login: 'alice', password: 'correct horse' });
		server.expireAccessTokens();
		server.refreshAllowed = false;
		let lost = 0;
		client.onSessionLost(() => lost++);
		const err = await client.me().catch((e: unknown) => e);
		expect(err).toBeInstanceOf(ApiError);
		expect((err as ApiError).code).toBe('session_expired');
		expect(client.authenticated).toBe(false);
		expect(lost).toBe(1);
		expect(server.refreshCount).toBe(1);
	});

	it('retries only once: a second 401 after a good refresh is an error, not a loop', async () => {
		await client.login({ login: 'alice', password: 'correct horse' });
		server.overrides.set('GET /api/v1/users/@me', () => new Response(JSON.stringify({ code: 'unauthorized', message: 'No.' }), { status: 401 }));
		let lost = 0;
		client.onSessionLost(() => lost++);
		const err = (await client.me().catch((e: unknown) => e)) as ApiError;
		expect(err.status).toBe(401);
		expect(server.refreshCount).toBe(1);
		expect(server.count('GET', '/users/@me')).toBe(2);
		expect(lost).toBe(1);
	});

	it('a wrong password on login is an error to show, not a refresh', async () => {
		const err = (await client.login({ login: 'alice', password: 'nope' }).catch((e: unknown) => e)) as ApiError;
		expect(err).toBeInstanceOf(ApiError);
		expect(err.status).toBe(401);
		expect(err.code).toBe('invalid_credentials');
		expect(err.message).toBe('Wrong username, email or password.');
		expect(server.refreshCount).toBe(0);
		expect(client.authenticated).toBe(false);
	});
});

describe('error mapping', () => {
	it('maps a 422 {code, message} to a typed validation error with the server message', async () => {
		server.overrides.set('POST /api/v1/auth/register', () =>
			new Response(JSON.stringify({ code: 'validation', message: 'username: 3 to 32 letters, digits, _ . -' }), { status: 422 })
		);
		const err = (await client.register({ username: '!', email: 'x@y.z', password: '12345678' }).catch((e: unknown) => e)) as ApiError;
		expect(err.status).toBe(422);
		expect(err.code).toBe('validation');
		expect(err.message).toBe('username: 3 to 32 letters, digits, _ . -');
	});

	it('maps a 429 with Retry-After to "try again in N s"', async () => {
		server.overrides.set('POST /api/v1/auth/login', () =>
			new Response(JSON.stringify({ code: 'rate_limited', message: 'slow down' }), { status: 429, headers: { 'Retry-After': '7' } })
		);
		const err = (await client.login({ login: 'a', password: 'b' }).catch((e: unknown) => e)) as ApiError;
		expect(err.status).toBe(429);
		expect(err.retryAfter).toBe(7);
		expect(err.message).toBe('Too many attempts. Try again in 7 s.');
	});

	it('gives a readable message when the body is not JSON (a proxy error page)', async () => {
		server.overrides.set('POST /api/v1/auth/password/forgot', () => new Response('<html>Bad Gateway</html>', { status: 502 }));
		const err = (await client.forgotPassword('a@b.c').catch((e: unknown) => e)) as ApiError;
		expect(err.code).toBe('http_502');
		expect(err.message).toMatch(/server had a problem \(502\)/);
	});

	it('turns a network failure into a typed network error without ending the session', async () => {
		await client.login({ login: 'alice', password: 'correct horse' });
		server.networkDown = true;
		const err = (await client.me().catch((e: unknown) => e)) as ApiError;
		expect(err.code).toBe('network');
		expect(err.status).toBe(0);
		expect(client.authenticated).toBe(true);
	});

	it('accepts 202 and 204 answers without a body', async () => {
		server.overrides.set('POST /api/v1/auth/password/forgot', () => new Response(JSON.stringify({ message: 'ok' }), { status: 202 }));
		server.overrides.set('POST /api/v1/auth/password/reset', () => new Response(null, { status: 204 }));
		await expect(client.forgotPassword('a@b.c')).resolves.toBeUndefined();
		await expect(client.resetPassword('tok', 'a new password')).resolves.toBeUndefined();
		const reset = server.calls.at(-1)!;
		expect(JSON.parse(reset.body!)).toEqual({ token: 'tok', password: 'a new password' });
		expect(reset.headers.get('Authorization')).toBeNull();
	});

	it('parses Retry-After as seconds or as an HTTP date', () => {
		expect(parseRetryAfter('12')).toBe(12);
		expect(parseRetryAfter('0')).toBe(1);
		const now = Date.parse('2026-01-01T00:00:00Z');
		expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30);
		expect(parseRetryAfter('soon')).toBeNull();
		expect(parseRetryAfter(null)).toBeNull();
	});
});
