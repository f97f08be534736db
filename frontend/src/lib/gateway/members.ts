/**
 * The lazy member list: the gateway sends member presence of large servers only to sessions
 * that sent `subscribe_members` for them, and answers each new subscription with a
 * `presence_snapshot` of the online members (docs/gateway.md). The app keeps exactly one
 * subscription: the server on screen (small servers too — their snapshot refreshes presence
 * beyond what `ready` carried). Leaving a server unsubscribes; a new gateway session (`ready`)
 * starts with none, so it subscribes again; after a resume the server still has them.
 */

/** Sends a client op; false when the session is not ready (nothing was sent). */
export type SendOp = (op: string, fields: Record<string, unknown>) => boolean;

/** Keeps the gateway subscribed to the member list of the server on screen. */
export class MemberListSubscription {
	readonly #send: SendOp;
	/** The server on screen. */
	#want: string | null = null;
	/** The server subscribed on the current gateway session. */
	#sent: string | null = null;

	constructor(send: SendOp) {
		this.#send = send;
	}

	/** The server subscribed on the current session (null if none). */
	get subscribed(): string | null {
		return this.#sent;
	}

	/** The server on screen changed (null: no server, e.g. DMs or home). */
	view(serverId: string | null): void {
		this.#want = serverId;
		this.#sync();
	}

	/** A new gateway session (`ready`): it has no subscriptions yet. */
	onReady(): void {
		this.#sent = null;
		this.#sync();
	}

	/** The session was resumed: its subscriptions held; send what could not be sent while away. */
	onResumed(): void {
		this.#sync();
	}

	/** Logout: forget everything. */
	reset(): void {
		this.#want = null;
		this.#sent = null;
	}

	#sync(): void {
		if (this.#sent === this.#want) return;
		if (this.#sent !== null) {
			// Not connected: keep it recorded and try again on resume (a new session drops it anyway).
			if (!this.#send('unsubscribe_members', { server_id: this.#sent })) return;
			this.#sent = null;
		}
		if (this.#want !== null && this.#send('subscribe_members', { server_id: this.#want })) this.#sent = this.#want;
	}
}
