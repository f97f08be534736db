/** Reactive E2EE state the UI reads (the engine writes it). */
import type { SasState } from './index';

export const e2eeStatus = $state<{
	state: 'idle' | 'loading' | 'ready' | 'error';
	deviceId: string | null;
	error: string | null;
	/** Bumped whenever new Megolm keys arrive: undecryptable messages are tried again. */
	keysVersion: number;
	/** Users whose device identity changed since I last saw it (TOFU warning), by user id. */
	identityChanged: Record<string, string[] | undefined>;
	/** SAS verifications in progress or just finished. */
	sas: SasState[];
	/** A recovery key was set up on this device (backup on). */
	backupEnabled: boolean;
}>({
	state: 'idle',
	deviceId: null,
	error: null,
	keysVersion: 0,
	identityChanged: {},
	sas: [],
	backupEnabled: false
});
