/**
 * Connection state behind the reconnecting banner. Today it follows the browser's online/offline
 * events; the gateway client (a later issue) will drive `reconnecting` with its attempt count.
 */
export type ConnectionStatus = 'online' | 'offline' | 'reconnecting';

/** Reactive connection state. */
export const connection = $state<{ status: ConnectionStatus; attempt: number; retryInSeconds: number | null }>({
	status: 'online',
	attempt: 0,
	retryInSeconds: null
});

/** Marks the link as reconnecting (for the gateway client). */
export function setReconnecting(attempt: number, retryInSeconds: number | null = null): void {
	connection.status = 'reconnecting';
	connection.attempt = attempt;
	connection.retryInSeconds = retryInSeconds;
}

/** Marks the link as up again. */
export function setOnline(): void {
	connection.status = 'online';
	connection.attempt = 0;
	connection.retryInSeconds = null;
}

/** Follows the browser's online/offline events; returns a function that stops following. */
export function watchBrowserConnection(): () => void {
	const update = () => {
		if (navigator.onLine) setOnline();
		else {
			connection.status = 'offline';
			connection.retryInSeconds = null;
		}
	};
	update();
	window.addEventListener('online', update);
	window.addEventListener('offline', update);
	return () => {
		window.removeEventListener('online', update);
		window.removeEventListener('offline', update);
	};
}
