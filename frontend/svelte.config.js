import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

/** @type {import('@sveltejs/kit').Config} */
const config = {
	preprocess: vitePreprocess(),
	kit: {
		// A single-page app: `copains serve` serves `build/` and falls back to
		// `index.html` for every unknown non-API path.
		adapter: adapter({ pages: 'build', assets: 'build', fallback: 'index.html', strict: true }),
		version: { pollInterval: 0 }
	}
};

export default config;
