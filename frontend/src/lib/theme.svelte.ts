/** Theme preference: follow the system (prefers-color-scheme) or force light/dark. Stored locally; it is not a secret. */
export type ThemePreference = 'system' | 'light' | 'dark';

const KEY = 'copains.theme';

function read(): ThemePreference {
	try {
		const v = localStorage.getItem(KEY);
		if (v === 'light' || v === 'dark') return v;
	} catch {
		// Storage blocked: follow the system.
	}
	return 'system';
}

/** Reactive theme state. */
export const theme = $state<{ preference: ThemePreference }>({ preference: 'system' });

/** Applies a preference to `<html data-theme>` and remembers it. */
export function setTheme(preference: ThemePreference): void {
	theme.preference = preference;
	const root = document.documentElement;
	if (preference === 'system') root.removeAttribute('data-theme');
	else root.setAttribute('data-theme', preference);
	try {
		if (preference === 'system') localStorage.removeItem(KEY);
		else localStorage.setItem(KEY, preference);
	} catch {
		// Not remembered; still applied.
	}
}

/** Loads the remembered preference (call once at start). */
export function initTheme(): void {
	setTheme(read());
}

/** The theme currently shown, resolving `system` through prefers-color-scheme. */
export function effectiveTheme(): 'light' | 'dark' {
	if (theme.preference !== 'system') return theme.preference;
	return window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}
