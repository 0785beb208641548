// Voice rooms in the web client (issue 15): two users in Chromium with its fake microphone (a
// beeping tone, --use-fake-device-for-media-stream), a room made and joined through the UI, the
// talker's packets decoded on the listener's page with energy in them, the speaking indicator,
// mute (self and by the owner) stopping the frames, the owner removing the other member and
// deleting the room. Then the fallbacks, on a phone-sized screen: MediaRecorder (AudioEncoder
// taken away before the page loads; its WebM demuxed and cut into 20 ms Opus packets) and
// WebCodecs fed by a ScriptProcessorNode (MediaStreamTrackProcessor taken away).
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { signUp, sleep, until, useWebNodeAndBrowser, withArtifacts } from './helpers.mjs';

let node;
let browser;

const env = useWebNodeAndBrowser();
before(async () => {
  ({ node, browser } = await env.ready);
});

/** Records CSP violations (the node serves the page under its CSP) before the page loads. */
const watchCsp = (more) => async (context, page) => {
  await context.addInitScript(() => {
    window.__cspViolations = [];
    window.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'}`), true);
  });
  await more?.(context, page);
};

async function noViolations(...users) {
  for (const u of users) {
    assert.deepEqual(await u.page.evaluate(() => window.__cspViolations), [], `CSP violations in ${u.name}'s page`);
    assert.deepEqual(u.logs.filter((l) => l.startsWith('[pageerror]')), [], `page errors in ${u.name}'s page`);
  }
}

const ENERGY_MIN = 0.5; // sum of squares of the decoded samples; the fake tone gives far more per second
const PEAK_MIN = 0.02; // RMS of the loudest decoded 20 ms

async function openRooms(page) {
  await page.getByRole('button', { name: 'Rooms', exact: true }).click();
  await page.getByRole('form', { name: 'New room' }).waitFor();
}

async function createRoom(page, name) {
  const form = page.getByRole('form', { name: 'New room' });
  await form.getByLabel('Room name').fill(name);
  await form.getByRole('button', { name: 'Create room' }).click();
  await page.getByRole('button', { name: new RegExp(`^Join room ${name},`) }).waitFor();
}

async function joinRoom(page, name) {
  const btn = page.getByRole('button', { name: new RegExp(`^Join room ${name},`) });
  await until(async () => {
    if (await btn.isVisible()) return true;
    await page.getByRole('button', { name: 'Refresh rooms' }).click();
    return false;
  }, { what: `room ${name} listed`, interval: 500 });
  await btn.click();
  await until(async () => (await page.locator('#room-title').textContent()) === name && (await roomConn(page)) === 'connected', { what: `in room ${name}` });
}

const roomConn = (page) => page.getByRole('status', { name: 'Room status' }).textContent();
const memberRow = (page, uid) => page.getByRole('list', { name: 'Members' }).locator(`li[data-uid="${uid}"]`);

/** The listener's decoder output for one member: {decoded, energy, peakRms, received, lost, late} or null. */
function heard(page, uid) {
  return page.evaluate((u) => {
    const s = window.__voiceStats?.speakers?.[u];
    return s ? { decoded: s.decoded, energy: s.energy, peakRms: s.peakRms, received: s.received, lost: s.lost, late: s.late } : null;
  }, uid);
}

const voiceStats = (page) => page.evaluate(() => {
  const s = window.__voiceStats;
  return s && { encoder: s.encoder, capture: s.capture, sent: s.sent, notSent: s.notSent, decoded: s.decoded, talking: s.talking, scheduled: s.scheduled, tooLate: s.tooLate, audioState: s.audioState };
});

/** Waits until `uid`'s decoded count on `page` has not moved for `quietMs`; returns it. */
async function settled(page, uid, quietMs = 1500) {
  let last = (await heard(page, uid))?.decoded ?? 0;
  let since = Date.now();
  await until(async () => {
    const now = (await heard(page, uid))?.decoded ?? 0;
    if (now !== last) {
      last = now;
      since = Date.now();
    }
    return Date.now() - since >= quietMs;
  }, { what: `${uid}'s frames to stop`, timeout: 10000, interval: 100 });
  return last;
}

