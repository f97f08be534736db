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

/** A message to show the user for any thrown value. */
export function errorMessage(e: unknown): string {
	if (e instanceof ApiError) return SENTENCES[e.code] ?? e.message;
	return 'Something went wrong. Please try again.';
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

/** What a person reads for the refusals the app expects (the server's text is for developers). */
const SENTENCES: Record<string, string> = {
	dm_closed: 'This person does not accept direct messages.',
	dm_friends_only: 'This person accepts direct messages from friends only.',
	dm_shared_server_only: 'You can message this person once you share a server or are friends.',
	blocked: 'You cannot message this person: one of you blocked the other.',
	banned: 'You are banned from this server.'
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
