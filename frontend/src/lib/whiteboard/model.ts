/**
 * The whiteboard's data model, free of the DOM so it is unit-tested: the stroke shape the API
 * speaks (`api/src/whiteboard.rs`), its bounds, splitting long lines, and the board state that
 * merges loaded pages, live gateway events and my own pending strokes.
 */

/** Board size in board units: every client maps its canvas onto this (16:9). */
export const BOARD_WIDTH = 3200;
export const BOARD_HEIGHT = 1800;
/** Most points in one stroke (longer lines are sent as several strokes). */
export const MAX_POINTS = 1000;
/** Line widths offered, in board units (the API accepts 1–200; the board is 3200 wide). */
export const SIZES = [6, 12, 24, 48, 96] as const;
export const MIN_SIZE = 1;
export const MAX_SIZE = 200;
/** Colours offered, with their names (for screen readers and tooltips). */
export const COLORS: { value: string; name: string }[] = [
	{ value: '#1e1f22', name: 'Black' },
	{ value: '#e03131', name: 'Red' },
	{ value: '#f08c00', name: 'Orange' },
	{ value: '#2f9e44', name: 'Green' },
	{ value: '#1971c2', name: 'Blue' },
	{ value: '#9c36b5', name: 'Purple' }
];

export type Tool = 'pen' | 'eraser';

/** What a stroke draws (the plaintext: sent as is, or as the encrypted payload). */
export interface StrokeBody {
	tool: Tool;
	color: string;
	size: number;
	/** Flat [x0, y0, x1, y1, …] in board units. */
	points: number[];
}

/** An envelope, opaque here (see $lib/e2ee). */
export interface Envelope {
	algorithm: string;
	sender_device_id: string;
	session_id: string;
	ciphertext: string;
}

/** A stroke as the API renders it. */
export interface ApiStroke {
	id: string;
	channel_id: string;
	author_id: string | null;
	tool: Tool | null;
	color: string | null;
	size: number | null;
	points: number[] | null;
	encrypted: Envelope | null;
	nonce: string | null;
	created_at: string;
}

/** A page of `GET /channels/{id}/whiteboard`. */
export interface StrokePage {
	width: number;
	height: number;
	strokes: ApiStroke[];
	has_more: boolean;
}

/** A stroke on my screen: confirmed (an id) or still being sent (a nonce only). */
export interface BoardStroke extends StrokeBody {
	/** Server id; null while pending. */
	id: string | null;
	nonce: string | null;
	author_id: string | null;
	/** Sending failed (shown, can be retried or dropped). */
	failed?: boolean;
}

/** Snowflake ids as decimal strings: compare without losing precision. */
export function compareIds(a: string, b: string): number {
	if (a.length !== b.length) return a.length - b.length;
	return a < b ? -1 : a > b ? 1 : 0;
}

const HEX = /^#[0-9a-fA-F]{6}$/;

/** Checks a stroke body (from a peer: the API's plaintext, or a decrypted payload); null when invalid. */
export function parseBody(v: unknown): StrokeBody | null {
	if (!v || typeof v !== 'object') return null;
	const o = v as Record<string, unknown>;
	if (o.tool !== 'pen' && o.tool !== 'eraser') return null;
	if (typeof o.color !== 'string' || !HEX.test(o.color)) return null;
	if (typeof o.size !== 'number' || !Number.isInteger(o.size) || o.size < MIN_SIZE || o.size > MAX_SIZE) return null;
	const p = o.points;
	if (!Array.isArray(p) || p.length < 2 || p.length % 2 !== 0 || p.length > 2 * MAX_POINTS) return null;
	for (let i = 0; i < p.length; i += 2) {
		const x = p[i];
		const y = p[i + 1];
		if (!Number.isInteger(x) || !Number.isInteger(y) || x < 0 || x > BOARD_WIDTH || y < 0 || y > BOARD_HEIGHT) return null;
	}
	return { tool: o.tool, color: o.color.toLowerCase(), size: o.size, points: p.slice() as number[] };
}

/** Clamps and rounds a point to the board. */
export function boardPoint(x: number, y: number): [number, number] {
	const cx = Math.round(Math.min(BOARD_WIDTH, Math.max(0, x)));
	const cy = Math.round(Math.min(BOARD_HEIGHT, Math.max(0, y)));
	return [cx, cy];
}

