// Growing up (issue 11): `converge migrate` moves a single node's data (SQLite and the file
// blobs) to what a cluster shares (PostgreSQL and one files dir). A node started with `make run`
// is filled over HTTP and WebSocket and stopped; after the migration a node on PostgreSQL must
// answer every question the same way: history (every message, seq, body), conversations
// (last_seq, members, muted), /offline from the heartbeat cursors, logins with the old
// passwords, the old tokens, file downloads. Bad input: a node still running, a missing data
// dir, a bad url, a database that holds data (refused, and nothing changes).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import { assertHttpError } from './lib/check.mjs';
import { createConversation, expectStatus, heartbeatHttp, http, login, offlineAll, register, sendHttp } from './lib/http.mjs';
import { ConvergeNode, convergeBin, startNode } from './lib/node.mjs';
import { startPostgres } from './lib/postgres.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const run = promisify(execFile);

// `converge migrate ...args`: {code, stdout, stderr}.
function migrate(...args) {
  return new Promise((resolve) => {
    const p = spawn(convergeBin, ['migrate', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

// Runs SQL on the server with psql; the rows as text, one a line.
async function psql(url, sql) {
  const { stdout } = await run('psql', [url, '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
  return stdout.trim();
}

// The url of another database on the same server, created empty.
let dbCount = 0;
async function newDatabase(pg) {
  const name = `migrate_${process.pid}_${++dbCount}`;
  await psql(pg.url, `CREATE DATABASE ${name}`);
  const u = new URL(pg.url);
  u.pathname = `/${name}`;
  return u.toString();
}

async function rowCounts(url) {
  const tables = ['users', 'tokens', 'conversations', 'members', 'files', 'messages', 'cursors'];
  const have = await psql(url, "SELECT count(*) FROM pg_tables WHERE tablename = 'users'");
  if (have === '0') return 'no schema';
  return psql(url, `SELECT ${tables.map((t) => `(SELECT count(*) FROM ${t})`).join(" || ',' || ")}`);
}

async function filesIn(dir) {
  try {
    const out = [];
    for (const e of await readdir(dir, { recursive: true, withFileTypes: true }))
      if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath ?? e.path, e.name)));
    return out.sort();
  } catch (e) {
    if (e.code === 'ENOENT') return [];
    throw e;
  }
}

function upload(node, token, bytes, name, type) {
  return http(node, 'POST', `/api/v1/files?name=${encodeURIComponent(name)}`, {
    token,
    body: bytes,
    headers: { 'Content-Type': type },
  });
}

// Every message of a conversation, through history pages of 50 (after_seq).
async function allHistory(node, token, conv) {
  const out = [];
  for (let after = 0; ; ) {
    const r = expectStatus(await http(node, 'GET', `/api/v1/conversations/${conv}/messages?after_seq=${after}&limit=50`, { token }), 200);
    if (r.json.messages.length === 0) return out;
    out.push(...r.json.messages);
    after = r.json.messages.at(-1).seq;
  }
}

// What a user's devices are told, by the API a client uses: who they are, their conversations
// (each one's last_seq, members, owner, muted), every conversation's whole history, and what
// /offline hands each device (which follows its heartbeat cursors).
async function view(node, users) {
  const out = {};
  for (const u of users) {
    const me = expectStatus(await http(node, 'GET', '/api/v1/me', { token: u.tokens[0].token }), 200).json;
    const list = expectStatus(await http(node, 'GET', '/api/v1/conversations', { token: u.tokens[0].token }), 200).json;
    const convs = {};
    for (const c of list.conversations) {
      const one = expectStatus(await http(node, 'GET', `/api/v1/conversations/${c.id}`, { token: u.tokens[0].token }), 200).json;
      convs[c.id] = { one, history: await allHistory(node, u.tokens[0].token, c.id) };
    }
    const offline = {};
    for (const t of u.tokens) offline[t.device] = await offlineAll(node, t.token, 40);
    out[u.id] = { me, list, convs, offline };
  }
  return out;
}

describe('converge migrate', () => {
  let pg;
  const cleanup = [];

  before(async () => {
    pg = await startPostgres();
  });

  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    await pg?.stop();
  });

  // A node's data dir after some use: users, tokens, a direct conversation and a group (one
  // member muted), messages over HTTP and WebSocket with and without client_msg_id, an uploaded
  // file sent as a message, heartbeat cursors. The node is stopped before it returns.
  async function usedNode({ messages = 120 } = {}) {
    const node = await startNode();
    cleanup.push(() => node.stop({ removeData: true }));
    const users = [];
    for (const id of ['alice', 'bob', 'carol']) {
      await register(node, id, { name: `${id[0].toUpperCase()}${id.slice(1)} \u00e9` });
      const tokens = [];
      for (const device of ['laptop', 'phone']) tokens.push({ device, token: await login(node, id, device) });
      users.push({ id, tokens });
    }
    const [alice, bob, carol] = users;
    const direct = (await createConversation(node, alice.tokens[0].token, 'direct', ['bob'])).id;
    const group = (await createConversation(node, alice.tokens[0].token, 'group', ['bob', 'carol'], 'team \u{1F680}')).id;
    expectStatus(await http(node, 'POST', `/api/v1/conversations/${group}/mute`, { token: carol.tokens[0].token, json: { muted: true } }), 200);

    const aWs = await WsClient.connect(node, { token: alice.tokens[1].token });
    const bWs = await WsClient.connect(node, { token: bob.tokens[1].token });
    try {
      const sends = [];
      for (let i = 0; i < messages; i++) {
        const conv = i % 3 === 0 ? direct : group;
        const body = `m${i} "quoted" \\ \u2014 ${'x'.repeat(i % 17)}`;
        const data = { conversation_id: conv, body };
        if (i % 2 === 0) data.client_msg_id = `c-${i}`;
        if (i % 4 === 0) sends.push((i % 8 === 0 ? aWs : bWs).send(data));
        else {
          const from = conv === group && i % 5 === 0 ? carol : alice;
          expectStatus(await sendHttp(node, from.tokens[0].token, conv, { body, client_msg_id: data.client_msg_id }), 201);
        }
      }
      await Promise.all(sends);
    } finally {
      await closeAll(aWs, bWs);
    }
    const bytes = randomBytes(70000);
    const up = expectStatus(await upload(node, bob.tokens[0].token, bytes, 'plan.pdf', 'application/pdf'), 201).json;
    expectStatus(await sendHttp(node, bob.tokens[0].token, group, { type: 'file', file_id: up.file_id, body: 'plan.pdf', client_msg_id: 'file-1' }), 201);

    // Cursors: the laptops acknowledge part of what they have; the phones never did.
    const last = async (conv) => expectStatus(await http(node, 'GET', `/api/v1/conversations/${conv}`, { token: alice.tokens[0].token }), 200).json.last_seq;
    const seqs = { [direct]: await last(direct), [group]: await last(group) };
    expectStatus(await heartbeatHttp(node, alice.tokens[0].token, { [direct]: 5, [group]: seqs[group] - 3 }), 200);
    expectStatus(await heartbeatHttp(node, bob.tokens[0].token, { [direct]: seqs[direct] }), 200);
    expectStatus(await heartbeatHttp(node, carol.tokens[0].token, { [group]: 1 }), 200);

    const before = await view(node, users);
    const stopped = await node.stop();
    assert.equal(stopped.code, 0, 'the node stopped cleanly');
    return { node, users, direct, group, file: { id: up.file_id, bytes }, seqs, before };
  }

  test('bad input: no data dir, no database in it, a bad url, a node still running: usage or failure, and nothing written', async () => {
    const to = await newDatabase(pg);
    let r = await migrate('--from', '/nonexistent/converge-data', '--to', to);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /\/nonexistent\/converge-data is not a directory/);
    const empty = await mkdtemp(path.join(tmpdir(), 'converge-migrate-empty-'));
    cleanup.push(() => rm(empty, { recursive: true, force: true }));
    r = await migrate('--from', empty, '--to', to);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /no converge\.db in .*: not a node's data dir/);
    r = await migrate('--to', to);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--from DATA_DIR is required/);
    r = await migrate('--from', empty, '--to', 'mysql://x/y');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /expected postgresql:\/\//);
    r = await migrate('--from', empty, '--to', to, '--what');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unexpected argument --what/);

    // A node still running on the data dir: it would go on writing what the copy misses.
    const node = await startNode();
    cleanup.push(() => node.stop({ removeData: true }));
    await register(node, 'dora');
    const filesTo = path.join(empty, 'shared-files');
    r = await migrate('--from', node.dataDir, '--to', to, '--files-to', filesTo);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /is open in another process \(a running node\?\): stop it first/);
    assert.equal(await rowCounts(to), 'no schema', 'nothing was written to the database');
    assert.deepEqual(await filesIn(filesTo), [], 'no blob was copied');
    // The node did not notice.
    expectStatus(await http(node, 'GET', '/healthz'), 200);
    await login(node, 'dora');

    // An unreachable server: a failure, after the usage checks.
    await node.stop();
    const u = new URL(to);
    u.port = '1';
    r = await migrate('--from', node.dataDir, '--to', u.toString());
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot connect to PostgreSQL/);
  });

  test('a node moves to PostgreSQL and a shared files dir with every message, seq, cursor, login, token and file', async () => {
    const old = await usedNode({ messages: 150 });
    const to = await newDatabase(pg);
    const filesTo = await mkdtemp(path.join(tmpdir(), 'converge-migrate-files-'));
    cleanup.push(() => rm(filesTo, { recursive: true, force: true }));
    // An upload the node was receiving when it stopped is not a blob: it stays behind.
    await writeFile(path.join(old.node.dataDir, 'files', 'tmp', 'x.part'), 'partial');

    const r = await migrate('--from', old.node.dataDir, '--to', to, '--files-to', filesTo);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const count = (table) => Number(new RegExp(`^\\s+${table}\\s+(\\d+)$`, 'm').exec(r.stdout)?.[1]);
    assert.equal(count('users'), 3);
    assert.equal(count('tokens'), 6);
    assert.equal(count('conversations'), 2);
    assert.equal(count('members'), 5);
    assert.equal(count('files'), 1);
    assert.equal(count('messages'), 151);
    assert.ok(count('cursors') >= 4, 'the heartbeats\' cursors (and what /offline handed out)');
    assert.match(r.stdout, /files: 1 blobs \(0\.1 MB\) copied .* each one's sha256 checked/);
    assert.match(r.stdout, /\d+ messages\/s/);
    assert.match(r.stdout, new RegExp(`files_dir = ${filesTo.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.deepEqual((await filesIn(filesTo)).filter((f) => !f.startsWith('tmp')).length, 1);
    // The identity moved past the copied ids.
    assert.equal(await psql(to, 'SELECT max(id) FROM conversations'), String(Math.max(old.direct, old.group)));

    // A node of the cluster: another data dir (nothing of the old one), the database, the
    // shared files dir.
    const dataDir = await mkdtemp(path.join(tmpdir(), 'converge-migrate-node-'));
    const node = new ConvergeNode({ dataDir, flags: ['--store', to, '--files-dir', filesTo] });
    cleanup.push(() => node.stop({ removeData: true }));
    await node.start();

    // The old tokens work, and every view is what it was.
    const after = await view(node, old.users);
    assert.deepEqual(after, old.before);
    const seen = after.alice.convs[old.group].history;
    assert.equal(seen.length, old.seqs[old.group]);
    seen.forEach((m, i) => assert.equal(m.seq, i + 1));
    // /offline follows the copied cursors: alice's laptop acked all but 3 of the group.
    const laptop = after.alice.offline.laptop.filter((m) => m.conversation_id === String(old.group));
    assert.deepEqual(laptop.map((m) => m.seq), [old.seqs[old.group] - 2, old.seqs[old.group] - 1, old.seqs[old.group]]);

    // Logins with the old passwords; a wrong one is still refused.
    for (const u of old.users) await login(node, u.id, 'new-device');
    assertHttpError(await http(node, 'POST', '/api/v1/login', { json: { user_id: 'alice', password: 'wrong', device_id: 'x' } }), 401, 'unauthorized');

    // The file, byte for byte, for a member; still refused to someone who is not one.
    const dl = await http(node, 'GET', `/api/v1/files/${old.file.id}`, { token: old.users[2].tokens[0].token });
    assert.equal(dl.status, 200);
    assert.ok(dl.bytes.equals(old.file.bytes), 'the downloaded file is the uploaded one');
    await register(node, 'eve');
    const eve = await login(node, 'eve');
    assertHttpError(await http(node, 'GET', `/api/v1/files/${old.file.id}`, { token: eve }), 403, 'forbidden');

    // Life goes on: the next seq, a retry of an old client_msg_id is a duplicate with its old
    // seq, a new conversation gets a new id.
    const alice = old.users[0].tokens[0].token;
    const next = expectStatus(await sendHttp(node, alice, old.group, { body: 'after the move', client_msg_id: 'after-1' }), 201).json;
    assert.equal(next.seq, old.seqs[old.group] + 1);
    const retry = expectStatus(await sendHttp(node, alice, old.direct, { body: 'again', client_msg_id: 'c-0' }), 200).json;
    assert.equal(retry.duplicate, true);
    assert.equal(retry.seq, old.before.alice.convs[old.direct].history.find((m) => m.client_msg_id === 'c-0').seq);
    const fresh = await createConversation(node, alice, 'group', ['eve'], 'new');
    assert.ok(Number(fresh.id) > Math.max(old.direct, old.group), `new id ${fresh.id}`);
  });

  test('into a database that holds data: refused, and neither the database nor the files dir change', async () => {
    const first = await usedNode({ messages: 10 });
    const to = await newDatabase(pg);
    const filesTo = await mkdtemp(path.join(tmpdir(), 'converge-migrate-files-'));
    cleanup.push(() => rm(filesTo, { recursive: true, force: true }));
    let r = await migrate('--from', first.node.dataDir, '--to', to, '--files-to', filesTo);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const counts = await rowCounts(to);
    const files = await filesIn(filesTo);

    // The same node again, and another node: both refused.
    const second = await usedNode({ messages: 5 });
    const otherFiles = path.join(filesTo, '..', `${path.basename(filesTo)}-other`);
    cleanup.push(() => rm(otherFiles, { recursive: true, force: true }));
    for (const from of [first.node.dataDir, second.node.dataDir]) {
      r = await migrate('--from', from, '--to', to, '--files-to', otherFiles);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /the target database is not empty \(3 users, 6 tokens, 2 conversations, .*\): refusing to migrate into it/);
      assert.match(r.stderr, /Nothing was changed/);
      assert.equal(await rowCounts(to), counts);
      assert.deepEqual(await filesIn(filesTo), files);
      assert.deepEqual(await filesIn(otherFiles), [], 'no blob copied for a refused migration');
    }
    await assert.rejects(stat(otherFiles));
  });
});
