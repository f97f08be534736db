// Issue #8's acceptance for call encryption, through the real SFU of a live `copains serve`: two
// users in a voice channel, cameras on, frames encrypted in the browser (SFrame, frame keys over
// Olm). With E2EE on both ways, each decodes the other's video and sees the other's picture. Bob
// then has decryption switched off (the test-only localStorage switch of lib/voice/e2ee, read when
// a call starts): packets from alice keep arriving but her picture never appears on his side,
// while alice still decodes him.
//
// The page is instrumented by the test only (an init script): it keeps the RTCPeerConnections and
// captured camera streams, to read getStats and to compare 32×24 grey thumbnails of what a side
// sends with what the other side shows.
import { assert, createInvite, eventually, newUser, register } from './lib.mjs';

const DECRYPT_OFF = 'copains.test.frameDecryptOff';
/** Mean absolute grey difference (0-255): at most MATCH is the sender's picture, NO_MATCH or more is not. */
const MATCH = 8;
const NO_MATCH = 20;

function instrument() {
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
	const W = 32;
	const H = 24;
	const views = new Map();
	/** A grey thumbnail of a track (its own hidden <video>), or null before its first frame. */
	window.__thumb = (track) => {
		let v = views.get(track);
		if (!v) {
			v = document.createElement('video');
			v.muted = true;
			v.autoplay = true;
			v.style.cssText = 'position:fixed;left:-400px;top:0;width:320px;height:240px';
			v.srcObject = new MediaStream([track]);
			document.body.appendChild(v);
			v.play().catch(() => {});
			views.set(track, v);
		}
		if (v.videoWidth === 0) return null;
		const c = document.createElement('canvas');
		c.width = W;
		c.height = H;
		const g = c.getContext('2d', { willReadFrequently: true });
		g.drawImage(v, 0, 0, W, H);
		const px = g.getImageData(0, 0, W, H).data;
		const out = [];
		for (let i = 0; i < W * H; i++) out.push(Math.round((px[4 * i] + px[4 * i + 1] + px[4 * i + 2]) / 3));
		return out;
	};
	/** Thumbnails of my camera every 50 ms, the last 1.5 s of them. */
	window.__ring = [];
	setInterval(() => {
		const cam = window.__media.flatMap((s) => s.getVideoTracks()).find((t) => t.readyState === 'live');
		if (!cam) return;
		const t = window.__thumb(cam);
		if (t) window.__ring.push(t);
		if (window.__ring.length > 30) window.__ring.shift();
	}, 50);
	/** The remote video track being received (of a receiving transceiver, live), if any. */
	window.__remoteVideo = () => {
		for (const pc of window.__pcs) {
			if (pc.connectionState === 'closed') continue;
			for (const t of pc.getTransceivers()) {
				const track = t.receiver.track;
				if (track.kind === 'video' && track.readyState === 'live' && (t.currentDirection === 'recvonly' || t.currentDirection === 'sendrecv')) return track;
			}
		}
		return null;
	};
}

/** Video inbound-rtp totals of the page's open peer connections. */
function inbound(page) {
	return page.evaluate(async () => {
		const out = { framesDecoded: 0, bytesReceived: 0, packetsReceived: 0, framesReceived: 0 };
		for (const pc of window.__pcs) {
			if (pc.connectionState === 'closed') continue;
			(await pc.getStats()).forEach((s) => {
				if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
				out.framesDecoded += s.framesDecoded ?? 0;
				out.bytesReceived += s.bytesReceived ?? 0;
				out.packetsReceived += s.packetsReceived ?? 0;
				out.framesReceived += s.framesReceived ?? 0;
			});
		}
		return out;
	});
}