/**
 * Appends a point unless it repeats the last one or is closer than `minDistance` board units to it
 * (pointer moves arrive faster than they matter). Returns whether it was added.
 */
export function addPoint(points: number[], x: number, y: number, minDistance = 2): boolean {
	const n = points.length;
	if (n >= 2) {
		const dx = x - points[n - 2];
		const dy = y - points[n - 1];
		if (dx * dx + dy * dy < minDistance * minDistance) return false;
	}
	points.push(x, y);
	return true;
}

/**
 * Splits a line into strokes of at most `max` points; each next part starts at the previous
 * part's last point so the line stays continuous.
 */
export function splitPoints(points: number[], max = MAX_POINTS): number[][] {
	const n = points.length / 2;
	if (n <= max) return [points];
	const out: number[][] = [];
	let start = 0;
	while (start < n - 1 || out.length === 0) {
		const end = Math.min(n, start + max);
		out.push(points.slice(start * 2, end * 2));
		if (end >= n) break;
		start = end - 1;
	}
	return out;
}

/**
 * The board as one client sees it: confirmed strokes in id order, then my pending ones. Changes
 * report whether the canvas can simply draw the new stroke on top (`append`) or must redraw.
 */
export class Board {
	/** Confirmed strokes, ascending id. */
	confirmed: BoardStroke[] = [];
	/** Mine, sent but not yet confirmed (drawn on top, in the order drawn). */
	pending: BoardStroke[] = [];
	/** Strokes with an id at or below this were cleared (ignore late copies). */
	clearedUpTo: string | null = null;

	/** Every stroke in drawing order. */
	all(): BoardStroke[] {
		return this.pending.length ? [...this.confirmed, ...this.pending] : this.confirmed;
	}

	/** Forgets everything (a fresh load follows). */
	reset(): void {
		this.confirmed = [];
		this.clearedUpTo = null;
	}

	/** Adds my stroke before the server confirmed it. */
	addPending(s: BoardStroke): void {
		this.pending.push(s);
	}

	/**
	 * A confirmed stroke (loaded, echoed by the gateway or answered by my POST). Replaces my pending
	 * stroke with the same nonce; ignores duplicates and strokes a clear removed.
	 * Returns 'none' (nothing changed), 'append' (drawn last, nothing after it) or 'redraw'.
	 */
	confirm(s: BoardStroke & { id: string }, mine: boolean): 'none' | 'append' | 'redraw' {
		if (this.clearedUpTo !== null && compareIds(s.id, this.clearedUpTo) <= 0) return 'none';
		let wasPending = false;
		if (mine && s.nonce) {
			const i = this.pending.findIndex((p) => p.nonce === s.nonce);
			if (i >= 0) {
				this.pending.splice(i, 1);
				wasPending = true;
			}
		}
		const c = this.confirmed;
		const last = c[c.length - 1];
		if (!last || compareIds(last.id as string, s.id) < 0) {
			c.push(s);
			// Appended after every confirmed stroke: only visible order changes if pending ones follow.
			return wasPending || this.pending.length ? 'redraw' : 'append';
		}
		// Out of order (a page loaded after live events, or concurrent commits): insert in place.
		let i = c.length - 1;
		while (i >= 0 && compareIds(c[i].id as string, s.id) > 0) i--;
		if (i >= 0 && c[i].id === s.id) return wasPending ? 'redraw' : 'none';
		c.splice(i + 1, 0, s);
		return 'redraw';
	}

	/** Marks my pending stroke as failed (or drops it with `drop`). */
	fail(nonce: string, drop = false): void {
		const i = this.pending.findIndex((p) => p.nonce === nonce);
		if (i < 0) return;
		if (drop) this.pending.splice(i, 1);
		else this.pending[i] = { ...this.pending[i], failed: true };
	}

	/** A clear: removes every confirmed stroke up to `upTo` (my pending ones stay: they come after). */
	clear(upTo: string): void {
		if (this.clearedUpTo === null || compareIds(upTo, this.clearedUpTo) > 0) this.clearedUpTo = upTo;
		this.confirmed = this.confirmed.filter((s) => compareIds(s.id as string, upTo) > 0);
	}

	/** How many strokes are shown. */
	get size(): number {
		return this.confirmed.length + this.pending.length;
	}
}

/** A fresh client nonce (1–64 printable ASCII). */
export function newNonce(): string {
	const b = new Uint8Array(12);
	crypto.getRandomValues(b);
	return `wb-${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
}
