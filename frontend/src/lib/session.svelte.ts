/** The signed-in state shared by every screen. The access token itself stays inside the API client. */
import { api, ApiError, type User } from './api';

/** Where the app stands on who is signed in. */
export type SessionStatus = 'loading' | 'signed-in' | 'signed-out' | 'unreachable';

/** Reactive session state: read it in components, change it only through the functions below. */
export const session = $state<{ status: SessionStatus; user: User | null; expired: boolean }>({
	status: 'loading',
	user: null,
	expired: false
});

/** On app start: restore the session from the refresh cookie, if any. */
export async function restoreSession(): Promise<void> {
	session.status = 'loading';
	try {
		if (await api.restoreSession()) {
			session.user = await api.me();
			session.status = 'signed-in';
		} else {
			session.user = null;
			session.status = 'signed-out';
		}
	} catch (e) {
		// Not reached, or a proxy says the server is down (502/503/504): offer a retry rather than
		// the login page. Any other failure of the refresh falls back to signed out.
		if (e instanceof ApiError && (e.code === 'network' || [502, 503, 504].includes(e.status))) {
			session.status = 'unreachable';
		} else {
			api.forget();
			session.user = null;
			session.status = 'signed-out';
		}
	}
}

/** Records a successful register or login. */
export function signedIn(user: User): void {
	session.user = user;
	session.expired = false;
	session.status = 'signed-in';
}

/** Ends the session on the server and locally. */
export async function signOut(): Promise<void> {
	await api.logout();
	session.user = null;
	session.status = 'signed-out';
}

/** Called when the API client reports that the session could not be refreshed. */
export function sessionLost(): void {
	session.user = null;
	session.expired = true;
	session.status = 'signed-out';
}

/** The name to show for a user: display name, else username. */
export function displayName(user: User | null): string {
	if (!user) return '';
	return user.display_name?.trim() || user.username;
}

/** A local path to go back to after login, or `/`; refuses anything that could leave the site. */
export function safeNext(value: string | null): string {
	if (!value || !value.startsWith('/') || value.startsWith('//') || value.startsWith('/\\')) return '/';
	return value;
}
