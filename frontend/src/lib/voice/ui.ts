/** What the call view shows, filled by the engine (`./engine.ts`) and kept in `$state` by `./lobby.svelte.ts`. */
import type { Quality } from './machine';

/** A received video track: someone's camera or screen share. */
export interface RemoteTile {
	/** The receiving transceiver's mid. */
	key: string;
	/** Who sends it (null until their voice state is known). */
	userId: string | null;
	kind: 'camera' | 'screen';
	stream: MediaStream;
	/** Frames decoded so far (from getStats, every second). */
	framesDecoded: number;
}

/** A received audio track. */
export interface RemoteAudio {
	key: string;
	userId: string | null;
	stream: MediaStream;
}

/** A media device to pick. */
export interface Device {
	id: string;
	label: string;
}

/** The call view's state. */
export interface VoiceUi {
	tiles: RemoteTile[];
	audio: RemoteAudio[];
	localCamera: MediaStream | null;
	localScreen: MediaStream | null;
	quality: Quality;
	rttMs: number | null;
	loss: number | null;
	/** User ids speaking now. */
	speaking: Record<string, boolean>;
	/** Playback volume per user id, 0–1 (default 1). */
	volumes: Record<string, number>;
	devices: { audioinput: Device[]; videoinput: Device[]; audiooutput: Device[] };
	chosen: { audioinput: string; videoinput: string; audiooutput: string };
	/** The media path is end-to-end encrypted (frame encryption attached). */
	encrypted: boolean;
	/** A camera/screen/device change is under way. */
	busy: boolean;
	error: string | null;
}

/** An empty call view (device choices are kept across calls by the caller). */
export function emptyUi(chosen?: VoiceUi['chosen'], volumes?: Record<string, number>): VoiceUi {
	return {
		tiles: [],
		audio: [],
		localCamera: null,
		localScreen: null,
		quality: 'unknown',
		rttMs: null,
		loss: null,
		speaking: {},
		volumes: volumes ?? {},
		devices: { audioinput: [], videoinput: [], audiooutput: [] },
		chosen: chosen ?? { audioinput: '', videoinput: '', audiooutput: '' },
		encrypted: false,
		busy: false,
		error: null
	};
}
