// The general MQTT broker (DESIGN.md section 3), outside the IM namespaces, with clients no one
// here wrote: MQTT.js over TCP and over WebSocket (/mqtt on the HTTP port), 3.1.1 and 5, and
// Debian's mosquitto_pub / mosquitto_sub (TCP).
//
// - authentication: anonymous clients are refused by default, a bad token is refused, a user id
//   and a token (or the password) get in;
// - the default ACL: a user may use app/<own id>/# and read app/public/#; a refused SUBSCRIBE
//   gets a failure code (0x80 / 0x87) and a refused PUBLISH is delivered to no one (MQTT 5: PUBACK
//   0x87; 3.1.1: acknowledged and dropped);
// - QoS 1 both ways, retained messages set, read and cleared;
// - mqtt_acl_file (a node of its own): anonymous clients by the file's global rules, deny wins,
//   and a file that does not parse stops the node (exit 2, its line named);
// - the edge: a malformed packet, an oversize packet and a silent connection close only that
//   connection, while another client goes on; /mqtt refuses an upgrade without the subprotocol
//   and closes on a text message (1003).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';

import { login, register } from './lib/http.mjs';
import {
  RawMqtt,
  connectPacket,
  mosquittoPub,
  mosquittoSub,
  mqttConnect,
  packet,
  publishPacket,
  varint,
} from './lib/mqtt.mjs';
import { ConvergeNode, startNode, useNode } from './lib/node.mjs';

const h = useNode();
let alice; // {user, token} with a second device token
let bob;
let uniq = 0;
const id = (p) => `${p}-${process.pid}-${++uniq}`;

before(async () => {
  const node = await h.ready;
  await register(node, 'alice');
  await register(node, 'bob');
  alice = { user: 'alice', token: await login(node, 'alice', 'a-phone'), token2: await login(node, 'alice', 'a-pad') };
  bob = { user: 'bob', token: await login(node, 'bob', 'b-phone') };
});

const as = (who, token = who.token) => ({ username: who.user, password: token });
const matrix = [
  { transport: 'tcp', version: 4 },
  { transport: 'tcp', version: 5 },
  { transport: 'ws', version: 4 },
  { transport: 'ws', version: 5 },
];
const label = ({ transport, version }) => `${transport} MQTT ${version === 5 ? '5' : '3.1.1'}`;

// A refused SUBSCRIBE: 3.1.1 has one failure code, 0x80; MQTT 5 leaves the choice among its
// reason codes to the server: 0x80 (Unspecified error, what the Paho suite expects) or 0x87
// (Not authorized).
function assertRefused(code, version, what) {
  const allowed = version === 5 ? [0x80, 0x87] : [0x80];
  assert.ok(allowed.includes(code), `${what}: SUBACK code ${code}, expected one of ${allowed}`);
}

describe('authentication', () => {
  test('the node reports its MQTT port (127.0.0.1:0 in tests)', () => {
    assert.ok(h.node.mqttPort > 0 && h.node.mqttPort !== 1883, `mqttPort ${h.node.mqttPort}`);
  });

  for (const m of matrix) {
    test(`anonymous clients are refused by default (${label(m)})`, async () => {
      const err = await mqttConnect(h.node, { ...m, clientId: id('anon') }).then(
        (c) => (c.end(), null),
        (e) => e,
      );
      assert.ok(err, 'an anonymous CONNECT was accepted');
      // 3.1.1: 5 "not authorized"; MQTT 5: 0x87 "Not authorized".
      assert.equal(err.code, m.version === 5 ? 0x87 : 5, err.message);
    });
  }

  test('mosquitto_sub without a username is refused (3.1.1 and 5)', async () => {
    for (const version of [4, 5]) {
      const s = await mosquittoSub(h.node, { topic: 'app/public/#', version, waitS: 2 });
      const r = await s.done;
      assert.notEqual(r.code, 0, `exit 0: ${r.stdout}`);
      assert.match(r.stderr + r.stdout, /authori[sz]ed/i);
    }
  });

  for (const m of matrix) {
    test(`a wrong token is refused (${label(m)})`, async () => {
      const err = await mqttConnect(h.node, { ...m, clientId: id('bad'), username: 'alice', password: 'not-a-token' }).then(
        (c) => (c.end(), null),
        (e) => e,
      );
      assert.ok(err, 'a CONNECT with a bad password was accepted');
      // Either refusal is within the spec: bad user name or password, or not authorized.
      const allowed = m.version === 5 ? [0x86, 0x87] : [4, 5];
      assert.ok(allowed.includes(err.code), `code ${err.code}: ${err.message}`);
    });
  }

  test('the password works as well as a token', async () => {
    const c = await mqttConnect(h.node, { clientId: id('pw'), username: 'alice', password: 'pw-alice' });
    assert.ok(c.client.connected);
    await c.end();
  });
});

