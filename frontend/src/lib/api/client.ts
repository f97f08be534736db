/**
 * The Copains API client: a typed `fetch` wrapper for `/api/v1`.
 *
 * Token rules (OWASP ASVS, issue 2 and 8):
 * - the access token lives only in this object's memory — never localStorage, sessionStorage or a cookie;
 * - the refresh token lives only in the HttpOnly cookie the server sets because every request
 *   carries `X-Copains-Client: web`; the client never sees it (`refresh_token` is null in JSON);
 * - on a 401 the client refreshes once (single-flight: concurrent 401s share one refresh),
 *   retries the request, and when the refresh is refused it reports the session as lost.
 */
import { ApiError, errorFromResponse } from './errors';
import type {
	Attachment,
	AuditEntry,
	Ban,
	AuthResponse,
	Channel,
	DmChannel,
	EncryptedEnvelope,
	HistoryQuery,
	Invite,
	InvitePreview,
	LoginInput,
	Member,
	Message,
	NewChannel,
	Overwrite,
	ReadState,
	Relationship,
	Role,
	Server,
	ProfilePatch,
	RefreshResponse,
	RegisterInput,
	Session,
	Thread,
	User
} from './types';

/** The header that tells the server to put the refresh token in an HttpOnly cookie. */
export const CLIENT_HEADER = 'X-Copains-Client';
/** The value of {@link CLIENT_HEADER} for this web app. */
export const CLIENT_NAME = 'web';

/** Options of {@link ApiClient}. */
export interface ApiClientOptions {
	/** Base URL of the API; default `/api/v1` (same origin, so the cookie is sent). */
	baseUrl?: string;
	/** The `fetch` to use; default the global one. */
	fetch?: typeof fetch;
}

/** Options of one request. */
export interface RequestOptions {
	/** JSON body. */
	body?: unknown;
	/** Send the access token and refresh it on 401 (default true). */
	auth?: boolean;
	/** Abort signal. */
	signal?: AbortSignal;
	/** A raw body (a file) sent as is, instead of JSON. */
	raw?: Blob;
	/** Read the answer as a Blob (downloads) instead of JSON. */
	blob?: boolean;
}

type Listener = () => void;

/** A typed client of `/api/v1` that owns the in-memory access token. */
export class ApiClient {
	readonly #baseUrl: string;
	readonly #fetch: typeof fetch;
	#accessToken: string | null = null;
	#refreshing: Promise<boolean> | null = null;
	readonly #lostListeners = new Set<Listener>();

	constructor(options: ApiClientOptions = {}) {
		this.#baseUrl = (options.baseUrl ?? '/api/v1').replace(/\/$/, '');
		const f = options.fetch ?? globalThis.fetch;
		this.#fetch = (input, init) => f(input, init);
	}

	/** True when an access token is held in memory. */
	get authenticated(): boolean {
		return this.#accessToken !== null;
	}

	/** The current access token (for the gateway's identify later); null when signed out. */
	get accessToken(): string | null {
		return this.#accessToken;
	}

	/** Registers `fn` to run when the session is lost (refresh refused); returns an unsubscribe function. */
	onSessionLost(fn: Listener): () => void {
		this.#lostListeners.add(fn);
		return () => this.#lostListeners.delete(fn);
	}

	/** Drops the access token from memory (no server call). */
	forget(): void {
		this.#accessToken = null;
	}

