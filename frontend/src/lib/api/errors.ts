/** Typed errors of the API client. Every failure the UI sees is an {@link ApiError} with a message fit to show. */

/** Error codes produced by the client itself (the server's own codes pass through as strings). */
export type ClientErrorCode = 'network' | 'session_expired' | 'bad_response';

/** A failed API call: HTTP status (0 when the server was not reached), the server's `code` and a user-facing `message`. */
export class ApiError extends Error {
	/** HTTP status, or 0 when no response was received. */
	readonly status: number;
	/** Machine-readable code: the server's `code` (e.g. `validation`, `invalid_credentials`) or a {@link ClientErrorCode}. */
	readonly code: string;
	/** Seconds to wait before retrying, from `Retry-After` on a 429. */
	readonly retryAfter: number | null;

	constructor(status: number, code: string, message: string, retryAfter: number | null = null) {
		super(message);
		this.name = 'ApiError';
		this.status = status;
		this.code = code;
		this.retryAfter = retryAfter;
	}
}

/** True when `e` is an {@link ApiError}. */
export function isApiError(e: unknown): e is ApiError {
	return e instanceof ApiError;
}

/** Codes whose message the client wrote itself (already a sentence for people). */
const CLIENT_WRITTEN = new Set<string>(['network', 'session_expired', 'bad_response', 'rate_limited']);

/**
 * A sentence to show a person for any thrown value: never the server's raw text. A known code
 * gets its sentence ({@link SENTENCES}); a validation refusal or an unknown code gets the server's
 * explanation made into a sentence (capital, full stop, byte counts in MB) unless it reads like
 * parser output, then a sentence by HTTP status. Errors the app itself wrote (plain `Error`s
 * whose message is a sentence) pass through; anything else is "Something went wrong".
 */
export function errorMessage(e: unknown): string {
	if (e instanceof ApiError) {
		if (CLIENT_WRITTEN.has(e.code) || e.status === 429) return e.message;
		const known = SENTENCES[e.code];
		if (typeof known === 'function') return known(e);
		if (known) return known;
		return asSentence(e.message) ?? fallbackMessage(e.status);
	}
	if (e instanceof Error && isOurSentence(e.message)) return e.message;
	return 'Something went wrong. Please try again.';
}

/** `8388608` bytes → "8 MB"; smaller amounts in KB. */
export function formatBytes(n: number): string {
	if (n >= 1024 * 1024) return `${Math.round((n / (1024 * 1024)) * 10) / 10} MB`;
	if (n >= 1024) return `${Math.round(n / 1024)} KB`;
	return `${n} bytes`;
}

/** Looks like serde / parser output or a developer note rather than something for people. */
const TECHNICAL = /line \d+ column \d+|invalid type|unknown variant|unknown field|missing field|expected (a|an|one of|struct|value)\b|Content-Type|JSON|\/api\/|\{|\}|::|\b[a-z]+_[a-z_]+\b|\bnull\b/i;

/** The server's explanation as a sentence, or null when it is not fit for people. */
export function asSentence(message: string): string | null {
	let m = message.trim().replace(/\s+/g, ' ');
	if (!m || m.length > 200 || TECHNICAL.test(m)) return null;
	m = m.replace(/\b(\d{4,}) bytes\b/g, (_, n: string) => formatBytes(Number(n)));
	m = m.charAt(0).toUpperCase() + m.slice(1);
	return /[.!?]$/.test(m) ? m : `${m}.`;
}

/** A plain `Error` the app wrote for people: one line starting with a capital, ending with a full stop. */
function isOurSentence(m: string): boolean {
	return m.length > 0 && m.length <= 300 && !m.includes('\n') && /^[A-Z]/.test(m) && /[.!?]$/.test(m);
}