describe('publish and subscribe under the default ACL', () => {
  for (const m of matrix) {
    // The subscriber on one transport and version, the publisher on the other of each.
    const other = { transport: m.transport === 'tcp' ? 'ws' : 'tcp', version: m.version === 5 ? 4 : 5 };
    test(`app/<self>/... round trip, QoS 0 and 1 (${label(m)} subscriber, ${label(other)} publisher)`, async () => {
      const topic = `app/alice/${id('t')}`;
      const sub = await mqttConnect(h.node, { ...m, clientId: id('sub'), ...as(alice) });
      const pub = await mqttConnect(h.node, { ...other, clientId: id('pub'), ...as(alice, alice.token2) });
      try {
        assert.deepEqual(await sub.sub(`${topic}/#`, 1), [1]);
        await pub.pub(`${topic}/q0`, 'zero', 0);
        const ack = await pub.pub(`${topic}/q1`, 'one', 1);
        assert.ok(!ack.reasonCode, `PUBACK reason ${ack.reasonCode}`);
        const q0 = await sub.waitFor((x) => x.topic === `${topic}/q0`);
        const q1 = await sub.waitFor((x) => x.topic === `${topic}/q1`);
        assert.equal(q0.payload, 'zero');
        assert.equal(q0.packet.qos, 0);
        assert.equal(q1.payload, 'one');
        assert.equal(q1.packet.qos, 1);
        // In the order published.
        assert.ok(sub.messages.indexOf(q0) < sub.messages.indexOf(q1));
      } finally {
        await sub.end();
        await pub.end();
      }
    });
  }

  for (const version of [4, 5]) {
    test(`mosquitto_pub to MQTT.js and MQTT.js to mosquitto_sub, QoS 1 (MQTT ${version === 5 ? '5' : '3.1.1'})`, async () => {
      const topic = `app/bob/${id('mosq')}`;
      const js = await mqttConnect(h.node, { version, clientId: id('js'), ...as(bob) });
      try {
        await js.sub(topic, 1);
        const p = await mosquittoPub(h.node, { topic, message: 'from mosquitto', qos: 1, version, ...as(bob), clientId: id('mp') });
        assert.equal(p.code, 0, p.stderr);
        const got = await js.waitFor((x) => x.topic === topic);
        assert.equal(got.payload, 'from mosquitto');
        assert.equal(got.packet.qos, 1);

        const s = await mosquittoSub(h.node, { topic, qos: 1, version, ...as(bob), clientId: id('ms') });
        await js.pub(topic, 'from mqtt.js', 1);
        const r = await s.done;
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(r.messages, [{ topic, qos: 1, retain: false, payload: 'from mqtt.js' }]);
      } finally {
        await js.end();
      }
    });
  }

  test('retained: set with mosquitto_pub, read by later subscribers with the flag, then cleared', async () => {
    const topic = `app/alice/${id('state')}`;
    let p = await mosquittoPub(h.node, { topic, message: 'on', qos: 1, retain: true, ...as(alice) });
    assert.equal(p.code, 0, p.stderr);
    for (const m of matrix) {
      const c = await mqttConnect(h.node, { ...m, clientId: id('ret'), ...as(alice) });
      try {
        await c.sub(topic, 1);
        const got = await c.waitFor((x) => x.topic === topic, 5000, `the retained message (${label(m)})`);
        assert.equal(got.payload, 'on');
        assert.equal(got.packet.retain, true);
      } finally {
        await c.end();
      }
    }
    const s = await mosquittoSub(h.node, { topic, qos: 1, version: 5, ...as(alice) });
    const r = await s.done;
    assert.deepEqual(r.messages, [{ topic, qos: 1, retain: true, payload: 'on' }]);

    // An empty retained publish clears it: a new subscriber gets nothing, then a live message.
    p = await mosquittoPub(h.node, { topic, message: null, qos: 1, retain: true, ...as(alice) });
    assert.equal(p.code, 0, p.stderr);
    const c = await mqttConnect(h.node, { clientId: id('ret2'), ...as(alice) });
    try {
      await c.sub(topic, 1);
      await c.pub(topic, 'live', 1);
      const live = await c.waitFor((x) => x.topic === topic);
      assert.equal(live.payload, 'live');
      assert.equal(live.packet.retain, false);
      assert.equal(c.messages.filter((x) => x.topic === topic).length, 1, 'a cleared retained message came back');
    } finally {
      await c.end();
    }
  });

  for (const m of matrix) {
    test(`another user's app/ tree: SUBSCRIBE refused, PUBLISH delivered to no one (${label(m)})`, async () => {
      const base = `app/bob/${id('deny')}`;
      const eve = await mqttConnect(h.node, { ...m, clientId: id('alice'), ...as(alice) });
      const owner = await mqttConnect(h.node, { ...m, clientId: id('bob'), ...as(bob) });
      try {
        const [code] = await eve.sub(`${base}/#`, 1);
        assertRefused(code, m.version, `${base}/#`);
        // Read-only app/public/#: subscribing is granted, publishing there is not.
        assert.deepEqual(await eve.sub('app/public/#', 1), [1]);
        assert.deepEqual(await owner.sub([`${base}/#`, 'app/public/#'], 1), [1, 1]);

        const a = await eve.pub(`${base}/x`, 'intruder', 1);
        const b = await eve.pub(`app/public/${id('p')}`, 'graffiti', 1);
        if (m.version === 5) {
          assert.equal(a.reasonCode, 0x87, 'PUBACK of a refused publish');
          assert.equal(b.reasonCode, 0x87, 'PUBACK of a refused publish');
        }
        // The owner's own publish comes after: once it arrives, the refused ones would have too.
        await owner.pub(`${base}/marker`, 'mine', 1);
        await owner.waitFor((x) => x.topic === `${base}/marker`);
        assert.deepEqual(
          owner.messages.map((x) => x.payload),
          ['mine'],
          'a publish the ACL refused was delivered',
        );
        assert.ok(eve.client.connected, 'a refused publish closed the connection');
      } finally {
        await eve.end();
        await owner.end();
      }
    });
  }
});

