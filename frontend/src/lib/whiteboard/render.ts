/**
 * Drawing strokes on a canvas whose context is scaled so that board units map onto it. Pen
 * strokes paint; the eraser removes paint (`destination-out`), so the board's background (the
 * canvas element's own CSS colour) shows through where it passed.
 */
import type { StrokeBody } from './model';

/** Sets up `ctx` for one stroke. */
function style(ctx: CanvasRenderingContext2D, s: StrokeBody): void {
	ctx.globalCompositeOperation = s.tool === 'eraser' ? 'destination-out' : 'source-over';
	ctx.strokeStyle = s.color;
	ctx.fillStyle = s.color;
	ctx.lineWidth = s.size;
	ctx.lineCap = 'round';
	ctx.lineJoin = 'round';
}

/** Draws one whole stroke (a single point draws a dot). */
export function drawStroke(ctx: CanvasRenderingContext2D, s: StrokeBody): void {
	const p = s.points;
	if (p.length < 2) return;
	style(ctx, s);
	if (p.length === 2) {
		ctx.beginPath();
		ctx.arc(p[0], p[1], s.size / 2, 0, Math.PI * 2);
		ctx.fill();
		return;
	}
	ctx.beginPath();
	ctx.moveTo(p[0], p[1]);
	// Smooth through the midpoints (quadratic curves), ending exactly at the last point.
	for (let i = 2; i < p.length - 2; i += 2) {
		const mx = (p[i] + p[i + 2]) / 2;
		const my = (p[i + 1] + p[i + 3]) / 2;
		ctx.quadraticCurveTo(p[i], p[i + 1], mx, my);
	}
	ctx.lineTo(p[p.length - 2], p[p.length - 1]);
	ctx.stroke();
}

/** Draws the newest segment of a stroke being drawn (from point `from` to the last one). */
export function drawTail(ctx: CanvasRenderingContext2D, s: StrokeBody, from: number): void {
	const p = s.points;
	if (p.length === 2) {
		drawStroke(ctx, s);
		return;
	}
	style(ctx, s);
	ctx.beginPath();
	ctx.moveTo(p[from * 2], p[from * 2 + 1]);
	for (let i = (from + 1) * 2; i < p.length; i += 2) ctx.lineTo(p[i], p[i + 1]);
	ctx.stroke();
}

/** Clears the canvas and draws every stroke, in order. `scale`: canvas pixels per board unit. */
export function redraw(ctx: CanvasRenderingContext2D, strokes: StrokeBody[], scale: number): void {
	ctx.setTransform(1, 0, 0, 1, 0, 0);
	ctx.globalCompositeOperation = 'source-over';
	ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
	ctx.setTransform(scale, 0, 0, scale, 0, 0);
	for (const s of strokes) drawStroke(ctx, s);
}