async function growing(page, uid, from, by = 20) {
  return until(async () => {
    const s = await heard(page, uid);
    return s && s.decoded >= from + by ? s : null;
  }, { what: `${uid}'s frames decoded past ${from + by}`, timeout: 15000, interval: 100 });
}

let alice;
let bob;

test('two users talk in a voice room: Opus over WebCodecs, speaking, mute, owner mute, remove, delete', async (t) => {
  await withArtifacts(t, () => [alice, bob], async () => {
    [alice, bob] = await Promise.all([signUp(browser, node, 'Alice', { prepare: watchCsp() }), signUp(browser, node, 'Bob', { prepare: watchCsp() })]);
    const csp = await alice.page.evaluate(async () => (await fetch('/')).headers.get('content-security-policy'));
    assert.match(csp || '', /script-src 'self'/, 'served under the CSP');
    for (const u of [alice, bob]) u.page.on('dialog', (d) => d.accept());

    const codecs = await alice.page.evaluate(async () => ({
      encoder: typeof AudioEncoder === 'function' && (await AudioEncoder.isConfigSupported({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1, opus: { frameDuration: 20000 } })).supported,
      decoder: typeof AudioDecoder === 'function' && (await AudioDecoder.isConfigSupported({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1 })).supported,
    }));
    t.diagnostic(`this Chromium: AudioEncoder opus ${codecs.encoder}, AudioDecoder opus ${codecs.decoder}`);
    assert.ok(codecs.decoder, 'playback needs WebCodecs AudioDecoder with Opus');

    await Promise.all([openRooms(alice.page), openRooms(bob.page)]);
    await createRoom(alice.page, 'Standup');
    await joinRoom(alice.page, 'Standup');
    await joinRoom(bob.page, 'Standup');

    // Both see both, with member numbers; the owner is marked.
    for (const u of [alice, bob]) {
      await memberRow(u.page, alice.id).waitFor();
      await memberRow(u.page, bob.id).waitFor();
    }
    const noA = await memberRow(bob.page, alice.id).getAttribute('data-member-no');
    const noB = await memberRow(alice.page, bob.id).getAttribute('data-member-no');
    assert.ok(Number(noA) > 0 && Number(noB) > 0 && noA !== noB, `member numbers ${noA}, ${noB}`);
    assert.equal(await memberRow(alice.page, bob.id).locator('.member-no').textContent(), `#${noB}`);
    await memberRow(bob.page, alice.id).getByText('owner', { exact: true }).waitFor();
    // The list counts them.
    await alice.page.getByRole('button', { name: 'Refresh rooms' }).click();
    await alice.page.getByRole('button', { name: /^Open room Standup, 2 of 50 members, you are in it$/ }).waitFor();

    // Bob talks.
    const talk = bob.page.getByRole('button', { name: 'Start talking' });
    await talk.click();
    await until(async () => (await bob.page.getByRole('button', { name: 'Stop talking' }).getAttribute('aria-pressed')) === 'true', { what: 'talking' });
    const bs = await until(async () => {
      const s = await voiceStats(bob.page);
      return s?.sent > 10 ? s : null;
    }, { what: 'bob sending' });
    const expected = codecs.encoder ? 'webcodecs' : 'mediarecorder';
    assert.equal(bs.encoder, expected);
    assert.match(await bob.page.getByRole('status', { name: 'Voice status' }).textContent(), codecs.encoder ? /WebCodecs AudioEncoder/ : /MediaRecorder/);
    t.diagnostic(`talker: ${bs.encoder} from ${bs.capture}`);

    // Alice hears it: decoded frames with energy in them, and Bob shown speaking.
    const h1 = await until(async () => {
      const s = await heard(alice.page, bob.id);
      return s && s.decoded >= 50 && s.energy > ENERGY_MIN && s.peakRms > PEAK_MIN ? s : null;
    }, { what: 'bob heard with energy', timeout: 20000, interval: 100 });
    t.diagnostic(`alice decoded ${h1.decoded} of bob's packets, energy ${h1.energy.toFixed(2)}, peak RMS ${h1.peakRms.toFixed(3)}, lost ${h1.lost}, late ${h1.late}`);
    // ... and played: put on the AudioContext's clock.
    const av = await until(async () => {
      const s = await voiceStats(alice.page);
      return s?.scheduled > 20 ? s : null;
    }, { what: 'playback scheduled' });
    assert.equal(av.audioState, 'running');
    t.diagnostic(`alice's AudioContext ${av.audioState}: ${av.scheduled} packets scheduled, ${av.tooLate} decoded too late`);
    await until(async () => (await memberRow(alice.page, bob.id).getAttribute('data-speaking')) === 'true', { what: 'bob speaking on alice' });
    await memberRow(alice.page, bob.id).getByText('speaking', { exact: true }).waitFor();
    assert.ok(Number(await memberRow(alice.page, bob.id).getAttribute('data-decoded')) > 0);
    // The talker does not hear themselves (the node never sends a frame back).
    assert.equal(await heard(bob.page, bob.id), null);
    // Alice's page says how Bob's packets are made.
    await memberRow(alice.page, bob.id).getByText(codecs.encoder ? 'WebCodecs' : 'MediaRecorder', { exact: true }).waitFor();

    // Bob mutes himself: the frames stop, he is shown muted and no longer speaking.
    await bob.page.getByRole('button', { name: 'Mute yourself', exact: true }).click();
    await until(async () => (await memberRow(alice.page, bob.id).getAttribute('data-muted')) === 'true', { what: 'bob muted on alice' });
    await until(async () => (await memberRow(alice.page, bob.id).getAttribute('data-speaking')) === 'false', { what: 'bob not speaking' });
    const d1 = await settled(alice.page, bob.id);
    const sent1 = (await voiceStats(bob.page)).sent;
    await sleep(1200);
    assert.equal((await heard(alice.page, bob.id)).decoded, d1, 'no frames while muted');
    assert.equal((await voiceStats(bob.page)).sent, sent1, 'nothing sent while muted');

    // Unmuted: they come again.
    await bob.page.getByRole('button', { name: 'Unmute yourself', exact: true }).click();
    await growing(alice.page, bob.id, d1);

    // The owner mutes Bob: Bob's page shows it, the frames stop; and unmutes him.
    await alice.page.getByRole('button', { name: /^Mute (Bob|bob)/ }).click();
    await until(async () => (await bob.page.getByRole('button', { name: 'Unmute yourself', exact: true }).getAttribute('aria-pressed')) === 'true', { what: 'bob sees himself muted' });
    await bob.page.getByRole('log', { name: 'What happened' }).getByText(/muted you\./).waitFor();
    const d2 = await settled(alice.page, bob.id);
    await sleep(1000);
    assert.equal((await heard(alice.page, bob.id)).decoded, d2, 'no frames while muted by the owner');
    await alice.page.getByRole('button', { name: /^Unmute (Bob|bob)/ }).click();
    await growing(alice.page, bob.id, d2);

    // The owner removes Bob: Bob's page says he is out, and he cannot join again.
    await alice.page.getByRole('button', { name: /^Remove (Bob|bob).* from the room$/ }).click();
    await until(async () => /You were removed from this room by its owner\./.test(await bob.page.getByRole('status', { name: 'Room membership' }).textContent()), { what: 'bob out' });
    assert.equal(await bob.page.locator('#room-body').isVisible(), false);
    await memberRow(alice.page, bob.id).waitFor({ state: 'detached' });
    assert.equal((await voiceStats(bob.page))?.talking ?? false, false, "bob's microphone is off");
    await bob.page.getByRole('button', { name: 'Back to the rooms' }).click();
    await bob.page.getByRole('button', { name: /^Join room Standup,/ }).click();
    await bob.page.getByRole('alert').getByText(/the owner removed you from this room/).waitFor();

    // The owner deletes the room: out, and it is gone from the list.
    await alice.page.getByRole('button', { name: 'Delete room' }).click();
    await until(async () => /deleted/.test(await alice.page.getByRole('status', { name: 'Room membership' }).textContent()), { what: 'alice out of the deleted room' });
    await alice.page.getByRole('button', { name: /room Standup,/ }).waitFor({ state: 'detached' });
    await bob.page.getByRole('button', { name: 'Refresh rooms' }).click();
    await bob.page.getByRole('button', { name: /room Standup,/ }).waitFor({ state: 'detached' });
    await noViolations(alice, bob);
  });
});

