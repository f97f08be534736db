import { describe, expect, it } from 'vitest';
import { Board, addPoint, boardPoint, compareIds, parseBody, splitPoints, type BoardStroke } from '../src/lib/whiteboard/model';

const body = { tool: 'pen' as const, color: '#ff0000', size: 4, points: [1, 2, 3, 4] };
const stroke = (id: string | null, nonce: string | null = null): BoardStroke & { id: string } =>
	({ ...body, id, nonce, author_id: 'me' }) as BoardStroke & { id: string };

describe('whiteboard model', () => {
	it('accepts only well-formed stroke bodies from peers', () => {
		expect(parseBody(body)).toEqual(body);
		expect(parseBody({ ...body, color: '#FF00AA' })?.color).toBe('#ff00aa');
		expect(parseBody({ ...body, tool: 'eraser', points: [0, 0] })).not.toBeNull();
		for (const bad of [
			null,
			'x',
			{ ...body, tool: 'brush' },
			{ ...body, color: 'red' },
			{ ...body, size: 0 },
			{ ...body, size: 201 },
			{ ...body, size: 2.5 },
			{ ...body, points: [] },
			{ ...body, points: [1, 2, 3] },
			{ ...body, points: [-1, 0] },
			{ ...body, points: [3201, 0] },
			{ ...body, points: [0, 1801] },
			{ ...body, points: [0.5, 1] },
			{ ...body, points: ['1', 2] },
			{ ...body, points: new Array(2002).fill(1) }
		]) {
			expect(parseBody(bad), JSON.stringify(bad)?.slice(0, 80)).toBeNull();
		}
	});

	it('clamps points to the board and skips tiny moves', () => {
		expect(boardPoint(-5, 9999)).toEqual([0, 1800]);
		expect(boardPoint(10.6, 20.2)).toEqual([11, 20]);
		const p: number[] = [];
		expect(addPoint(p, 10, 10)).toBe(true);
		expect(addPoint(p, 10, 11)).toBe(false);
		expect(addPoint(p, 13, 10)).toBe(true);
		expect(p).toEqual([10, 10, 13, 10]);
	});

	it('splits long lines into continuous strokes of at most 1000 points', () => {
		const pts = Array.from({ length: 2500 * 2 }, (_, i) => i);
		const parts = splitPoints(pts);
		expect(parts.map((p) => p.length / 2)).toEqual([1000, 1000, 502]);
		// Each part starts where the previous ended.
		expect(parts[1].slice(0, 2)).toEqual(parts[0].slice(-2));
		expect(parts[2].slice(-2)).toEqual(pts.slice(-2));
		expect(splitPoints([1, 2])).toEqual([[1, 2]]);
		expect(splitPoints(pts.slice(0, 2000))).toHaveLength(1);
	});

	it('orders confirmed strokes by id, matches my pending ones by nonce and ignores duplicates', () => {
		const b = new Board();
		expect(b.confirm(stroke('100'), false)).toBe('append');
		expect(b.confirm(stroke('99'), false)).toBe('redraw');
		expect(b.confirm(stroke('100'), false)).toBe('none');
		b.addPending({ ...stroke(null, 'n1'), id: null });
		expect(b.size).toBe(3);
		// The gateway's echo of my stroke replaces the pending one.
		expect(b.confirm(stroke('101', 'n1'), true)).toBe('redraw');
		expect(b.pending).toHaveLength(0);
		// The POST's answer arriving after the echo changes nothing.
		expect(b.confirm(stroke('101', 'n1'), true)).toBe('none');
		expect(b.confirmed.map((s) => s.id)).toEqual(['99', '100', '101']);
		// Ids of different lengths compare as numbers.
		expect(compareIds('99', '100')).toBeLessThan(0);
	});

	it('a clear removes strokes up to its id, even copies arriving later', () => {
		const b = new Board();
		b.confirm(stroke('5'), false);
		b.confirm(stroke('7'), false);
		b.addPending({ ...stroke(null, 'mine'), id: null });
		b.clear('7');
		expect(b.confirmed).toHaveLength(0);
		expect(b.pending).toHaveLength(1);
		expect(b.confirm(stroke('6'), false)).toBe('none');
		expect(b.confirm(stroke('8', 'mine'), true)).toBe('redraw');
		expect(b.confirmed.map((s) => s.id)).toEqual(['8']);
		b.fail('x');
		b.addPending({ ...stroke(null, 'f'), id: null });
		b.fail('f');
		expect(b.pending[0].failed).toBe(true);
		b.fail('f', true);
		expect(b.pending).toHaveLength(0);
	});
});