/** Parses a `Retry-After` header (delay in seconds or an HTTP date) into whole seconds, at least 1. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
	if (value === null) return null;
	const trimmed = value.trim();
	if (/^\d+$/.test(trimmed)) return Math.max(1, Number.parseInt(trimmed, 10));
	const date = Date.parse(trimmed);
	if (Number.isNaN(date)) return null;
	return Math.max(1, Math.ceil((date - now) / 1000));
}

const MAX_MESSAGE = 300;

const SESSION_ENDED = 'Your session has ended. Please log in again.';
const RELOAD = 'Something did not line up. Reload the page and try again.';

/** What a person reads for each code the server sends (its own `message` is for developers). */
export const SENTENCES: Record<string, string | ((e: ApiError) => string)> = {
	// Accounts and sessions
	invalid_credentials: 'Wrong username, email or password.',
	username_taken: 'That username is taken. Try another one.',
	email_taken: 'An account already uses this email address.',
	registration_closed: 'Registration is closed on this Copains server.',
	invite_required: 'You need an invite to create an account here.',
	email_domain_denied: 'Accounts with this email address are not accepted here.',
	email_domain_not_allowed: 'Accounts with this email address are not accepted here.',
	ip_denied: 'Access from your network is not allowed on this server.',
	wrong_password: 'Your current password is not right.',
	invalid_reset_token: 'This reset link has expired or was already used. Ask for a new one.',
	account_suspended: 'This account is suspended.',
	session_revoked: SESSION_ENDED,
	token_expired: SESSION_ENDED,
	invalid_token: SESSION_ENDED,
	missing_token: SESSION_ENDED,
	invalid_refresh_token: SESSION_ENDED,
	refresh_token_reused: SESSION_ENDED,
	// Permissions and moderation
	missing_permission: 'You do not have permission to do that.',
	role_hierarchy: 'You can only manage members and roles below your highest role.',
	not_owner: 'Only the server owner can do that.',
	not_author: 'You can only change your own messages.',
	not_admin: 'Only administrators of this Copains server can do that.',
	owner_cannot_leave: 'Give the server to someone else before you leave it.',
	use_leave: 'To leave a server, use “Leave server” in its menu.',
	timed_out: 'You are timed out in this server for now.',
	banned: 'You are banned from this server.',
	// People
	dm_closed: 'This person does not accept direct messages.',
	dm_friends_only: 'This person accepts direct messages from friends only.',
	dm_shared_server_only: 'You can message this person once you share a server or are friends.',
	blocked: 'You cannot message this person: one of you blocked the other.',
	already_friends: 'You are already friends.',
	friend_request_refused: 'This person cannot receive a friend request from you.',
	// Limits
	too_many_servers: 'You are in as many servers as allowed. Leave one first.',
	too_many_channels: 'This server has as many channels as allowed.',
	too_many_roles: 'This server has as many roles as allowed.',
	too_many_invites: 'This server has as many invites as allowed. Revoke some first.',
	too_many_overwrites: 'This channel has as many permission settings as allowed.',
	too_many_relationships: 'You have as many friends, requests and blocks as allowed.',
	too_many_devices: 'You have signed in on too many devices. Remove one in Settings.',
	too_many_readers: 'Too many people can read this place for end-to-end encryption.',
	whiteboard_full: 'The whiteboard is full. Clear it to draw more.',
	backup_full: 'Your key backup is full.',
	payload_too_large: (e) => {
		const limit = /limit (\d+) bytes/.exec(e.message);
		return limit && Number(limit[1]) > 0 ? `Files can be up to ${formatBytes(Number(limit[1]))}.` : 'That is too large to send.';
	},
	unsupported_media_type: 'That kind of content cannot be sent.',
	// Requests the app got wrong, races and the server's health
	validation: (e) => asSentence(e.message) ?? 'Some of the fields are not valid.',
	not_found: 'That was not found. It may have been deleted.',
	conflict: 'Someone changed this at the same time. Please try again.',
	nonce_reused: 'This message was already sent.',
	device_keys_changed: 'Your encryption keys changed meanwhile. Reload the page and try again.',
	missing_device: 'This device is not registered for encryption any more. Reload the page.',
	wrong_backup_version: 'Your key backup changed meanwhile. Please try again.',
	ip_rule_exists: 'That rule already exists.',
	malformed_json: RELOAD,
	bad_body: RELOAD,
	bad_query: RELOAD,
	bad_path: RELOAD,
	bad_audit_reason: 'The reason contains characters that cannot be sent.',
	method_not_allowed: RELOAD,
	no_client_ip: 'The server could not tell where your request came from.',
	unavailable: 'The server is busy right now. Please try again in a moment.',
	internal: 'The server had a problem. Please try again later.'
};

/** Turns a non-2xx response into an {@link ApiError}, reading the JSON `{code, message}` body when there is one. */
export async function errorFromResponse(res: Response): Promise<ApiError> {
	let code = `http_${res.status}`;
	let message = '';
	try {
		const text = await res.text();
		if (text) {
			const body: unknown = JSON.parse(text);
			if (body && typeof body === 'object') {
				const b = body as Record<string, unknown>;
				if (typeof b.code === 'string' && b.code) code = b.code;
				if (typeof b.message === 'string') message = b.message.slice(0, MAX_MESSAGE);
			}
		}
	} catch {
		// Not JSON (a proxy's HTML page, an empty body): fall back to a message by status.
	}
	if (res.status === 429) {
		const retryAfter = parseRetryAfter(res.headers.get('Retry-After'));
		const wait = retryAfter === null ? 'in a moment' : `in ${retryAfter} s`;
		return new ApiError(429, code === 'http_429' ? 'rate_limited' : code, `Too many attempts. Try again ${wait}.`, retryAfter);
	}
	if (!message) message = fallbackMessage(res.status);
	return new ApiError(res.status, code, message);
}

function fallbackMessage(status: number): string {
	if (status === 401) return 'You are not signed in, or your session has ended.';
	if (status === 403) return 'You do not have permission to do that.';
	if (status === 404) return 'Not found.';
	if (status === 413) return 'That is too large to send.';
	if (status === 422) return 'Some of the fields are not valid.';
	if (status >= 500) return `The server had a problem (${status}). Please try again later.`;
	return `The request failed (${status}).`;
}