let carol;
let dave;

test('the fallbacks on a phone-sized screen: MediaRecorder (no AudioEncoder) and WebCodecs fed by a ScriptProcessorNode (no MediaStreamTrackProcessor) decode on the other side', async (t) => {
  await withArtifacts(t, () => [carol, dave], async () => {
    [carol, dave] = await Promise.all([
      signUp(browser, node, 'Carol', {
        viewport: { width: 390, height: 780 },
        // A browser without WebCodecs' encoder: the page must fall back to MediaRecorder.
        prepare: watchCsp((context) => context.addInitScript(() => {
          delete window.AudioEncoder;
        })),
      }),
      signUp(browser, node, 'Dave', {
        // No MediaStreamTrackProcessor: WebCodecs takes its samples from a ScriptProcessorNode.
        prepare: watchCsp((context) => context.addInitScript(() => {
          delete window.MediaStreamTrackProcessor;
        })),
      }),
    ]);
    await Promise.all([openRooms(carol.page), openRooms(dave.page)]);
    await createRoom(carol.page, 'Phone room');
    await joinRoom(carol.page, 'Phone room');
    // One pane at a time: the room covers the list, and Back goes to it.
    assert.equal(await carol.page.getByRole('form', { name: 'New room' }).isVisible(), false);
    await joinRoom(dave.page, 'Phone room');
    await memberRow(carol.page, dave.id).waitFor();

    assert.equal(await carol.page.evaluate(() => typeof window.AudioEncoder), 'undefined');
    const enc = carol.page.locator('#voice-encoder');
    await until(() => enc.evaluate((el) => el.querySelector('option[value=webcodecs]').disabled), { what: 'WebCodecs offered as unavailable' });
    assert.match(await enc.locator('option[value=auto]').textContent(), /MediaRecorder/);
    await carol.page.getByRole('button', { name: 'Start talking' }).click();
    const cs = await until(async () => {
      const s = await voiceStats(carol.page);
      return s?.sent > 10 ? s : null;
    }, { what: 'carol sending', timeout: 20000 });
    assert.equal(cs.encoder, 'mediarecorder');
    assert.equal(cs.capture, 'MediaRecorder');
    assert.match(await carol.page.getByRole('status', { name: 'Voice status' }).textContent(), /MediaRecorder/);

    const heardCarol = await until(async () => {
      const s = await heard(dave.page, carol.id);
      return s && s.decoded >= 50 && s.energy > ENERGY_MIN && s.peakRms > PEAK_MIN ? s : null;
    }, { what: 'carol heard with energy', timeout: 20000, interval: 100 });
    t.diagnostic(`dave decoded ${heardCarol.decoded} of carol's 20 ms packets (MediaRecorder), energy ${heardCarol.energy.toFixed(2)}, peak RMS ${heardCarol.peakRms.toFixed(3)}`);
    // 20 ms packets on the wire, as with WebCodecs: about 50 a second.
    const a = await heard(dave.page, carol.id);
    await sleep(2000);
    const b = await heard(dave.page, carol.id);
    const rate = (b.received - a.received) / 2;
    assert.ok(rate > 35 && rate < 65, `${rate} packets a second`);
    await until(async () => (await memberRow(dave.page, carol.id).getAttribute('data-speaking')) === 'true', { what: 'carol speaking on dave' });
    await memberRow(dave.page, carol.id).getByText('MediaRecorder', { exact: true }).waitFor();

    // Stop talking: the frames stop.
    await carol.page.getByRole('button', { name: 'Stop talking' }).click();
    const d = await settled(dave.page, carol.id);
    await sleep(800);
    assert.equal((await heard(dave.page, carol.id)).decoded, d);

    // Dave answers: WebCodecs fed by a ScriptProcessorNode; Carol (MediaRecorder for sending) hears him.
    await dave.page.getByRole('button', { name: 'Start talking' }).click();
    const ds = await until(async () => {
      const s = await voiceStats(dave.page);
      return s?.sent > 10 ? s : null;
    }, { what: 'dave sending', timeout: 20000 });
    assert.deepEqual([ds.encoder, ds.capture], ['webcodecs', 'ScriptProcessorNode']);
    const heardDave = await until(async () => {
      const s = await heard(carol.page, dave.id);
      return s && s.decoded >= 50 && s.energy > ENERGY_MIN && s.peakRms > PEAK_MIN ? s : null;
    }, { what: 'dave heard with energy', timeout: 20000, interval: 100 });
    t.diagnostic(`carol decoded ${heardDave.decoded} of dave's packets (WebCodecs from a ScriptProcessorNode), energy ${heardDave.energy.toFixed(2)}`);
    await dave.page.getByRole('button', { name: 'Stop talking' }).click();

    // Leave: Dave sees Carol go.
    await carol.page.getByRole('button', { name: 'Leave', exact: true }).click();
    await memberRow(dave.page, carol.id).waitFor({ state: 'detached' });
    await dave.page.getByRole('log', { name: 'What happened' }).getByText(/left\./).waitFor();
    // Back on the list, which counts one member.
    await carol.page.getByRole('button', { name: 'Refresh rooms' }).click();
    await carol.page.getByRole('button', { name: /^Join room Phone room, 1 of 50 members$/ }).waitFor();
    await noViolations(carol, dave);
  });
});

