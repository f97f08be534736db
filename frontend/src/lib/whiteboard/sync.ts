/**
 * Keeping one place's board in step with the server: loads every page, applies the gateway's
 * `whiteboard_stroke` / `whiteboard_clear` events (live, and again after a new gateway session),
 * sends my strokes with a nonce (the echo and the answer are matched to my pending stroke), and
 * clears. In encrypted places every payload goes through `crypt` (never plaintext to the server).
 */
import { api, isApiError, errorMessage } from '$lib/api';
import { listenGateway } from '$lib/gateway';
import { Board, newNonce, parseBody, splitPoints, type ApiStroke, type BoardStroke, type Envelope, type StrokeBody, type StrokePage } from './model';

/** Encrypts / decrypts stroke payloads of an encrypted place (see $lib/e2ee). */
export interface StrokeCrypt {
	encrypt(plaintext: string): Promise<Envelope>;
	/** The plaintext, or null when it cannot be decrypted (the stroke is skipped). */
	decrypt(envelope: Envelope, authorId: string | null, strokeId: string): Promise<string | null>;
	/** Asks the author's devices for a key this device lacks (e.g. I joined after the stroke was drawn). */
	requestKey?(envelope: Envelope, authorId: string): Promise<void>;
}

/** What the view hears about. */
export interface SyncEvents {
	/** The board changed: draw `stroke` on top (`append`), or redraw everything. */
	change(kind: 'append' | 'redraw', stroke?: BoardStroke): void;
	/** A message for the status line (null clears it). */
	status(message: string | null): void;
	/** Loading state. */
	loading(on: boolean): void;
}

const PAGE = 500;
const MAX_PAGES = 20;

export class WhiteboardSync {
	readonly board = new Board();
	#stop: (() => void) | null = null;
	#loadSeq = 0;
	/** Strokes that could not be decrypted (counted for the status line). */
	undecryptable = 0;
	/** Megolm sessions whose key was already asked for (once per session and board). */
	#asked = new Set<string>();

	constructor(
		readonly channelId: string,
		readonly meId: string | null,
		readonly events: SyncEvents,
		readonly crypt: StrokeCrypt | null = null
	) {}

