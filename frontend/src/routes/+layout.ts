// A single-page app: no server rendering, no prerendered routes; `index.html` is the fallback.
export const ssr = false;
export const prerender = false;