describe('the edge: one bad connection closes alone', () => {
  // A connected, subscribed client that must keep working through each attack.
  async function bystander() {
    const topic = `app/alice/${id('bystander')}`;
    const c = await mqttConnect(h.node, { version: 5, clientId: id('by'), ...as(alice) });
    await c.sub(topic, 1);
    return {
      c,
      async check() {
        const n = id('n');
        await c.pub(topic, n, 1);
        await c.waitFor((x) => x.payload === n, 5000, 'the bystander\'s own message');
      },
    };
  }

  test('garbage instead of CONNECT', async () => {
    const by = await bystander();
    try {
      const raw = await RawMqtt.connect(h.node.mqttPort);
      await raw.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      assert.ok(await raw.waitClosed(), 'not closed');
      await by.check();
    } finally {
      await by.c.end();
    }
  });

  test('a malformed packet after CONNECT (a 5-byte remaining length, QoS 3 PUBLISH)', async () => {
    const by = await bystander();
    try {
      for (const bad of [
        Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]), // remaining length over 4 bytes
        packet(0x36, Buffer.from([0, 1, 0x61, 0, 1])), // PUBLISH with QoS 3
        packet(0x82, Buffer.from([0, 1])), // SUBSCRIBE with no filter
      ]) {
        const raw = await RawMqtt.connect(h.node.mqttPort);
        await raw.write(connectPacket({ clientId: id('raw'), ...as(alice) }));
        const connack = await raw.read(4);
        assert.deepEqual([...connack.subarray(0, 4)], [0x20, 2, 0, 0], 'CONNACK accepted');
        await raw.write(bad);
        assert.ok(await raw.waitClosed(), `not closed after ${bad.toString('hex')}`);
        await by.check();
      }
    } finally {
      await by.c.end();
    }
  });

  test('an oversize packet closes the connection before its body is read (3.1.1 and 5)', async () => {
    const by = await bystander();
    try {
      for (const version of [4, 5]) {
        const raw = await RawMqtt.connect(h.node.mqttPort);
        await raw.write(connectPacket({ clientId: id('big'), version, ...as(alice) }));
        await raw.read(4);
        // Announces 2 MiB (over the 1 MiB default) and sends only the start of it.
        const head = Buffer.concat([Buffer.from([0x30]), varint(2 << 20), Buffer.from([0, 3, 0x61, 0x70, 0x70])]);
        await raw.write(head);
        assert.ok(await raw.waitClosed(), `MQTT ${version}: an oversize packet did not close`);
        if (version === 5) {
          // DISCONNECT 0x95 (Packet too large) before the close, after the CONNACK.
          const bytes = raw.data;
          const i = bytes.indexOf(0xe0, 4);
          if (i >= 0) assert.equal(bytes[i + 2], 0x95, `DISCONNECT ${bytes.toString('hex')}`);
        }
        await by.check();
      }
      // MQTT.js itself, over WebSocket: a publish over the limit closes that client only.
      const big = await mqttConnect(h.node, { transport: 'ws', version: 4, clientId: id('bigws'), ...as(alice) });
      big.client.publish(`app/alice/${id('huge')}`, Buffer.alloc((1 << 20) + 1000, 0x61), { qos: 0 });
      assert.ok(await big.waitClosed(), 'an oversize publish over WebSocket did not close');
      await by.check();
    } finally {
      await by.c.end();
    }
  });
});

