import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vitest/config';

// During `npm run dev`, API and gateway calls go to a running `copains serve`
// (COPAINS_URL, default http://127.0.0.1:8080) so cookies stay same-origin.
const backend = process.env.COPAINS_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
	plugins: [sveltekit()],
	// Module workers: the call frame worker (lib/voice/e2ee) imports the crypto wasm's glue. It is
	// handed the main bundle's copy of the .wasm, so the glue's default URL is dropped in workers
	// (otherwise the build would carry a second, unused copy).
	worker: {
		format: 'es',
		plugins: () => [
			{
				name: 'copains-worker-wasm-from-main',
				transform(code: string, id: string) {
					if (!id.endsWith('crypto/pkg/copains_crypto.js')) return null;
					const url = "new URL('copains_crypto_bg.wasm', import.meta.url)";
					if (!code.includes(url)) throw new Error(`copains_crypto.js no longer has ${url}`);
					return code.replace(url, 'undefined');
				}
			}
		]
	},
	server: {
		// The crypto wasm package (crypto/pkg, built by crypto/scripts/build-wasm.sh) lives outside frontend/.
		fs: { allow: ['.', '../crypto/pkg'] },
		proxy: {
			'/api': { target: backend, changeOrigin: false },
			'/gateway': { target: backend, ws: true }
		}
	},
	preview: {
		proxy: {
			'/api': { target: backend, changeOrigin: false }
		}
	},
	test: {
		include: ['tests/**/*.test.ts'],
		environment: 'node'
	}
});
