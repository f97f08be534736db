/** Svelte action: plays a MediaStream in a `<video>`/`<audio>` element (srcObject cannot be an attribute). */
export function media(node: HTMLMediaElement, stream: MediaStream | null) {
	const set = (s: MediaStream | null) => {
		if (node.srcObject === s) return;
		node.srcObject = s;
		if (s) node.play().catch(() => {});
	};
	set(stream);
	return {
		update: set,
		destroy() {
			node.srcObject = null;
		}
	};
}

/** Svelte action: the audio output device of an element (where setSinkId exists). */
export function sink(node: HTMLMediaElement, id: string) {
	const set = (v: string) => {
		const el = node as HTMLMediaElement & { setSinkId?: (id: string) => Promise<void> };
		if (v && el.setSinkId) el.setSinkId(v).catch(() => {});
	};
	set(id);
	return { update: set };
}

/** Svelte action: an element's playback volume (0–1) and muting (properties, not attributes). */
export function level(node: HTMLMediaElement, v: { volume: number; muted: boolean }) {
	const set = (x: { volume: number; muted: boolean }) => {
		node.volume = Math.min(1, Math.max(0, x.volume));
		node.muted = x.muted;
	};
	set(v);
	return { update: set };
}
