// Applies the remembered theme before the first paint, so a dark choice does not flash light on
// load (the app's own code, src/lib/theme.svelte.ts, runs later and owns the setting). A file,
// not an inline script: the Content-Security-Policy allows scripts from this origin only.
try {
	var t = localStorage.getItem('copains.theme');
	if (t === 'light' || t === 'dark') document.documentElement.setAttribute('data-theme', t);
} catch (e) {
	// Storage blocked: the system theme applies.
}
