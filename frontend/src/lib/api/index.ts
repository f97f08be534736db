/** The app's API client: one module-level instance, so the access token lives in memory only. */
import { ApiClient } from './client';

export { ApiClient, CLIENT_HEADER, CLIENT_NAME } from './client';
export type { ApiClientOptions, RequestOptions } from './client';
export { ApiError, errorMessage, isApiError, parseRetryAfter } from './errors';
export type * from './types';

/** The shared client used by every screen. */
export const api = new ApiClient();
