// Voice and video in the web app between two browsers against a real `copains serve` (its SFU):
// a server voice channel where each side decodes the other's camera (framesDecoded > 0 through
// getStats; frames end-to-end encrypted by lib/voice/e2ee), a screen share the other decodes, hanging up stops the local tracks; and a DM call
// that rings and is declined, then rings and is accepted (audio both ways).
//
// The page is instrumented by the test only (an init script, nothing in the app): it keeps the
// RTCPeerConnections and the captured MediaStreams to read getStats and readyState, and makes
// getDisplayMedia return an animated canvas stream (headless Chromium's virtual screen is static
// and may send no frame; sfu/browser-test/voice.mjs falls back to the same canvas).
import { appendFileSync } from 'node:fs';
import { assert, createInvite, eventually, newUser, register } from './lib.mjs';

function instrument() {
	if (!navigator.mediaDevices || !window.RTCPeerConnection) return; // about:blank
	window.__pcs = [];
	window.__media = [];
	const PC = window.RTCPeerConnection;
	window.RTCPeerConnection = class extends PC {
		constructor(...args) {
			super(...args);
			window.__pcs.push(this);
		}
	};
	const md = navigator.mediaDevices;
	const gum = md.getUserMedia.bind(md);
	md.getUserMedia = async (c) => {
		const s = await gum(c);
		window.__media.push(s);
		return s;
	};
	// Headless Chromium's "entire screen" is a static virtual display that may send no frame at
	// all: stand in an animated canvas (as sfu/browser-test/voice.mjs does) for the capture.
	md.getDisplayMedia = async () => {
		const canvas = document.createElement('canvas');
		canvas.width = 640;
		canvas.height = 360;
		const g = canvas.getContext('2d');
		let n = 0;
		setInterval(() => {
			g.fillStyle = `hsl(${(n += 7) % 360} 70% 50%)`;
			g.fillRect(0, 0, 640, 360);
		}, 50);
		const s = canvas.captureStream(20);
		window.__media.push(s);
		return s;
	};
}

/** Inbound RTP of the page's open peer connections: video frames decoded and audio packets, per mid. */
function inbound(page) {
	return page.evaluate(async () => {
		const out = { video: [], audio: [] };
		for (const pc of window.__pcs) {
			if (pc.connectionState === 'closed') continue;
			(await pc.getStats()).forEach((s) => {
				if (s.type === 'inbound-rtp' && s.kind === 'video') out.video.push({ mid: s.mid, frames: s.framesDecoded ?? 0 });
				if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audio.push({ mid: s.mid, packets: s.packetsReceived ?? 0 });
			});
		}
		return out;
	});
}

const decoding = (s) => s.video.filter((v) => v.frames > 0).length;
const hearing = (s) => s.audio.some((a) => a.packets > 0);

/** Every track the page captured has ended, and every peer connection is closed. */
function released(page) {
	return page.evaluate(() => ({
		tracks: window.__media.flatMap((s) => s.getTracks()).map((t) => `${t.kind}:${t.readyState}`),
		ended: window.__media.length > 0 && window.__media.every((s) => s.getTracks().every((t) => t.readyState === 'ended')),
		live: window.__media.flatMap((s) => s.getTracks()).filter((t) => t.readyState !== 'ended').length,
		closed: window.__pcs.every((pc) => pc.connectionState === 'closed')
	}));
}

/** VOICE_DEBUG=1: logs the voice frames of both pages (and the msid lines of SDP). */
function debug(who, p) {
	if (!process.env.VOICE_DEBUG) return;
	{
		p.on('websocket', (ws) => {
			const show = (dir) => (f) => {
				const t = String(f.payload);
				if (!t.includes('voice')) return;
				const msid = [...t.matchAll(/a=msid:[^\\]*/g)].map((m) => m[0]).join(' ');
				if (process.env.VOICE_DEBUG_DIR) appendFileSync(`${process.env.VOICE_DEBUG_DIR}/${who}.log`, `${Date.now()} ${dir} ${t}\n`);
				console.log(`        ${who} ${dir} ${t.replace(/"sdp":"[^"]*"/, '"sdp":…').slice(0, 260)} ${msid}`);
			};
			ws.on('framereceived', show('<-'));
			ws.on('framesent', show('->'));
		});
	}
}