	/** Subscribes to the gateway and loads the board. */
	start(): void {
		this.#stop = listenGateway(
			(t, d) => void this.#onEvent(t, d),
			() => void this.load()
		);
		void this.load();
	}

	/** Unsubscribes. */
	stop(): void {
		this.#stop?.();
		this.#stop = null;
		this.#loadSeq++;
	}

	/** (Re)loads every page of the board; live events arriving meanwhile merge in by id. */
	async load(): Promise<void> {
		const seq = ++this.#loadSeq;
		this.events.loading(true);
		this.board.reset();
		this.undecryptable = 0;
		this.events.change('redraw');
		try {
			let after: string | null = null;
			for (let i = 0; i < MAX_PAGES; i++) {
				const qs = new URLSearchParams({ limit: String(PAGE) });
				if (after) qs.set('after', after);
				const page = await api.request<StrokePage>('GET', `/channels/${encodeURIComponent(this.channelId)}/whiteboard?${qs}`);
				if (seq !== this.#loadSeq) return;
				const decoded = await Promise.all(page.strokes.map((s) => this.#decode(s)));
				if (seq !== this.#loadSeq) return;
				for (const s of decoded) if (s) this.board.confirm(s, false);
				this.events.change('redraw');
				if (!page.has_more || page.strokes.length === 0) break;
				after = page.strokes[page.strokes.length - 1].id;
			}
			this.events.status(this.undecryptable ? `${this.undecryptable} strokes could not be decrypted on this device.` : null);
		} catch (e) {
			if (seq === this.#loadSeq) this.events.status(`Could not load the whiteboard: ${errorMessage(e)}`);
		} finally {
			if (seq === this.#loadSeq) this.events.loading(false);
		}
	}

	/** Sends a finished line (split into strokes of at most 1000 points). */
	async send(body: StrokeBody): Promise<void> {
		for (const points of splitPoints(body.points)) {
			const part: BoardStroke = { ...body, points, id: null, nonce: newNonce(), author_id: this.meId };
			this.board.addPending(part);
			void this.#post(part);
		}
	}

	/** Sends a failed stroke again. */
	retry(nonce: string): void {
		const s = this.board.pending.find((p) => p.nonce === nonce);
		if (!s) return;
		s.failed = false;
		this.events.change('redraw');
		void this.#post(s);
	}

	/** Drops my failed strokes from the screen. */
	discardFailed(): void {
		for (const p of this.board.pending.filter((x) => x.failed)) this.board.fail(p.nonce as string, true);
		this.events.change('redraw');
	}

	async #post(s: BoardStroke): Promise<void> {
		const nonce = s.nonce as string;
		const body: StrokeBody = { tool: s.tool, color: s.color, size: s.size, points: s.points };
		try {
			const payload = this.crypt ? { encrypted: await this.crypt.encrypt(JSON.stringify(body)), nonce } : { ...body, nonce };
			const stored = await api.request<ApiStroke>('POST', `/channels/${encodeURIComponent(this.channelId)}/whiteboard/strokes`, { body: payload });
			// My own answer: the body is what I drew (no need to decrypt my own envelope).
			const kind = this.board.confirm({ ...body, id: stored.id, nonce, author_id: stored.author_id }, true);
			if (kind !== 'none') this.events.change(kind, kind === 'append' ? this.board.confirmed[this.board.confirmed.length - 1] : undefined);
		} catch (e) {
			if (isApiError(e) && e.status === 409) {
				this.board.fail(nonce, true);
				this.events.status('The whiteboard is full: clear it to keep drawing.');
			} else if (isApiError(e) && e.status >= 400 && e.status < 500 && e.status !== 429) {
				this.board.fail(nonce, true);
				this.events.status(`A stroke was refused: ${errorMessage(e)}`);
			} else {
				this.board.fail(nonce);
				this.events.status(`A stroke could not be sent: ${errorMessage(e)}`);
			}
			this.events.change('redraw');
		}
	}

	/** Clears the board for everyone (the server checks the right to). */
	async clear(): Promise<void> {
		await api.request<void>('DELETE', `/channels/${encodeURIComponent(this.channelId)}/whiteboard`);
	}

	async #decode(s: ApiStroke): Promise<(BoardStroke & { id: string }) | null> {
		let body: StrokeBody | null;
		if (this.crypt) {
			if (!s.encrypted) return null;
			const text = await this.crypt.decrypt(s.encrypted, s.author_id, s.id);
			let parsed: unknown = null;
			try {
				parsed = text === null ? null : JSON.parse(text);
			} catch {
				parsed = null;
			}
			body = parseBody(parsed);
			if (!body) {
				this.undecryptable++;
				// Ask the author's device for the key once; its arrival reloads the board (see the view).
				const sid = typeof s.encrypted.session_id === 'string' ? s.encrypted.session_id : null;
				if (text === null && sid && s.author_id && this.crypt.requestKey && !this.#asked.has(sid) && this.#asked.size < 100) {
					this.#asked.add(sid);
					this.crypt.requestKey(s.encrypted, s.author_id).catch(() => {});
				}
			}
		} else {
			body = parseBody(s);
		}
		return body ? { ...body, id: s.id, nonce: s.nonce, author_id: s.author_id } : null;
	}

	async #onEvent(t: string, d: unknown): Promise<void> {
		if (t === 'whiteboard_stroke') {
			const s = (d as { stroke?: ApiStroke } | null)?.stroke;
			if (!s || s.channel_id !== this.channelId || typeof s.id !== 'string') return;
			const mine = s.author_id !== null && s.author_id === this.meId;
			// My own stroke from this tab: keep the body I drew (skips decrypting my own envelope).
			const local = mine && s.nonce ? this.board.pending.find((p) => p.nonce === s.nonce) : undefined;
			const decoded = local ? { ...local, id: s.id, failed: undefined } : await this.#decode(s);
			if (!decoded) return;
			const kind = this.board.confirm(decoded, mine);
			if (kind !== 'none') this.events.change(kind, kind === 'append' ? decoded : undefined);
		} else if (t === 'whiteboard_clear') {
			const c = d as { channel_id?: string; up_to?: string } | null;
			if (!c || c.channel_id !== this.channelId || typeof c.up_to !== 'string') return;
			this.board.clear(c.up_to);
			this.events.status(null);
			this.events.change('redraw');
		}
	}
}