let erin;
let frank;

test('the room survives a node restart: both pages rejoin by themselves and the audio comes back', async (t) => {
  await withArtifacts(t, () => [erin, frank], async () => {
    [erin, frank] = await Promise.all([signUp(browser, node, 'Erin', { prepare: watchCsp() }), signUp(browser, node, 'Frank', { prepare: watchCsp() })]);
    await Promise.all([openRooms(erin.page), openRooms(frank.page)]);
    await createRoom(erin.page, 'Sturdy');
    await joinRoom(erin.page, 'Sturdy');
    await joinRoom(frank.page, 'Sturdy');
    await frank.page.getByRole('button', { name: 'Start talking' }).click();
    const before1 = await growing(erin.page, frank.id, 0, 30);

    await node.restart({ downMs: 500 });
    // Both pages come back online and into the room (the SDK joins it again); Frank's
    // microphone stayed on, so Erin hears him again.
    for (const u of [erin, frank]) {
      await until(async () => (await roomConn(u.page)) === 'connected' && (await u.page.getByRole('status', { name: 'Connection', exact: true }).textContent()) === 'Online', { what: `${u.name} back in the room`, timeout: 30000, interval: 200 });
      await u.page.getByRole('log', { name: 'What happened' }).getByText(/Back in the room after reconnecting/).waitFor({ timeout: 15000 });
    }
    await memberRow(erin.page, frank.id).waitFor();
    const back = (await heard(erin.page, frank.id)).decoded;
    assert.ok(back >= before1.decoded, 'counts are per user, across member numbers');
    const after = await growing(erin.page, frank.id, back, 30);
    t.diagnostic(`erin decoded ${before1.decoded} of frank's packets before the restart, ${after.decoded} in all once back (lost ${after.lost}, late ${after.late})`);
    await until(async () => (await memberRow(erin.page, frank.id).getAttribute('data-speaking')) === 'true', { what: 'frank speaking again' });
    await noViolations(erin, frank);

    // A reload at #/rooms/<id> comes back into the room (a new connection: a new member).
    assert.match(erin.page.url(), /#\/rooms\/\d+$/);
    await erin.page.reload();
    await until(async () => (await erin.page.locator('#room-title').textContent()) === 'Sturdy' && (await roomConn(erin.page)) === 'connected', { what: 'erin back after a reload', timeout: 20000 });
    await memberRow(erin.page, frank.id).waitFor();
    await growing(erin.page, frank.id, 0, 20);
  });
});