describe('MQTT over WebSocket: the /mqtt endpoint', () => {
  function upgrade(protocols) {
    return new Promise((resolve) => {
      const ws = new WebSocket(h.node.mqttWsUrl, protocols);
      ws.on('open', () => resolve({ ws, protocol: ws.protocol }));
      ws.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode }));
      ws.on('error', (e) => resolve({ error: e.message }));
    });
  }

  test('the subprotocol mqtt is selected; an upgrade without it gets 400', async () => {
    const ok = await upgrade(['mqtt']);
    assert.equal(ok.protocol, 'mqtt');
    ok.ws.terminate();
    const two = await upgrade(['mqttv3.1', 'mqtt']);
    assert.equal(two.protocol, 'mqtt');
    two.ws.terminate();
    assert.equal((await upgrade([])).status, 400);
    assert.equal((await upgrade(['mqttv3.1'])).status, 400);
  });

  test('a text message closes with 1003', async () => {
    const { ws } = await upgrade(['mqtt']);
    const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    ws.send('CONNECT');
    assert.equal(await closed, 1003);
  });

  test('a CONNECT split over several messages, and two packets in one message, both work', async () => {
    const { ws } = await upgrade(['mqtt']);
    const got = [];
    ws.on('message', (d) => got.push(...d));
    const connect = connectPacket({ clientId: id('split'), ...as(alice) });
    for (let i = 0; i < connect.length; i += 5) ws.send(connect.subarray(i, i + 5));
    const topic = `app/alice/${id('w')}`;
    // SUBSCRIBE (packet id 1, QoS 0) and a PUBLISH to it, in one message.
    const sub = packet(0x82, Buffer.concat([Buffer.from([0, 1, 0, topic.length]), Buffer.from(topic), Buffer.from([0])]));
    ws.send(Buffer.concat([sub, publishPacket(topic, 'both')]));
    const deadline = Date.now() + 5000;
    while (!Buffer.from(got).includes(Buffer.from('both')) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20)); // polling the bytes received, bounded
    const bytes = Buffer.from(got);
    assert.deepEqual([...bytes.subarray(0, 4)], [0x20, 2, 0, 0], `CONNACK: ${bytes.toString('hex')}`);
    assert.ok(bytes.includes(Buffer.from('both')), `no PUBLISH back: ${bytes.toString('hex')}`);
    ws.terminate();
  });
});

