import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryNetwork } from '../../protocol/memory-transport.ts';
import { negotiate } from '../../protocol/handshake.ts';
import { encode } from '../../protocol/codec.ts';
import { TransportError } from '../../protocol/errors.ts';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import { agentSamples, coordinatorSamples } from './fixtures/samples.ts';
import { take } from './fixtures/helpers.ts';

void test('messages flow both ways, in order, validated', async () => {
  const net = new MemoryNetwork();
  const server = net.listen('mem://coord');
  const client = net.connect('mem://coord', { routingId: 'agent-1' });
  for (const m of agentSamples) await client.send(m);
  const got = await take(server.inbound(), agentSamples.length);
  assert.deepEqual(
    got.map((x) => (x.kind === 'message' ? x.message : x.error)),
    agentSamples,
  );
  assert.ok(got.every((x) => x.from === 'agent-1'));
  for (const m of coordinatorSamples) await server.send(client.id, m);
  const back = await take(client.inbound(), coordinatorSamples.length);
  assert.deepEqual(
    back.map((x) => (x.kind === 'message' ? x.message : x.error)),
    coordinatorSamples,
  );
  await client.close();
  await server.close();
});

void test('malformed frames surface as malformed, and the server keeps serving', async () => {
  const net = new MemoryNetwork();
  const server = net.listen('mem://coord', { maxFrameBytes: 1024 });
  const bad = net.connect('mem://coord', { routingId: 'bad' });
  const good = net.connect('mem://coord', { routingId: 'good' });
  await bad.sendRaw(new Uint8Array([0xde, 0xad]));
  await bad.sendRaw(encode({ type: 'nope' } as never));
  await bad.sendRaw(new Uint8Array(4096));
  await good.send(agentSamples[1]!);
  const got = await take(server.inbound(), 4);
  assert.deepEqual(
    got.map((x) => [x.kind, x.from]),
    [
      ['malformed', 'bad'],
      ['malformed', 'bad'],
      ['malformed', 'bad'],
      ['message', 'good'],
    ],
  );
  const errors = got.flatMap((x) => (x.kind === 'malformed' ? [x.error.message] : []));
  assert.match(errors[1]!, /unknown type "nope"/);
  assert.match(errors[2]!, /over the 1024-byte cap/);
  await Promise.all([bad.close(), good.close(), server.close()]);
});

void test('inbound ends on close; sends to gone peers reject', async () => {
  const net = new MemoryNetwork();
  const server = net.listen('mem://x');
  const client = net.connect('mem://x');
  const drained = take(server.inbound(), 10);
  await server.close();
  assert.deepEqual(await drained, []);
  await assert.rejects(client.send(agentSamples[0]!), TransportError);
  assert.throws(() => net.connect('mem://nowhere'), TransportError);
  await client.close();
});

void test('handshake: the same version passes, another gets reject naming both', () => {
  const hello = { version: PROTOCOL_VERSION, agentId: 'a' as never, host: 'h', pid: 1 };
  assert.deepEqual(negotiate(hello), { ok: true });
  const r = negotiate({ ...hello, version: PROTOCOL_VERSION + 1 });
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.equal(r.reject.type, 'reject');
  assert.match(r.logLine, new RegExp(`protocol version ${PROTOCOL_VERSION + 1}, ours is ${PROTOCOL_VERSION}`));
  assert.match(r.reject.reason, new RegExp(`version ${PROTOCOL_VERSION}.*version ${PROTOCOL_VERSION + 1}`));
});
