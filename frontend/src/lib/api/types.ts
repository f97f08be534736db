/** Shapes of the Copains REST API (`/api/v1`), as in the Foundation contract (issue 2). Ids are strings. */

/** The signed-in user, as returned by register, login and `GET /users/@me`. */
export interface User {
	id: string;
	username: string;
	email: string;
	display_name: string | null;
	created_at: string;
	/** Who may start a DM with me (absent from older servers: the default). */
	dm_policy?: DmPolicy;
}

/** Who may start a DM with a user: friends and anyone sharing a server (default), friends only, or nobody. */
export type DmPolicy = 'server_members' | 'friends' | 'nobody';

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
	dm_policy?: DmPolicy;
}

/** A user as shown inside communities (members, inviters, DM recipients). */
export interface UserSummary {
	id: string;
	username: string;
	display_name: string | null;
}

/** A server (community), as `GET /users/@me/servers` and `POST /servers` render it. */
export interface Server {
	id: string;
	name: string;
	owner_id: string;
	description?: string | null;
	icon?: string | null;
	member_count?: number;
	created_at?: string;
}

/** What a channel is. */
export type ChannelKind = 'text' | 'voice' | 'category';

/** A server channel. `encrypted` is set at creation and can never be turned off. */
export interface Channel {
	id: string;
	server_id: string;
	kind: ChannelKind;
	name: string;
	parent_id: string | null;
	position: number;
	topic: string | null;
	slowmode_secs: number;
	encrypted: boolean;
}

/** Input of `POST /servers/{id}/channels`. */
export interface NewChannel {
	name: string;
	kind: ChannelKind;
	parent_id?: string | null;
	encrypted?: boolean;
}

/** A role of a server (`@everyone` has the server's id). `permissions` is a bitfield (a string in the gateway's ready). */
export interface Role {
	id: string;
	server_id?: string;
	name: string;
	color: number;
	position: number;
	permissions: number | string;
	hoist: boolean;
	mentionable: boolean;
}

/** A member of a server. */
export interface Member {
	server_id: string;
	user: UserSummary;
	nickname: string | null;
	roles: string[];
	joined_at: string;
	timeout_until?: string | null;
}

/** An invite as its server's managers see it. */
export interface Invite {
	code: string;
	server_id: string;
	uses: number;
	max_uses: number | null;
	expires_at: string | null;
}

/** What anyone holding an invite code may see before joining. */
export interface InvitePreview {
	code: string;
	server_id: string;
	server_name: string;
	server_description?: string | null;
	/** A picture for the server (shown when it is same-origin or a data: image; CSP allows no other). */
	server_icon?: string | null;
	member_count: number;
	/** Members online now; absent or null when the server cannot tell. */
	online_count?: number | null;
	inviter?: UserSummary | null;
	expires_at?: string | null;
	/** I am banned from this server (only when the preview was asked signed in). */
	banned?: boolean;
}

/** One emoji's reactions on a message. */
export interface ReactionCount {
	emoji: string;
	count: number;
	me: boolean;
}

/** A message. `content` is null in encrypted places (they carry an opaque `encrypted` envelope). */
export interface Message {
	id: string;
	channel_id: string;
	server_id?: string | null;
	author_id: string | null;
	content: string | null;
	encrypted?: unknown;
	nonce?: string | null;
	reply_to?: string | null;
	pinned?: boolean;
	edited_at: string | null;
	created_at: string;
	reactions?: ReactionCount[];
	mentions?: string[];
	mention_everyone?: boolean;
	attachments?: Attachment[];
}

/** An uploaded file, attached to a message once sent. Downloads need my token. */
export interface Attachment {
	id: string;
	channel_id: string;
	message_id?: string | null;
	filename: string;
	content_type: string;
	size: number;
	encrypted: boolean;
	url: string;
	created_at: string;
}

/** My read state of one place (`GET /users/@me/read-states`). */
export interface ReadState {
	channel_id: string;
	server_id: string | null;
	last_read_id: string | null;
	last_message_id: string | null;
	unread_count: number;
	mention_count: number;
}

/** Query of `GET /channels/{id}/messages` (ids are cursors; `limit` 1–100). */
export interface HistoryQuery {
	before?: string;
	after?: string;
	limit?: number;
}

/** How I see another user. */
export type RelationshipKind = 'friend' | 'outgoing' | 'incoming' | 'blocked' | 'none';

/** My relationship with another user (`GET /users/@me/relationships`, gateway `relationship_update`). */
export interface Relationship {
	user: UserSummary;
	kind: RelationshipKind;
	since?: string | null;
}

/** A thread: a child channel of a text channel, started from one of its messages. */
export interface Thread {
	id: string;
	parent_id: string;
	server_id: string;
	starter_message_id: string;
	name: string;
	owner_id?: string | null;
	archived: boolean;
	auto_archive_secs: number;
	last_activity_at: string;
	created_at: string;
}

/** A ban of a server. */
export interface Ban {
	user: UserSummary;
	reason?: string | null;
	moderator_id?: string | null;
	delete_message_secs: number;
	created_at: string;
}

/** One audit-log entry of a server. */
export interface AuditEntry {
	id: string;
	action: string;
	actor_id?: string | null;
	target_id?: string | null;
	reason?: string | null;
	changes: Record<string, unknown>;
	created_at: string;
}

/** A channel permission overwrite for a role (the server id for @everyone) or a member. */
export interface Overwrite {
	target_id: string;
	kind: 'role' | 'member';
	allow: number;
	deny: number;
}

/** A DM or group DM (`GET /users/@me/channels`); always end-to-end encrypted. */
export interface DmChannel {
	id: string;
	kind: 'dm' | 'group_dm';
	owner_id: string | null;
	name: string | null;
	/** Every member, me included. */
	recipients: UserSummary[];
	encrypted: boolean;
	last_message_id: string | null;
}

/** The `encrypted` envelope of a message in an encrypted place (the server stores it opaque). */
export interface EncryptedEnvelope {
	algorithm: string;
	sender_device_id: string;
	session_id: string;
	ciphertext: string;
}