describe('mqtt_acl_file and mqtt_allow_anonymous (a node of their own)', () => {
  let node;
  let dir;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'converge-acl-'));
    const acl = path.join(dir, 'acl');
    await writeFile(
      acl,
      [
        '# global rules: every client, anonymous ones too',
        'topic readwrite open/#',
        'topic deny open/secret/#',
        '# the IM namespaces are never the ACL\'s to give to anonymous clients',
        'topic readwrite user/#',
        'topic readwrite group/#',
        'user carol',
        'topic readwrite carol-only/#',
        '',
      ].join('\n'),
    );
    node = await startNode({
      flags: [
        '--mqtt-allow-anonymous', 'true',
        '--mqtt-acl-file', acl,
        '--mqtt-max-keepalive', '60',
        '--mqtt-connect-timeout-ms', '700',
      ],
    });
    await register(node, 'carol');
  });
  after(async () => {
    await node?.stop({ removeData: true });
    await rm(dir, { recursive: true, force: true });
  });

  test('anonymous clients use the global rules; deny wins over readwrite #', async () => {
    for (const m of matrix) {
      const c = await mqttConnect(node, { ...m, clientId: id('anon') });
      const wide = await mqttConnect(node, { ...m, clientId: id('wide') });
      try {
        const t = `open/${id('a')}`;
        const codes = await c.sub([`${t}/#`, 'open/secret/x', 'carol-only/#'], 1);
        assert.equal(codes.length, 3, `SUBACK codes ${codes}`);
        assert.equal(codes[0], 1);
        assertRefused(codes[1], m.version, 'open/secret/x (deny)');
        assertRefused(codes[2], m.version, "carol-only/# (another user's block)");
        assert.deepEqual(await wide.sub('open/#', 1), [1]); // wider than the deny: granted...
        await c.pub('open/secret/x', 'leak', 1); // ...yet what the deny covers reaches no one
        await c.pub(`${t}/y`, 'fine', 1);
        await c.waitFor((x) => x.topic === `${t}/y`);
        await wide.waitFor((x) => x.topic === `${t}/y`);
        assert.equal(wide.messages.filter((x) => x.topic.startsWith('open/secret')).length, 0, label(m));
      } finally {
        await c.end();
        await wide.end();
      }
    }
    const s = await mosquittoSub(node, { topic: 'open/m', qos: 1, version: 5 });
    assert.equal((await mosquittoPub(node, { topic: 'open/m', message: 'anon', qos: 1 })).code, 0);
    assert.deepEqual((await s.done).messages.map((x) => x.payload), ['anon']);
  });

  test('anonymous clients get no IM namespace, whatever the ACL says', async () => {
    for (const version of [4, 5]) {
      const c = await mqttConnect(node, { version, clientId: id('anon-im') });
      try {
        const codes = await c.sub(['user/carol/inbox/+', 'group/g1/inbox/+'], 1);
        codes.forEach((code, i) => assertRefused(code, version, `IM filter ${i}`));
        const ack = await c.pub('user/carol/inbox/anon', 'hi', 1);
        if (version === 5) assert.ok(ack.reasonCode >= 0x80, `PUBACK ${ack.reasonCode}`);
      } finally {
        await c.end();
      }
    }
  });

  test('a user block applies to that user only', async () => {
    const token = await login(node, 'carol', 'c1');
    const c = await mqttConnect(node, { version: 5, clientId: id('carol'), username: 'carol', password: token });
    try {
      assert.deepEqual(await c.sub('carol-only/#', 1), [1]);
    } finally {
      await c.end();
    }
  });

  test('MQTT 5 Server Keep Alive is mqtt_max_keepalive for a client asking more', async () => {
    const c = await mqttConnect(node, { version: 5, clientId: id('ka'), keepalive: 120 });
    try {
      assert.equal(c.client.serverProperties?.serverKeepAlive, 60);
      assert.equal(c.client.keepalive, 60); // and MQTT.js pings by it
    } finally {
      await c.end();
    }
  });

  test('a connection that sends no CONNECT is closed after mqtt_connect_timeout_ms, trickling or not', async () => {
    const t0 = Date.now();
    const silent = await RawMqtt.connect(node.mqttPort);
    const trickle = await RawMqtt.connect(node.mqttPort);
    const first = connectPacket({ clientId: 'slow' });
    let i = 0;
    const timer = setInterval(() => {
      if (i < first.length - 1) trickle.write(first.subarray(i, ++i)); // never the last byte
    }, 50);
    try {
      assert.ok(await silent.waitClosed(3000), 'a silent connection stayed open');
      assert.ok(await trickle.waitClosed(3000), 'a trickling connection stayed open');
      const took = Date.now() - t0;
      assert.ok(took >= 600 && took < 3000, `closed after ${took} ms`);
    } finally {
      clearInterval(timer);
      silent.destroy();
      trickle.destroy();
    }
  });

  test('keepalive counts whole packets: a client trickling a packet a byte at a time is idle', async () => {
    // Keepalive 1 s: closed 1.5 s after the last whole packet, however many bytes come after it.
    const raw = await RawMqtt.connect(node.mqttPort);
    await raw.write(connectPacket({ clientId: 'trickle-ka', keepalive: 1 }));
    const ack = await raw.read(4);
    assert.equal(ack[0], 0x20, 'CONNACK');
    const pub = publishPacket('open/x', 'y'.repeat(200));
    const t0 = Date.now();
    let i = 0;
    const timer = setInterval(() => {
      if (i < pub.length - 1) raw.write(pub.subarray(i, ++i));
    }, 100);
    try {
      assert.ok(await raw.waitClosed(4000), 'a trickling connection stayed open');
      const took = Date.now() - t0;
      assert.ok(took >= 1000 && took < 3000, `closed after ${took} ms`);
    } finally {
      clearInterval(timer);
      raw.destroy();
    }
  });

  test('an ACL file that does not parse stops the node, naming the line (exit 2)', async () => {
    const bad = path.join(dir, 'bad-acl');
    await writeFile(bad, 'topic readwrite ok/#\ntopic sometimes x/#\n');
    const dataDir = await mkdtemp(path.join(tmpdir(), 'converge-it-'));
    const n = new ConvergeNode({ flags: ['--mqtt-acl-file', bad], dataDir });
    try {
      await assert.rejects(n.start(), (e) => {
        assert.match(e.message, /code 2/);
        assert.match(e.message, /bad-acl: line 2/);
        return true;
      });
    } finally {
      await n.stop({ removeData: true });
    }
  });
});

describe('node stop', () => {
  test('MQTT clients over TCP and WebSocket are told (MQTT 5: DISCONNECT 0x8B) and closed; the node exits 0 at once', async () => {
    const node = await startNode({ flags: ['--mqtt-allow-anonymous', 'true', '--mqtt-acl-file', '/dev/null'] });
    try {
      const clients = [];
      for (const m of matrix) clients.push({ m, c: await mqttConnect(node, { ...m, clientId: id('stop') }) });
      const t0 = Date.now();
      const r = await node.stop();
      assert.equal(r.code, 0, node.log);
      assert.equal(r.killed, false);
      assert.ok(Date.now() - t0 < 3000, `stop took ${Date.now() - t0} ms`);
      for (const { m, c } of clients) {
        assert.ok(await c.waitClosed(2000), `${label(m)} not closed`);
        if (m.version === 5) assert.equal(c.disconnectPacket?.reasonCode, 0x8b, `${label(m)}: ${JSON.stringify(c.disconnectPacket)}`);
      }
    } finally {
      await node.stop({ removeData: true });
    }
  });
});
