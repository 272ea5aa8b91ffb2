import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zmq from 'zeromq';
import { bindServer, connectClient } from '../../protocol/zmq-transport.ts';
import { encode } from '../../protocol/codec.ts';
import { KeyError } from '../../protocol/errors.ts';
import { Command } from 'commander';
import {
  clientCurve,
  generateKeyPair,
  initKeys,
  loadClusterKeys,
  loadKeyPair,
  loadPublicKey,
  serverCurve,
} from '../../protocol/keys.ts';
import { registerKeysCommand } from '../../src/commands/keys.ts';
import { agentSamples } from './fixtures/samples.ts';
import { take, withTimeout } from './fixtures/helpers.ts';

void test('keys init writes a 0600 key pair that loads back; a second init refuses to overwrite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pe-arena-keys-'));
  try {
    const files = await initKeys(join(dir, 'keys'));
    for (const file of [files.serverPublicFile, files.serverSecretFile])
      assert.equal((await stat(file)).mode & 0o777, 0o600);
    const pair = await loadKeyPair(files.serverSecretFile);
    assert.equal(pair.publicKey, files.publicKey);
    assert.equal(await loadPublicKey(files.serverPublicFile), files.publicKey);
    await assert.rejects(initKeys(join(dir, 'keys')), KeyError);
    const again = await initKeys(join(dir, 'keys'), { force: true });
    assert.notEqual(again.publicKey, files.publicKey);
    await assert.rejects(loadKeyPair(join(dir, 'missing')), KeyError);
    await writeFile(join(dir, 'bad.key'), 'not-a-key\n');
    await assert.rejects(
      loadKeyPair(join(dir, 'bad.key')),
      (error: unknown) => error instanceof KeyError && /bad\.key line 1/.test(error.message),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void test('with CURVE on, only clients holding the cluster key get messages accepted', async () => {
  const cluster = generateKeyPair();
  const stranger = generateKeyPair();
  const refused: string[] = [];
  let impostorRefused!: () => void;
  const impostorWasRefused = new Promise<void>((resolve) => (impostorRefused = resolve));
  const server = await bindServer({
    address: 'tcp://127.0.0.1:0',
    curve: cluster,
    log: (line) => {
      refused.push(line);
      if (/not allowed/.test(line)) impostorRefused();
    },
  });
  // Knows the server key but holds another key pair.
  const impostor = await connectClient({
    address: server.address,
    routingId: 'impostor',
    sendTimeoutMs: 200,
    curve: { serverPublicKey: cluster.publicKey, ...stranger },
  });
  // Speaks plain ZeroMQ (no CURVE at all).
  const plain = new zmq.Dealer({ linger: 0, routingId: 'plain', sendTimeout: 200 });
  const plainWasRefused = new Promise<void>((resolve) => {
    for (const type of ['handshake:error:protocol', 'handshake:error:other'] as const)
      plain.events.on(type, () => resolve());
  });
  plain.connect(server.address);
  const member = await connectClient({
    address: server.address,
    routingId: 'member',
    curve: { serverPublicKey: cluster.publicKey, ...cluster },
  });
  try {
    // Sends from the outsiders may queue and then time out; none may reach the server.
    for (let i = 0; i < 5; i++) {
      await impostor.send(agentSamples[1]!).catch(() => undefined);
      await plain.send(encode(agentSamples[1]!)).catch(() => undefined);
    }
    // Both outsiders' handshakes fail, so nothing they queued can be delivered; then the member's message is the
    // first thing the server receives.
    await withTimeout(Promise.all([impostorWasRefused, plainWasRefused]), 5000, 'both outsiders to be refused');
    await member.send(agentSamples[1]!);
    const received = await take(server.inbound(), 1);
    assert.deepEqual(
      received.map((x) => `${x.from}:${x.kind}`),
      ['member:message'],
    );
    assert.ok(
      refused.some((line) => /not allowed/.test(line)),
      `expected a refusal in the log, got ${JSON.stringify(refused)}`,
    );
  } finally {
    plain.close();
    await Promise.all([impostor.close(), member.close()]);
    await server.close();
  }
});

void test('an allow-list admits per-node keys; bad key text is refused up front', async () => {
  const cluster = generateKeyPair();
  const node = generateKeyPair();
  const server = await bindServer({
    address: 'tcp://127.0.0.1:0',
    curve: { ...cluster, allowedClientKeys: [node.publicKey] },
  });
  const client = await connectClient({
    address: server.address,
    routingId: 'node',
    curve: { serverPublicKey: cluster.publicKey, ...node },
  });
  try {
    await client.send(agentSamples[0]!);
    const [first] = await take(server.inbound(), 1);
    assert.equal(first?.kind, 'message');
    await assert.rejects(
      bindServer({ address: 'tcp://127.0.0.1:0', curve: { publicKey: 'short', secretKey: cluster.secretKey } }),
      KeyError,
    );
  } finally {
    await client.close();
    await server.close();
  }
});

void test('pe-arena keys init --dir writes keys that a CURVE server and client accept', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pe-arena-keys-cli-'));
  const program = new Command('pe-arena').exitOverride();
  registerKeysCommand(program);
  const printed: string[] = [];
  const log = console.log;
  console.log = (line: string) => printed.push(line);
  try {
    await program.parseAsync(['keys', 'init', '--dir', join(dir, 'k')], { from: 'user' });
  } finally {
    console.log = log;
  }
  try {
    assert.ok(
      printed.some((line) => line.includes('cluster.key')),
      JSON.stringify(printed),
    );
    const pair = await loadClusterKeys(join(dir, 'k'));
    const server = await bindServer({ address: 'tcp://127.0.0.1:0', curve: serverCurve(pair) });
    const client = await connectClient({ address: server.address, curve: clientCurve(pair) });
    try {
      await client.send(agentSamples[0]!);
      const [first] = await take(server.inbound(), 1);
      assert.equal(first?.kind, 'message');
    } finally {
      await client.close();
      await server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
