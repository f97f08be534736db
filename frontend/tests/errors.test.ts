import { describe, expect, it } from 'vitest';
import { ApiError, errorMessage } from '../src/lib/api';
import { asSentence, formatBytes, SENTENCES } from '../src/lib/api/errors';

/** A sentence: starts with a capital (or a quote), ends with a full stop, one line, no snake_case. */
const SENTENCE = /^[A-Z“][^\n]*[.!?]$/;

describe('errors a person reads', () => {
	it('turn every code the server sends into a sentence, not its text', () => {
		for (const code of Object.keys(SENTENCES)) {
			const raw = `raw ${code} text from the server`;
			const shown = errorMessage(new ApiError(400, code, raw));
			expect(shown, code).toMatch(SENTENCE);
			expect(shown, code).not.toContain(raw);
			expect(shown, code).not.toMatch(/\b[a-z]+_[a-z]+\b/);
		}
	});

	it('say how large a file may be in MB, not bytes', () => {
		expect(errorMessage(new ApiError(413, 'payload_too_large', 'request body too large (limit 8388608 bytes)'))).toBe('Files can be up to 8 MB.');
		expect(errorMessage(new ApiError(413, 'payload_too_large', ''))).toBe('That is too large to send.');
		expect(formatBytes(25 * 1024 * 1024)).toBe('25 MB');
		expect(formatBytes(1536 * 1024)).toBe('1.5 MB');
		expect(formatBytes(2048)).toBe('2 KB');
	});

	it('make a readable validation refusal a sentence, and hide parser output', () => {
		expect(errorMessage(new ApiError(422, 'validation', 'name must be 1–100 characters'))).toBe('Name must be 1–100 characters.');
		expect(errorMessage(new ApiError(422, 'validation', 'invalid type: integer `5`, expected a string at line 1 column 12'))).toBe(
			'Some of the fields are not valid.'
		);
		expect(errorMessage(new ApiError(422, 'validation', 'delete_message_secs must be between 0 and 604800'))).toBe('Some of the fields are not valid.');
		expect(asSentence('a file of 10485760 bytes is too large')).toBe('A file of 10 MB is too large.');
		expect(asSentence('')).toBeNull();
	});

	it('fall back to a sentence by status for codes it does not know', () => {
		expect(errorMessage(new ApiError(409, 'brand_new_code', 'the thing_id {x} clashed'))).toMatch(SENTENCE);
		expect(errorMessage(new ApiError(502, 'http_502', ''))).toMatch(/server had a problem/);
		expect(errorMessage(new ApiError(403, 'something_else', 'The server said so.'))).toBe('The server said so.');
	});

	it('keep what the client wrote itself, and never show a stack or a TypeError', () => {
		expect(errorMessage(new ApiError(0, 'network', 'Could not reach the Copains server. Check your connection and try again.'))).toMatch(/Could not reach/);
		expect(errorMessage(new ApiError(429, 'rate_limited', 'Too many attempts. Try again in 7 s.'))).toBe('Too many attempts. Try again in 7 s.');
		expect(errorMessage(new Error('Files over 64 MB cannot be sent encrypted.'))).toBe('Files over 64 MB cannot be sent encrypted.');
		expect(errorMessage(new TypeError("Cannot read properties of undefined (reading 'x')"))).toBe('Something went wrong. Please try again.');
		expect(errorMessage(new TypeError('Failed to fetch'))).toBe('Something went wrong. Please try again.');
		expect(errorMessage('a string')).toBe('Something went wrong. Please try again.');
	});
});