	/** Performs a request and parses its JSON answer (undefined for 202/204 or an empty body). */
	request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
		return this.#request<T>(method, path, options, true);
	}

	async #request<T>(method: string, path: string, options: RequestOptions, reportLoss: boolean): Promise<T> {
		const auth = options.auth ?? true;
		if (auth && this.#accessToken === null) {
			// No token in memory (fresh page): the refresh cookie may still hold a session.
			if (!(await this.#refreshOnce())) throw this.#sessionLost(reportLoss);
		}
		const tokenUsed = auth ? this.#accessToken : null;
		let res = await this.#send(method, path, options, tokenUsed);
		if (auth && res.status === 401) {
			// Another request may already have refreshed while this one was in flight.
			const fresh = this.#accessToken !== null && this.#accessToken !== tokenUsed;
			if (!fresh && !(await this.#refreshOnce())) throw this.#sessionLost(reportLoss);
			res = await this.#send(method, path, options, this.#accessToken);
			if (res.status === 401) {
				this.#accessToken = null;
				if (reportLoss) this.#emitLost();
				throw await errorFromResponse(res);
			}
		}
		if (!res.ok) throw await errorFromResponse(res);
		if (options.blob) return (await res.blob()) as T;
		return (await parseBody(res)) as T;
	}

	/**
	 * Tries to restore a session from the refresh cookie (call on app start).
	 * Returns true when a new access token was obtained, false when there is no valid session;
	 * throws an {@link ApiError} with code `network` when the server cannot be reached.
	 */
	restoreSession(): Promise<boolean> {
		return this.#refreshOnce();
	}

	/** `POST /auth/register`: creates the account and signs in. */
	async register(input: RegisterInput): Promise<User> {
		const body = await this.request<AuthResponse>('POST', '/auth/register', { body: input, auth: false });
		return this.#acceptAuth(body);
	}

	/** `POST /auth/login` with a username or email. */
	async login(input: LoginInput): Promise<User> {
		const body = await this.request<AuthResponse>('POST', '/auth/login', { body: input, auth: false });
		return this.#acceptAuth(body);
	}

	/**
	 * `POST /auth/logout`: ends the session on the server and always forgets the token.
	 * An expired access token is refreshed first (through the cookie), so logging out after a
	 * long idle time still ends the server session and clears the cookie. Never throws.
	 */
	async logout(): Promise<void> {
		try {
			await this.#request<void>('POST', '/auth/logout', {}, false);
		} catch {
			// Already ended (refresh refused), or offline: the token is dropped below either way.
		} finally {
			this.#accessToken = null;
		}
	}

	/** `POST /auth/password/forgot`: always answers the same, whether or not the account exists. */
	forgotPassword(email: string): Promise<void> {
		return this.request<void>('POST', '/auth/password/forgot', { body: { email }, auth: false });
	}

	/** `POST /auth/password/reset` with the token from the reset link. */
	resetPassword(token: string, password: string): Promise<void> {
		return this.request<void>('POST', '/auth/password/reset', { body: { token, password }, auth: false });
	}

	/** `GET /users/@me`. */
	me(): Promise<User> {
		return this.request<User>('GET', '/users/@me');
	}

	/** `PATCH /users/@me`. */
	updateMe(patch: ProfilePatch): Promise<User> {
		return this.request<User>('PATCH', '/users/@me', { body: patch });
	}

	/** `POST /users/@me/password`; the server revokes every other session. */
	changePassword(current_password: string, new_password: string): Promise<void> {
		return this.request<void>('POST', '/users/@me/password', { body: { current_password, new_password } });
	}

	/** `GET /users/@me/sessions`. */
	sessions(): Promise<Session[]> {
		return this.request<Session[]>('GET', '/users/@me/sessions');
	}

	/** `DELETE /users/@me/sessions/{id}`. */
	revokeSession(id: string): Promise<void> {
		return this.request<void>('DELETE', `/users/@me/sessions/${encodeURIComponent(id)}`);
	}

	/** `GET /users/@me/servers`: the servers I am a member of. */
	myServers(): Promise<Server[]> {
		return this.request<Server[]>('GET', '/users/@me/servers');
	}

	/** `POST /servers`: creates a server (with a first text channel) that I own. */
	createServer(name: string): Promise<Server> {
		return this.request<Server>('POST', '/servers', { body: { name } });
	}

	/** `DELETE /users/@me/servers/{id}`: leaves a server (the owner must delete or transfer it instead). */
	leaveServer(serverId: string): Promise<void> {
		return this.request<void>('DELETE', `/users/@me/servers/${seg(serverId)}`);
	}

	/** `DELETE /servers/{id}` (owner only). */
	deleteServer(serverId: string): Promise<void> {
		return this.request<void>('DELETE', `/servers/${seg(serverId)}`);
	}

	/** `PATCH /servers/{id}` (MANAGE_SERVER): name and description. */
	updateServer(serverId: string, patch: { name?: string; description?: string }): Promise<Server> {
		return this.request<Server>('PATCH', `/servers/${seg(serverId)}`, { body: patch });
	}

	/** `PATCH /channels/{id}` (MANAGE_CHANNELS): name and topic (encryption is never turned off). */
	updateChannel(channelId: string, patch: { name?: string; topic?: string }): Promise<Channel> {
		return this.request<Channel>('PATCH', `/channels/${seg(channelId)}`, { body: patch });
	}

	/** `GET /channels/{id}` with its permission overwrites. */
	channel(channelId: string): Promise<Channel & { overwrites?: Overwrite[] }> {
		return this.request<Channel & { overwrites?: Overwrite[] }>('GET', `/channels/${seg(channelId)}`);
	}

	/** `PUT /channels/{id}/overwrites/{target}` or, when nothing is allowed or denied, `DELETE` it. */
	setOverwrite(channelId: string, o: Overwrite): Promise<void> {
		const path = `/channels/${seg(channelId)}/overwrites/${seg(o.target_id)}`;
		if (o.allow === 0 && o.deny === 0) return this.request<void>('DELETE', path);
		return this.request<void>('PUT', path, { body: { kind: o.kind, allow: o.allow, deny: o.deny } });
	}

	/** `DELETE /channels/{id}` (MANAGE_CHANNELS). */
	deleteChannel(channelId: string): Promise<void> {
		return this.request<void>('DELETE', `/channels/${seg(channelId)}`);
	}

	/** `GET /servers/{id}/channels`: the channels I may see. */
	channels(serverId: string): Promise<Channel[]> {
		return this.request<Channel[]>('GET', `/servers/${seg(serverId)}/channels`);
	}

	/** `POST /servers/{id}/channels`. `encrypted` is irreversible. */
	createChannel(serverId: string, input: NewChannel): Promise<Channel> {
		return this.request<Channel>('POST', `/servers/${seg(serverId)}/channels`, { body: input });
	}

	/** `GET /servers/{id}/members`. */
	members(serverId: string): Promise<Member[]> {
		return this.request<Member[]>('GET', `/servers/${seg(serverId)}/members`);
	}

	/** `GET /servers/{id}/messages/search`: plaintext messages I may see that match `q`, newest first. */
	async search(serverId: string, q: string, limit = 25): Promise<Message[]> {
		const qs = new URLSearchParams({ q, limit: String(limit) });
		const body = await this.request<{ messages: Message[] }>('GET', `/servers/${seg(serverId)}/messages/search?${qs}`);
		return Array.isArray(body?.messages) ? body.messages : [];
	}

	/** `POST /servers/{id}/roles` (MANAGE_ROLES). */
	createRole(serverId: string, input: { name: string; color?: number; hoist?: boolean }): Promise<Role> {
		return this.request<Role>('POST', `/servers/${seg(serverId)}/roles`, { body: input });
	}

	/** `PATCH /servers/{id}/roles/{role_id}` (MANAGE_ROLES; only permissions I hold may be added). */
	updateRole(serverId: string, roleId: string, patch: { name?: string; color?: number; hoist?: boolean; permissions?: number }): Promise<Role> {
		return this.request<Role>('PATCH', `/servers/${seg(serverId)}/roles/${seg(roleId)}`, { body: patch });
	}

	/** `DELETE /servers/{id}/roles/{role_id}`. */
	deleteRole(serverId: string, roleId: string): Promise<void> {
		return this.request<void>('DELETE', `/servers/${seg(serverId)}/roles/${seg(roleId)}`);
	}

	/** `PATCH /servers/{id}/members/{user_id}`: nickname and/or the complete set of roles. */
	updateMember(serverId: string, userId: string, patch: { nickname?: string; roles?: string[] }): Promise<Member> {
		return this.request<Member>('PATCH', `/servers/${seg(serverId)}/members/${seg(userId)}`, { body: patch });
	}

	/** `DELETE /servers/{id}/members/{user_id}`: kicks a member (they may rejoin with an invite); the reason is told to them. */
	kick(serverId: string, userId: string, reason = ''): Promise<void> {
		const body = reason.trim() ? { reason: reason.trim() } : undefined;
		return this.request<void>('DELETE', `/servers/${seg(serverId)}/members/${seg(userId)}`, body ? { body } : {});
	}

	/** `GET /servers/{id}/bans` (BAN_MEMBERS). */
	bans(serverId: string): Promise<Ban[]> {
		return this.request<Ban[]>('GET', `/servers/${seg(serverId)}/bans`);
	}

	/** `DELETE /servers/{id}/bans/{user_id}`: lifts a ban. */
	unban(serverId: string, userId: string): Promise<void> {
		return this.request<void>('DELETE', `/servers/${seg(serverId)}/bans/${seg(userId)}`);
	}

	/** `GET /servers/{id}/audit-log` (VIEW_AUDIT_LOG): newest first. */
	auditLog(serverId: string, limit = 50): Promise<AuditEntry[]> {
		return this.request<AuditEntry[]>('GET', `/servers/${seg(serverId)}/audit-log?limit=${limit}`);
	}

	/**
	 * `PUT /servers/{id}/bans/{user_id}`: bans a user (removes them and refuses their return), with
	 * an optional reason (told to them) and their messages of the last `deleteMessageSecs` seconds deleted.
	 */
	ban(serverId: string, userId: string, options: { reason?: string; deleteMessageSecs?: number } = {}): Promise<void> {
		const body: { reason?: string; delete_message_secs?: number } = {};
		if (options.reason?.trim()) body.reason = options.reason.trim();
		if (options.deleteMessageSecs) body.delete_message_secs = options.deleteMessageSecs;
		return this.request<void>('PUT', `/servers/${seg(serverId)}/bans/${seg(userId)}`, { body });
	}

	/** `POST /servers/{id}/invites`: a new invite (unlimited unless limits are given). */
	createInvite(serverId: string, limits: { max_age_secs?: number; max_uses?: number } = {}): Promise<Invite> {
		return this.request<Invite>('POST', `/servers/${seg(serverId)}/invites`, { body: limits });
	}

	/** `GET /invites/{code}`: what the invite opens (public; signed in, it also says whether I am banned there). */
	invitePreview(code: string): Promise<InvitePreview> {
		return this.request<InvitePreview>('GET', `/invites/${seg(code)}`, { auth: this.#accessToken !== null });
	}

	/** `POST /invites/{code}`: joins the server (200 when already a member). */
	joinInvite(code: string): Promise<Server> {
		return this.request<Server>('POST', `/invites/${seg(code)}`, { body: {} });
	}

	/** `GET /channels/{id}/messages`: a page of history, oldest first. */
	messages(channelId: string, query: HistoryQuery = {}): Promise<Message[]> {
		const q = new URLSearchParams();
		if (query.before) q.set('before', query.before);
		if (query.after) q.set('after', query.after);
		if (query.limit) q.set('limit', String(query.limit));
		const qs = q.toString();
		return this.request<Message[]>('GET', `/channels/${seg(channelId)}/messages${qs ? `?${qs}` : ''}`);
	}

	/**
	 * `POST /channels/{id}/messages` with a client nonce: a retry with the same nonce returns the
	 * same message. `replyTo` is a message of the same channel.
	 */
	sendMessage(channelId: string, content: string, nonce: string, replyTo: string | null = null, attachments: string[] = []): Promise<Message> {
		const body: Record<string, string | string[]> = { nonce };
		if (content) body.content = content;
		if (replyTo) body.reply_to = replyTo;
		if (attachments.length) body.attachments = attachments;
		return this.request<Message>('POST', `/channels/${seg(channelId)}/messages`, { body });
	}

	/**
	 * `POST /channels/{id}/messages` in an encrypted place: only the envelope, the reply and the
	 * ids of encrypted blobs travel.
	 */
	sendEncryptedMessage(
		channelId: string,
		encrypted: EncryptedEnvelope,
		nonce: string,
		replyTo: string | null = null,
		attachments: string[] = []
	): Promise<Message> {
		const body: Record<string, unknown> = { nonce, encrypted };
		if (replyTo) body.reply_to = replyTo;
		if (attachments.length) body.attachments = attachments;
		return this.request<Message>('POST', `/channels/${seg(channelId)}/messages`, { body });
	}

	/** `PATCH /channels/{id}/messages/{message_id}` in an encrypted place. */
	editEncryptedMessage(channelId: string, messageId: string, encrypted: EncryptedEnvelope): Promise<Message> {
		return this.request<Message>('PATCH', `/channels/${seg(channelId)}/messages/${seg(messageId)}`, { body: { encrypted } });
	}

	/** `GET /users/@me/channels`: my DMs and group DMs, most recently active first. */
	dms(): Promise<DmChannel[]> {
		return this.request<DmChannel[]>('GET', '/users/@me/channels');
	}

	/** `POST /users/@me/channels`: the 1:1 DM with one user (created if needed), or a new group DM. */
	openDm(recipients: string[]): Promise<DmChannel> {
		return this.request<DmChannel>('POST', '/users/@me/channels', { body: { recipients } });
	}

	/** `PUT /channels/{id}/recipients/{user_id}`: the owner adds a member to a group DM (at most 10). */
	addDmRecipient(channelId: string, userId: string): Promise<DmChannel> {
		return this.request<DmChannel>('PUT', `/channels/${seg(channelId)}/recipients/${seg(userId)}`);
	}

	/** `DELETE /channels/{id}/recipients/{user_id}`: the owner removes a member, or I leave (my own id). */
	removeDmRecipient(channelId: string, userId: string): Promise<void> {
		return this.request<void>('DELETE', `/channels/${seg(channelId)}/recipients/${seg(userId)}`);
	}

	/** `POST /channels/{id}/attachments?filename=`: uploads a file (raw body) to attach to my next message. */
	uploadAttachment(channelId: string, file: Blob, filename: string): Promise<Attachment> {
		const qs = new URLSearchParams({ filename });
		return this.request<Attachment>('POST', `/channels/${seg(channelId)}/attachments?${qs}`, { raw: file });
	}

	/** Downloads an attachment (with my token: a plain link could not carry it). */
	downloadAttachment(channelId: string, attachmentId: string): Promise<Blob> {
		return this.request<Blob>('GET', `/channels/${seg(channelId)}/attachments/${seg(attachmentId)}`, { blob: true });
	}

	/** `PATCH /channels/{id}/messages/{message_id}` (author only). */
	editMessage(channelId: string, messageId: string, content: string): Promise<Message> {
		return this.request<Message>('PATCH', `/channels/${seg(channelId)}/messages/${seg(messageId)}`, { body: { content } });
	}

	/** `DELETE /channels/{id}/messages/{message_id}` (author, or MANAGE_MESSAGES). */
	deleteMessage(channelId: string, messageId: string): Promise<void> {
		return this.request<void>('DELETE', `/channels/${seg(channelId)}/messages/${seg(messageId)}`);
	}

	/** `POST /users/@me/relationships`: sends a friend request by username (accepts theirs if they asked first). */
	addFriend(username: string): Promise<Relationship> {
		return this.request<Relationship>('POST', '/users/@me/relationships', { body: { username } });
	}

	/** `POST /users/@me/relationships/{id}/accept`. */
	acceptFriend(userId: string): Promise<Relationship> {
		return this.request<Relationship>('POST', `/users/@me/relationships/${seg(userId)}/accept`, { body: {} });
	}

	/** `POST /users/@me/relationships/{id}/decline`. */
	declineFriend(userId: string): Promise<void> {
		return this.request<void>('POST', `/users/@me/relationships/${seg(userId)}/decline`, { body: {} });
	}

	/** `DELETE /users/@me/relationships/{id}`: ends a friendship or cancels my request. */
	removeFriend(userId: string): Promise<void> {
		return this.request<void>('DELETE', `/users/@me/relationships/${seg(userId)}`);
	}

	/** `PUT /users/@me/blocks/{id}`: blocks a user (ends any friendship or request). */
	block(userId: string): Promise<void> {
		return this.request<void>('PUT', `/users/@me/blocks/${seg(userId)}`);
	}

	/** `DELETE /users/@me/blocks/{id}`. */
	unblock(userId: string): Promise<void> {
		return this.request<void>('DELETE', `/users/@me/blocks/${seg(userId)}`);
	}

	/** `GET /users/@me/read-states`: unread and mention counts per place. */
	readStates(): Promise<ReadState[]> {
		return this.request<ReadState[]>('GET', '/users/@me/read-states');
	}

	/** `POST /channels/{id}/messages/{message_id}/ack`: marks the place read up to this message. */
	ack(channelId: string, messageId: string): Promise<ReadState> {
		return this.request<ReadState>('POST', `/channels/${seg(channelId)}/messages/${seg(messageId)}/ack`, { body: {} });
	}

	/** `POST /channels/{id}/messages/{message_id}/threads`: starts a thread from a message. */
	startThread(channelId: string, messageId: string, name: string): Promise<Thread> {
		return this.request<Thread>('POST', `/channels/${seg(channelId)}/messages/${seg(messageId)}/threads`, { body: { name } });
	}

	/** `GET /channels/{id}/threads`: the active threads of a text channel. */
	threads(channelId: string): Promise<Thread[]> {
		return this.request<Thread[]>('GET', `/channels/${seg(channelId)}/threads`);
	}

	/** `GET /channels/{id}/pins`: pinned messages, most recently pinned first. */
	pins(channelId: string): Promise<Message[]> {
		return this.request<Message[]>('GET', `/channels/${seg(channelId)}/pins`);
	}

	/** `PUT` (pin) or `DELETE` (unpin) `/channels/{id}/pins/{message_id}` (MANAGE_MESSAGES). */
	setPinned(channelId: string, messageId: string, pinned: boolean): Promise<void> {
		return this.request<void>(pinned ? 'PUT' : 'DELETE', `/channels/${seg(channelId)}/pins/${seg(messageId)}`);
	}

	/** `PUT /channels/{id}/messages/{message_id}/reactions/{emoji}/@me`. */
	addReaction(channelId: string, messageId: string, emoji: string): Promise<void> {
		return this.request<void>('PUT', `/channels/${seg(channelId)}/messages/${seg(messageId)}/reactions/${seg(emoji)}/@me`);
	}

	/** `DELETE /channels/{id}/messages/{message_id}/reactions/{emoji}/@me`. */
	removeReaction(channelId: string, messageId: string, emoji: string): Promise<void> {
		return this.request<void>('DELETE', `/channels/${seg(channelId)}/messages/${seg(messageId)}/reactions/${seg(emoji)}/@me`);
	}

	/**
	 * A valid access token for the gateway's `identify`/`resume`: the one in memory, or a fresh
	 * one from the refresh cookie when there is none. Null when the session is gone.
	 */
	async gatewayToken(): Promise<string | null> {
		if (this.#accessToken !== null) return this.#accessToken;
		return (await this.#refreshOnce()) ? this.#accessToken : null;
	}

	/** Forces a refresh (the gateway refused the token with 4004); returns the new token or null. */
	async refreshForGateway(): Promise<string | null> {
		const before = this.#accessToken;
		const ok = await this.#refreshOnce();
		if (!ok) {
			this.#emitLost();
			return null;
		}
		return this.#accessToken ?? before;
	}

	#acceptAuth(body: AuthResponse): User {
		if (!body || typeof body.access_token !== 'string' || !body.user) {
			throw new ApiError(0, 'bad_response', 'The server sent an unexpected answer.');
		}
		this.#accessToken = body.access_token;
		return body.user;
	}

	#sessionLost(report = true): ApiError {
		this.#accessToken = null;
		if (report) this.#emitLost();
		return new ApiError(401, 'session_expired', 'Your session has ended. Please log in again.');
	}

	#emitLost(): void {
		for (const fn of this.#lostListeners) fn();
	}

	/** One refresh at a time: concurrent callers share the same attempt. */
	#refreshOnce(): Promise<boolean> {
		this.#refreshing ??= this.#refresh().finally(() => {
			this.#refreshing = null;
		});
		return this.#refreshing;
	}

	async #refresh(): Promise<boolean> {
		// The refresh token travels only in its HttpOnly cookie: the body is empty.
		const res = await this.#send('POST', '/auth/refresh', { body: {} }, null);
		if (res.status === 204) {
			// No refresh cookie: nobody is signed in in this browser (answered without a 401,
			// so a signed-out page load logs no failed request).
			this.#accessToken = null;
			return false;
		}
		if (res.ok) {
			const body = (await parseBody(res)) as RefreshResponse | undefined;
			if (!body || typeof body.access_token !== 'string') {
				throw new ApiError(0, 'bad_response', 'The server sent an unexpected answer.');
			}
			this.#accessToken = body.access_token;
			return true;
		}
		this.#accessToken = null;
		if (res.status === 400 || res.status === 401 || res.status === 403) return false;
		throw await errorFromResponse(res);
	}

	async #send(method: string, path: string, options: RequestOptions, token: string | null): Promise<Response> {
		const headers: Record<string, string> = { Accept: 'application/json', [CLIENT_HEADER]: CLIENT_NAME };
		if (token !== null) headers.Authorization = `Bearer ${token}`;
		let body: string | Blob | undefined;
		if (options.raw !== undefined) {
			headers['Content-Type'] = options.raw.type || 'application/octet-stream';
			body = options.raw;
		} else if (options.body !== undefined) {
			headers['Content-Type'] = 'application/json';
			body = JSON.stringify(options.body);
		}
		if (options.blob) headers.Accept = '*/*';
		try {
			return await this.#fetch(this.#baseUrl + path, {
				method,
				headers,
				body,
				credentials: 'same-origin',
				cache: 'no-store',
				signal: options.signal
			});
		} catch (e) {
			if (e instanceof DOMException && e.name === 'AbortError') throw e;
			throw new ApiError(0, 'network', 'Could not reach the Copains server. Check your connection and try again.');
		}
	}
}

/** One URL path segment, encoded. */
function seg(value: string): string {
	return encodeURIComponent(value);
}

async function parseBody(res: Response): Promise<unknown> {
	if (res.status === 204 || res.status === 202) return undefined;
	const text = await res.text();
	if (!text) return undefined;
	try {
		return JSON.parse(text);
	} catch {
		throw new ApiError(res.status, 'bad_response', 'The server sent an unexpected answer.');
	}
}