async function secondBrowser(browser, baseURL) {
	const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
	context.setDefaultTimeout(10000);
	await context.addInitScript(instrument);
	const page = await context.newPage();
	const errors = [];
	page.on('pageerror', (e) => errors.push(e));
	return { context, page, errors };
}

async function createServer(page, name) {
	await page.getByRole('button', { name: 'Create a server' }).click();
	await page.getByLabel('Server name').fill(name);
	await page.getByTestId('create-server-dialog').getByRole('button', { name: 'Create' }).click();
	await page.waitForURL(/\/servers\/\d+\/\d+$/);
}

async function befriend(a, b, bUser, aUser) {
	await a.getByLabel('Add a friend').fill(bUser.username);
	await a.getByRole('button', { name: 'Send request' }).click();
	await b.getByRole('button', { name: /^Pending/ }).click();
	await b.locator(`[data-testid=friend][data-username="${aUser.username}"][data-kind=incoming]`).getByRole('button', { name: 'Accept' }).click();
	await b.getByRole('button', { name: 'All', exact: true }).click();
	await a.getByRole('button', { name: 'All', exact: true }).click();
	await a.locator(`[data-testid=friend][data-username="${bUser.username}"][data-kind=friend]`).waitFor();
}

export default [
	{
		name: 'voice channel: both decode the other’s camera, a screen share is seen, hanging up stops the tracks',
		timeoutMs: 80000,
		async run({ page, context, browser, baseURL, shot }) {
			await context.addInitScript(instrument);
			const alice = newUser();
			const bob = newUser();
			debug('alice', page);
			await register(page, alice);
			await createServer(page, `Talk ${alice.username.slice(4)}`);
			await page.getByTestId('server-menu-button').click();
			await page.getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByRole('radio', { name: 'Voice' }).check();
			await page.getByLabel('Channel name').fill('Hangout');
			await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByTestId('channel-list').getByText('Hangout').waitFor();
			const link = await createInvite(page);

			const b = await secondBrowser(browser, baseURL);
			debug('bob', b.page);
			try {
				await register(b.page, bob);
				await b.page.goto(link);
				await b.page.getByRole('button', { name: 'Accept invite' }).click();
				await b.page.waitForURL(/\/servers\/\d+\/\d+$/);

				// Alice joins and turns her camera on; bob sees her in the channel list before joining.
				await page.getByTestId('channel-list').getByText('Hangout').click();
				await page.getByRole('button', { name: 'Join voice' }).click();
				await page.getByTestId('voice-room').waitFor();
				await page.getByTestId('voice-camera').click();
				await page.locator('[data-testid=voice-tile][data-me=true][data-kind=camera]').waitFor();
				await b.page.getByTestId('channel-list').getByText('Hangout').click();
				await b.page.getByTestId('voice-occupants').getByText(alice.username).waitFor();
				await b.page.getByRole('button', { name: 'Join voice' }).click();
				await b.page.getByTestId('voice-room').waitFor();
				await b.page.getByTestId('voice-camera').click();
				// Each learns of the other (bob from alice's restated voice state).
				await page.locator('[data-testid=voice-tile]:not([data-me])').first().waitFor();
				await b.page.locator('[data-testid=voice-tile]:not([data-me])').first().waitFor();

				// Both decode each other's camera and receive audio (getStats).
				const sa = await eventually(async () => {
					const s = await inbound(page);
					return decoding(s) >= 1 && hearing(s) ? s : null;
				}, 'alice decodes bob’s video and receives his audio', 30000);
				const sb = await eventually(async () => {
					const s = await inbound(b.page);
					return decoding(s) >= 1 && hearing(s) ? s : null;
				}, 'bob decodes alice’s video and receives her audio', 30000);
				console.log(`        alice inbound ${JSON.stringify(sa.video)}; bob inbound ${JSON.stringify(sb.video)}`);
				// The app shows the camera tile, its decoded frames counted from the same stats.
				await eventually(async () => Number(await page.locator('[data-testid=voice-tile][data-kind=camera]:not([data-me])').getAttribute('data-frames')) > 0, 'alice’s tile of bob shows decoded frames');
				await eventually(async () => (await page.getByTestId('voice-bar').getAttribute('data-phase')) === 'connected', 'alice’s call is connected');
				await eventually(async () => (await page.getByTestId('voice-quality').getAttribute('data-quality')) !== 'unknown', 'connection quality is measured');
				// Frame encryption (lib/voice/e2ee) is attached to every sender and receiver of the call.
				assert((await page.getByTestId('voice-room').getAttribute('data-encrypted')) === 'true', 'alice’s call media is end-to-end encrypted');
				assert((await b.page.getByTestId('voice-room').getAttribute('data-encrypted')) === 'true', 'bob’s call media is end-to-end encrypted');
				await shot('cameras');

				// Speaking ring: Chromium's fake microphone beeps; alice's tile of bob lights up.
				const bobTile = page.locator('[data-testid=voice-tile][data-kind=camera]:not([data-me])');
				await eventually(async () => (await bobTile.getAttribute('data-speaking')) === 'true', 'alice sees bob speaking (ring)', 15000);
				// Per-user volume and deafen act on the element that plays bob's audio.
				const bobId = await bobTile.getAttribute('data-user');
				await page.getByRole('slider', { name: /^Volume of/ }).fill('30');
				const audioOf = () => page.evaluate((id) => {
					const el = document.querySelector(`audio[data-user="${id}"]`);
					return el ? { volume: el.volume, muted: el.muted, playing: !!el.srcObject } : null;
				}, bobId);
				await eventually(async () => Math.abs(((await audioOf())?.volume ?? 0) - 0.3) < 0.01, 'bob plays at 30 % for alice');
				await page.getByTestId('self-deaf').click();
				await eventually(async () => (await audioOf())?.muted === true, 'deafened: bob is not heard');
				await page.getByTestId('self-deaf').click();
				await eventually(async () => (await audioOf())?.muted === false, 'undeafened');

				// Bob shares his screen: alice decodes a second video and labels it a screen share.
				await b.page.getByTestId('voice-screen').click();
				await b.page.locator('[data-testid=voice-tile][data-me=true][data-kind=screen]').waitFor();
				let seen = null;
				await eventually(async () => decoding((seen = await inbound(page))) >= 2, 'alice decodes bob’s screen share too', 30000).catch(async (e) => {
					throw new Error(`${e.message}: ${JSON.stringify(seen)}; bob ${JSON.stringify(await inbound(b.page))}`);
				});
				const screen = page.locator('[data-testid=voice-tile][data-kind=screen]');
				await eventually(async () => Number(await screen.getAttribute('data-frames')) > 0, 'alice shows bob’s screen share with decoded frames', 15000);
				await shot('screen-share');

				// Mute shows on the other side.
				await b.page.getByTestId('self-mute').click();
				await eventually(async () => (await page.getByTestId('voice-occupants').locator('[title=Muted]').count()) === 1, 'alice sees bob muted');

				// Alice hangs up: her camera and microphone are released and bob sees her leave.
				await page.getByTestId('voice-leave').click();
				await page.getByRole('button', { name: 'Join voice' }).waitFor();
				const ra = await eventually(async () => {
					const r = await released(page);
					return r.ended && r.closed ? r : null;
				}, 'alice’s tracks ended and her connection closed');
				console.log(`        alice after hang-up: ${ra.tracks.join(' ')}`);
				await eventually(async () => (await b.page.locator('[data-testid=voice-tile]:not([data-me])').count()) === 0, 'bob sees alice leave');
				// Bob hangs up from the voice bar (camera, microphone and screen all stop).
				await b.page.getByTestId('voice-hangup').click();
				const rb = await eventually(async () => {
					const r = await released(b.page);
					return r.ended && r.closed ? r : null;
				}, 'bob’s tracks ended');
				assert(rb.tracks.length >= 3, `bob had microphone, camera and screen: ${rb.tracks}`);
				assert(b.errors.length === 0, `bob's page errors: ${b.errors[0]}`);
			} catch (e) {
				await shot('failure-bob', b.page).catch(() => {});
				throw e;
			} finally {
				await b.context.close().catch(() => {});
			}
		}
	},
	{
		name: 'DM call: rings, declined; rings again, accepted (audio both ways), hang-up ends it for both; leaving the page hangs up',
		timeoutMs: 70000,
		async run({ page, context, browser, baseURL, shot }) {
			await context.addInitScript(instrument);
			const alice = newUser();
			const bob = newUser();
			const b = await secondBrowser(browser, baseURL);
			try {
				debug('alice', page);
				debug('bob', b.page);
				await register(page, alice);
				await register(b.page, bob);
				await befriend(page, b.page, bob, alice);
				const call = () => page.locator(`[data-testid=friend][data-username="${bob.username}"]`).getByRole('button', { name: 'Ring' }).click();

				// First call: it rings on bob's side; he declines; alice's call ends and releases her microphone.
				await call();
				await page.getByTestId('voice-ringing').waitFor();
				const ring = b.page.getByTestId('incoming-call');
				await ring.waitFor();
				assert(((await ring.textContent()) ?? '').includes(alice.username), 'the ring names the caller');
				await shot('ringing', b.page);
				await ring.getByRole('button', { name: 'Decline' }).click();
				await page.locator('[data-testid=call-ended][data-reason=declined]').waitFor();
				// (A fast decline may come before her microphone was even opened.)
				await eventually(async () => (await released(page)).live === 0, 'alice’s microphone is released after the decline');
				assert((await ring.count()) === 0, 'the ring is gone on bob’s side');
				await page.getByTestId('call-ended').getByRole('button', { name: 'OK' }).click();

				// Second call: bob accepts; both hear each other.
				await call();
				await b.page.getByTestId('incoming-call').getByRole('button', { name: 'Accept' }).click();
				await b.page.getByTestId('voice-room').waitFor();
				await eventually(async () => hearing(await inbound(page)), 'alice receives bob’s audio', 30000);
				await eventually(async () => hearing(await inbound(b.page)), 'bob receives alice’s audio', 30000);
				await eventually(async () => (await page.getByTestId('voice-bar').getAttribute('data-phase')) === 'connected', 'alice’s call is connected');
				await shot('dm-call');

				// Bob hangs up: his microphone stops, and the 1:1 call ends for alice too.
				await b.page.getByTestId('voice-hangup').click();
				await eventually(async () => {
					const r = await released(b.page);
					return r.ended && r.closed;
				}, 'bob’s microphone is released');
				await page.locator('[data-testid=call-ended][data-reason=left]').waitFor();
				await eventually(async () => (await released(page)).live === 0, 'alice’s microphone is released');
				await page.getByTestId('call-ended').getByRole('button', { name: 'OK' }).click();

				// Third call: bob leaves the page instead of hanging up; the call ends for alice too.
				await call();
				await b.page.getByTestId('incoming-call').getByRole('button', { name: 'Accept' }).click();
				await eventually(async () => hearing(await inbound(page)), 'alice hears bob again', 30000);
				await b.page.goto('about:blank');
				await page.locator('[data-testid=call-ended][data-reason=left]').waitFor();
				await eventually(async () => (await released(page)).live === 0, 'alice’s microphone is released again');
				assert(b.errors.length === 0, `bob's page errors: ${b.errors[0]}`);
			} catch (e) {
				await shot('failure-bob', b.page).catch(() => {});
				throw e;
			} finally {
				await b.context.close().catch(() => {});
			}
		}
	}
];
