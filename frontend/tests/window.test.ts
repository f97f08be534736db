import { describe, expect, it } from 'vitest';
import { afterPrepend, indexById, shiftDown, shiftUp, windowRange } from '../src/lib/chat/window';

describe('rendered history window', () => {
	it('follows the newest messages and never renders more than the window', () => {
		expect(windowRange(30, null, 200)).toEqual({ start: 0, end: 30 });
		expect(windowRange(10000, null, 200)).toEqual({ start: 9800, end: 10000 });
		expect(windowRange(10000, 5000, 200)).toEqual({ start: 4800, end: 5000 });
		expect(windowRange(100, 500, 200)).toEqual({ start: 0, end: 100 });
	});

	it('walks up to the oldest message and back down to the present', () => {
		const len = 1000;
		let end: number | null = null;
		const seen = new Set<number>();
		for (let i = 0; i < 100; i++) {
			const r = windowRange(len, end);
			for (let k = r.start; k < r.end; k++) seen.add(k);
			expect(r.end - r.start).toBeLessThanOrEqual(200);
			const next = shiftUp(len, end);
			if (next === end) break;
			end = next;
		}
		expect(windowRange(len, end).start).toBe(0);
		expect(seen.size).toBe(len); // every message was rendered on the way up
		let steps = 0;
		while (end !== null && steps++ < 100) end = shiftDown(len, end);
		expect(end).toBeNull();
	});

	it('shows loaded older pages from the top', () => {
		expect(afterPrepend(150, 50)).toBeNull();
		expect(afterPrepend(250, 50)).toBe(200);
		expect(windowRange(250, 200)).toEqual({ start: 0, end: 200 });
		expect(afterPrepend(250, 0)).toBeNull();
	});

	it('finds a message by id with a binary search, skipping pending sends at the end', () => {
		const items = Array.from({ length: 10000 }, (_, i) => ({ id: String(400000000000000000n + BigInt(i * 7)) }));
		const all = [...items, { id: 'pending-1', pending: true }, { id: 'pending-2', failed: 'offline' }];
		expect(indexById(all, items[0].id)).toBe(0);
		expect(indexById(all, items[4321].id)).toBe(4321);
		expect(indexById(all, items[9999].id)).toBe(9999);
		expect(indexById(all, '400000000000000001')).toBe(-1);
		expect(indexById(all, '99')).toBe(-1);
		expect(indexById(all, 'pending-1')).toBe(-1);
		expect(indexById([], '1')).toBe(-1);
	});
});
