/** Shapes of the Copains REST API (`/api/v1`), as in the Foundation contract (issue 2). Ids are strings. */

/** The signed-in user, as returned by register, login and `GET /users/@me`. */
export interface User {
	id: string;
	username: string;
	email: string;
	display_name: string | null;
	created_at: string;
}

/** Body of a successful register (201) or login (200). `refresh_token` is null for web clients (it is in a cookie). */
export interface AuthResponse {
	user: User;
	access_token: string;
	refresh_token: string | null;
}

/** Body of a successful refresh (200). */
export interface RefreshResponse {
	access_token: string;
	refresh_token: string | null;
}

/** One login session of the user, as listed by `GET /users/@me/sessions`. */
export interface Session {
	id: string;
	created_at: string;
	last_used_at: string | null;
	user_agent: string | null;
	ip: string | null;
	current: boolean;
}

/** Input of `POST /auth/register`. */
export interface RegisterInput {
	username: string;
	email: string;
	password: string;
}

/** Input of `POST /auth/login`; `login` is a username or an email. */
export interface LoginInput {
	login: string;
	password: string;
}

/** Input of `PATCH /users/@me`. */
export interface ProfilePatch {
	display_name?: string | null;
}
