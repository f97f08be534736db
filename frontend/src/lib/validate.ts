/** Client-side checks that mirror the server's rules (the server stays the authority). */

/** Password length accepted by the server (issue 2: 8–128 characters). */
export const PASSWORD_MIN = 8;
/** Upper bound of a password's length. */
export const PASSWORD_MAX = 128;

/** An error message for a new password, or null when it is acceptable. */
export function passwordProblem(password: string): string | null {
	const length = [...password].length;
	if (length < PASSWORD_MIN) return `Use at least ${PASSWORD_MIN} characters.`;
	if (length > PASSWORD_MAX) return `Use at most ${PASSWORD_MAX} characters.`;
	return null;
}

/** An error message for an email address, or null when it looks like one. */
export function emailProblem(email: string): string | null {
	if (!email.trim()) return 'Enter your email address.';
	if (!/^[^\s@]+@[^\s@]+$/.test(email.trim())) return 'Enter a valid email address, like name@example.com.';
	return null;
}