/** Samples, over `ms`, how far what `viewer` shows of the remote video is from `sender`'s camera. */
async function pictureDiffs(viewer, sender, ms) {
	// The viewer's thumbnail <video> of the remote track needs a moment to show its first frame.
	const shows = () => viewer.evaluate(() => {
		const t = window.__remoteVideo();
		return !!t && window.__thumb(t) !== null;
	});
	const deadline = Date.now() + 3000;
	while (!(await shows()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
	/** Per sample: the difference, Infinity when the track shows no frame at all, 'no-track' when there is none. */
	const diffs = [];
	const end = Date.now() + ms;
	while (Date.now() < end) {
		const shown = await viewer.evaluate(() => {
			const t = window.__remoteVideo();
			return t ? window.__thumb(t) : 'no track';
		});
		if (shown === 'no track') {
			diffs.push('no-track');
			await new Promise((r) => setTimeout(r, 200));
			continue;
		}
		const ring = await sender.evaluate(() => window.__ring);
		let best = Infinity;
		if (shown) {
			for (const l of ring) {
				let sum = 0;
				for (let i = 0; i < shown.length; i++) sum += Math.abs(shown[i] - l[i]);
				best = Math.min(best, sum / shown.length);
			}
		}
		diffs.push(Math.round(best * 10) / 10);
		await new Promise((r) => setTimeout(r, 200));
	}
	return diffs;
}

async function joinWithCamera(page) {
	await page.getByRole('button', { name: 'Join voice' }).click();
	await page.getByTestId('voice-room').waitFor();
	// The call may still be setting up (media encryption loads first): click until the camera is on.
	const mine = page.locator('[data-testid=voice-tile][data-me=true][data-kind=camera]');
	await eventually(async () => {
		if (await mine.count()) return true;
		const cam = page.getByTestId('voice-camera');
		if ((await cam.getAttribute('aria-pressed')) !== 'true' && (await cam.isEnabled())) await cam.click();
		return false;
	}, 'my camera tile shows', 15000);
}

export default [
	{
		name: 'voice channel with E2EE: both decode; with decryption off on one side no picture decodes there',
		timeoutMs: 85000,
		async run({ page, context, browser, baseURL, shot }) {
			await context.addInitScript(instrument);
			const alice = newUser();
			const bob = newUser();
			await register(page, alice);
			await page.getByRole('button', { name: 'Create a server' }).click();
			await page.getByLabel('Server name').fill(`Crypt ${alice.username.slice(4)}`);
			await page.getByTestId('create-server-dialog').getByRole('button', { name: 'Create' }).click();
			await page.waitForURL(/\/servers\/\d+\/\d+$/);
			await page.getByTestId('server-menu-button').click();
			await page.getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByRole('radio', { name: 'Voice' }).check();
			await page.getByLabel('Channel name').fill('Hangout');
			await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByTestId('channel-list').getByText('Hangout').waitFor();
			const link = await createInvite(page);

			const bctx = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
			bctx.setDefaultTimeout(10000);
			await bctx.addInitScript(instrument);
			const b = await bctx.newPage();
			const bErrors = [];
			b.on('pageerror', (e) => bErrors.push(e));
			try {
				await register(b, bob);
				await b.goto(link);
				await b.getByRole('button', { name: 'Accept invite' }).click();
				await b.waitForURL(/\/servers\/\d+/);
				await b.getByTestId('channel-list').getByText('Hangout').waitFor();

				// 1. E2EE on both sides: each decodes the other and shows the other's picture.
				// (Both open the channel before anyone is in it: its row then shows its name.)
				await page.getByTestId('channel-list').getByText('Hangout').click();
				await b.getByTestId('channel-list').getByText('Hangout').click();
				await joinWithCamera(page);
				await joinWithCamera(b);
				const decodes = (p, who) =>
					eventually(async () => (await inbound(p)).framesDecoded > 10, `${who} decodes the other's encrypted video`, 30000);
				await decodes(page, 'alice');
				await decodes(b, 'bob');
				const onA = await pictureDiffs(page, b, 3000);
				const onB = await pictureDiffs(b, page, 3000);
				console.log(`        E2EE on: alice shows bob ${onA.join(' ')}; bob shows alice ${onB.join(' ')}`);
				assert(onA.filter((d) => d <= MATCH).length >= onA.length * 0.7, `alice shows bob's picture (${onA.join(' ')})`);
				assert(onB.filter((d) => d <= MATCH).length >= onB.length * 0.7, `bob shows alice's picture (${onB.join(' ')})`);
				await shot('e2ee-on-alice');
				await shot('e2ee-on-bob', b);

				// 2. Bob leaves, switches his decryption off, and joins again (a new call: new keys).
				await b.getByTestId('voice-leave').click();
				await b.getByRole('button', { name: 'Join voice' }).waitFor();
				await b.evaluate((k) => localStorage.setItem(k, '1'), DECRYPT_OFF);
				await joinWithCamera(b);
				await decodes(page, 'alice (bob decrypting nothing)');
				const start = await inbound(b);
				const offB = await pictureDiffs(b, page, 6000);
				const end = await inbound(b);
				console.log(
					`        bob without decryption: ${end.framesReceived - start.framesReceived} frames and ${end.bytesReceived - start.bytesReceived} bytes received, ` +
						`framesDecoded ${end.framesDecoded}; picture differences ${offB.join(' ')}`
				);
				assert(end.bytesReceived - start.bytesReceived > 50_000, `alice's video keeps reaching bob (${JSON.stringify({ start, end })})`);
				// libvpx may turn an undecryptable frame into noise (counted in framesDecoded); alice's picture must never show.
				assert(offB.every((d) => d >= NO_MATCH), `bob never shows alice's picture (${offB.join(' ')})`);
				const offA = await pictureDiffs(page, b, 2000);
				assert(offA.filter((d) => d <= MATCH).length >= offA.length * 0.7, `alice still shows bob's picture (${offA.join(' ')})`);
				await shot('decrypt-off-bob', b);
				assert(bErrors.length === 0, `bob's page errors: ${bErrors.join(' | ')}`);
			} catch (e) {
				await shot('failure-bob', b).catch(() => {});
				throw e;
			} finally {
				await bctx.close().catch(() => {});
			}
		}
	}
];
