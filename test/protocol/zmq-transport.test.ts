import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zmq from 'zeromq';
import { bindServer, connectClient } from '../../protocol/zmq-transport.ts';
import { decodeAgentFrame, encode } from '../../protocol/codec.ts';
import { negotiate } from '../../protocol/handshake.ts';
import { TransportError } from '../../protocol/errors.ts';
import { raceDeadline, TIMED_OUT } from '../../protocol/deadline.ts';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import type { AgentId, Bye, CheckpointChunk, Hello } from '../../protocol/messages.ts';
import type { PeerId } from '../../protocol/transport.ts';
import { agentSamples, coordinatorSamples } from './fixtures/samples.ts';
import { take, withTimeout } from './fixtures/helpers.ts';

void test('round trip over real sockets, replies routed by peer id', async () => {
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  assert.match(server.address, /^tcp:\/\/127\.0\.0\.1:\d+$/);
  assert.doesNotMatch(server.address, /:0$/);
  const client = await connectClient({ address: server.address, routingId: 'agent-1' });
  try {
    for (const m of agentSamples) await client.send(m);
    const got = await take(server.inbound(), agentSamples.length);
    assert.deepEqual(
      got.map((x) => (x.kind === 'message' ? x.message : x.error)),
      agentSamples,
    );
    assert.equal(got[0]!.from, 'agent-1');
    for (const m of coordinatorSamples) await server.send('agent-1' as PeerId, m);
    const back = await take(client.inbound(), coordinatorSamples.length);
    assert.deepEqual(
      back.map((x) => (x.kind === 'message' ? x.message : x.error)),
      coordinatorSamples,
    );
    await assert.rejects(server.send('nobody' as PeerId, coordinatorSamples[9]!), TransportError);
  } finally {
    await client.close();
    await server.close();
  }
});

void test('bad input from one client: each refused with a clear error, the other client still served', async () => {
  const log: string[] = [];
  const server = await bindServer({ address: 'tcp://127.0.0.1:0', maxFrameBytes: 4096, log: (line) => log.push(line) });
  const bad = await connectClient({ address: server.address, routingId: 'bad' });
  const good = await connectClient({ address: server.address, routingId: 'good', maxFrameBytes: 4096 });
  const raw = new zmq.Dealer({ linger: 0, routingId: 'multi' });
  raw.connect(server.address);
  try {
    const hello = agentSamples[1] as Hello;
    const valid = encode(hello);
    await bad.sendRaw(new Uint8Array([0x00, 0xc1, 0xff, 0x13, 0x37]));
    await bad.sendRaw(valid.subarray(0, valid.length - 5));
    await bad.sendRaw(encode({ ...hello, pid: 'x' } as never));
    await bad.sendRaw(encode({ type: 'format_disk' } as never));
    await bad.sendRaw(new Uint8Array(6000));
    await raw.send(['a', 'b', 'c']);
    await raw.send(['a', 'b']);
    await bad.send({ ...hello, version: PROTOCOL_VERSION + 7 });
    // The sender refuses an oversize message itself, with a clear error, before it reaches the wire.
    await assert.rejects(
      good.send({ ...(agentSamples[4] as never as object), data: new Uint8Array(8192) } as never),
      (error: unknown) =>
        error instanceof TransportError &&
        /checkpoint_chunk of \d+ bytes is over the 4096-byte frame cap/.test(error.message),
    );
    // So it does for one whose data would go as a bulk frame: each part is held to the cap.
    await assert.rejects(
      good.send({ ...(agentSamples[4] as never as object), data: new Uint8Array(70_000) } as never),
      (error: unknown) =>
        error instanceof TransportError &&
        /checkpoint_chunk of 70000 bytes is over the 4096-byte frame cap/.test(error.message),
    );
    await good.send(hello);
    const got = await take(server.inbound(), 9);
    // Order holds per sender, not across senders (ZeroMQ fair-queues), so look at each sender's own list.
    const of = (id: string): string[] =>
      got.filter((x) => x.from === id).map((x) => (x.kind === 'malformed' ? x.error.message : x.message.type));
    const fromBad = of('bad');
    assert.equal(fromBad.length, 6);
    // A frame is read as back-to-back messages: garbage stops the frame at its first bad value, with one error.
    assert.match(fromBad[0]!, /got 0 \(message 1 of the frame; the 4 bytes after it were dropped\)$/);
    assert.match(fromBad[1]!, /^frame: not valid msgpack/);
    assert.match(fromBad[2]!, /^hello\.pid: expected a non-negative integer, got "x"/);
    assert.match(fromBad[3]!, /^agent->coordinator message: unknown type "format_disk"/);
    assert.match(fromBad[4]!, /^frame of 6000 bytes is over the 4096-byte cap/);
    assert.deepEqual(of('multi'), [
      'expected a message of 1 or 2 parts (frame, bulk), got 3',
      'message: a second frame of 1 bytes, but no bulk field announces it',
    ]);
    assert.deepEqual(of('good'), ['hello']);
    // A wrong version decodes fine; the handshake refuses it.
    const wrong = got.filter((x) => x.from === 'bad')[5]!;
    assert.ok(wrong.kind === 'message' && wrong.message.type === 'hello');
    const verdict = negotiate(wrong.message);
    assert.ok(!verdict.ok);
    await server.send(wrong.from, verdict.reject);
    const [reply] = await take(bad.inbound(), 1);
    assert.ok(reply?.kind === 'message' && reply.message.type === 'reject');
    assert.match(reply.message.reason, new RegExp(`version ${PROTOCOL_VERSION}.*version ${PROTOCOL_VERSION + 7}`));
    await server.send('good' as PeerId, coordinatorSamples[1]!);
    const [welcome] = await take(good.inbound(), 1);
    assert.ok(welcome?.kind === 'message' && welcome.message.type === 'welcome');
    assert.ok(log.some((line) => line.includes('from bad')));
  } finally {
    raw.close();
    await Promise.all([bad.close(), good.close()]);
    await server.close();
  }
});

void test('a checkpoint chunk of 1 MiB travels as its message plus a bulk frame, both ways, intact', async () => {
  // A raw ROUTER and DEALER stand in for the far ends, so the frames on the wire can be seen.
  const router = new zmq.Router({ linger: 0 });
  await router.bind('tcp://127.0.0.1:0');
  const client = await connectClient({ address: router.lastEndpoint!, routingId: 'uploader' });
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const dealer = new zmq.Dealer({ linger: 0, routingId: 'downloader' });
  dealer.connect(server.address);
  const bytes = new Uint8Array(1 << 20).map((_, i) => (i * 7) % 256);
  const chunk = { ...(agentSamples[4] as CheckpointChunk), totalBytes: bytes.byteLength, data: bytes };
  try {
    await client.send(chunk);
    const [id, head, bulk, ...more] = await router.receive();
    assert.equal(id?.toString(), 'uploader');
    assert.equal(more.length, 0);
    assert.ok(head!.byteLength < 300, `message of ${head!.byteLength} bytes`);
    assert.deepEqual(new Uint8Array(bulk!), bytes);
    // The same two frames from an agent reach the server's inbound as the whole message.
    await dealer.send([head!, bulk!]);
    const [got] = await take(server.inbound(), 1);
    assert.ok(got?.kind === 'message', got?.kind === 'malformed' ? got.error.message : '');
    assert.deepEqual(got.message, chunk);
    // And the server sends one back the same way.
    await server.send('downloader' as PeerId, { ...chunk, data: bytes.subarray(1) } as never);
    const back = await dealer.receive();
    assert.equal(back.length, 2);
    assert.equal(back[1]!.byteLength, bytes.byteLength - 1);
  } finally {
    dealer.close();
    router.close();
    await client.close();
    await server.close();
  }
});

void test('sends that queue up behind a busy socket share frames, in order, and each promise settles', async () => {
  // A raw ROUTER stands in for the coordinator, so the frames themselves can be counted.
  const router = new zmq.Router({ linger: 0 });
  await router.bind('tcp://127.0.0.1:0');
  const client = await connectClient({ address: router.lastEndpoint!, routingId: 'streamer' });
  try {
    const count = 500;
    const bye = (i: number): Bye => ({ type: 'bye', agentId: 'streamer' as AgentId, reason: `message ${i}` });
    // Fired without waiting for each other, as the agent streams metrics: all but the first queue up.
    await Promise.all(Array.from({ length: count }, (_, i) => client.send(bye(i))));
    const reasons: string[] = [];
    let frames = 0;
    while (reasons.length < count) {
      const [from, frame] = await router.receive();
      assert.equal(from?.toString(), 'streamer');
      frames++;
      for (const item of decodeAgentFrame(frame!)) {
        assert.ok(item.ok, item.ok ? '' : item.error.message);
        if (item.message.type === 'bye') reasons.push(item.message.reason);
      }
      assert.ok(frame!.byteLength <= 64 * 1024, `a frame of ${frame!.byteLength} bytes is over the coalescing cap`);
    }
    assert.deepEqual(
      reasons,
      Array.from({ length: count }, (_, i) => bye(i).reason),
    );
    assert.ok(frames < count / 10, `${count} messages came in ${frames} frames`);
    // A lone send still goes out at once, in a frame of its own.
    await client.send(bye(count));
    const [, alone] = await router.receive();
    assert.equal(decodeAgentFrame(alone!).length, 1);
  } finally {
    await client.close();
    router.close();
  }
});

void test('a burst of small sends far past the high-water mark in messages is taken, as it fits in frames', async () => {
  const router = new zmq.Router({ linger: 0 });
  await router.bind('tcp://127.0.0.1:0');
  // A high-water mark of 10 messages: 2,000 queued sends of ~60 bytes are 120 KB, two frames' worth.
  const client = await connectClient({ address: router.lastEndpoint!, routingId: 'flusher', highWaterMark: 10 });
  try {
    const count = 2000;
    const bye = (i: number): Bye => ({ type: 'bye', agentId: 'flusher' as AgentId, reason: `metrics batch ${i}` });
    await Promise.all(Array.from({ length: count }, (_, i) => client.send(bye(i))));
    const reasons: string[] = [];
    while (reasons.length < count) {
      const [, frame] = await router.receive();
      for (const item of decodeAgentFrame(frame!))
        if (item.ok && item.message.type === 'bye') reasons.push(item.message.reason);
    }
    assert.deepEqual(
      reasons,
      Array.from({ length: count }, (_, i) => bye(i).reason),
    );
  } finally {
    await client.close();
    router.close();
  }
});

void test('a bad message inside a frame is refused alone; those before it arrive and the server keeps serving', async () => {
  const log: string[] = [];
  const server = await bindServer({ address: 'tcp://127.0.0.1:0', log: (line) => log.push(line) });
  const raw = new zmq.Dealer({ linger: 0, routingId: 'packer' });
  raw.connect(server.address);
  try {
    const bye = (reason: string) => encode({ type: 'bye', agentId: 'packer' as never, reason });
    const wrong = encode({ type: 'bye', agentId: 'packer', reason: 7 } as never);
    await raw.send(Buffer.concat([bye('first'), bye('second'), wrong, bye('dropped')]));
    await raw.send(bye('next frame'));
    const got = await take(server.inbound(), 4);
    const seen = got.map((x) => (x.kind === 'message' && x.message.type === 'bye' ? x.message.reason : x.kind));
    assert.deepEqual(seen, ['first', 'second', 'malformed', 'next frame']);
    const refused = got[2]!;
    assert.ok(refused.kind === 'malformed');
    assert.equal(refused.from, 'packer');
    assert.equal(refused.error.field, 'reason');
    assert.match(refused.error.message, /message 3 of the frame; the \d+ bytes after it were dropped/);
    assert.ok(log.some((line) => line.includes('packer') && line.includes('message 3 of the frame')));
  } finally {
    raw.close();
    await server.close();
  }
});

void test('a send to a peer that is not there fails within the send timeout instead of blocking', async () => {
  // Reserve a port, then free it, so nothing listens there.
  const probe = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const address = probe.address;
  await probe.close();
  const client = await connectClient({ address, highWaterMark: 2, sendTimeoutMs: 100 });
  try {
    let failure: unknown;
    for (let i = 0; i < 50 && failure === undefined; i++) {
      await client.send(agentSamples[0]!).catch((error: unknown) => {
        failure = error;
      });
    }
    assert.ok(failure instanceof TransportError, `expected TransportError, got ${String(failure)}`);
  } finally {
    await client.close();
  }
});

void test('a send that finds the queue full waits for room and goes out once the peer reads again', async () => {
  // Sends skip ZeroMQ's readiness check and only wait when the queue is full (immediateWriter): here the peer stops
  // reading until the kernel buffers and both high-water marks are full, so a send has to wait for room.
  const router = new zmq.Router({ linger: 0, receiveHighWaterMark: 1 });
  await router.bind('tcp://127.0.0.1:0');
  const client = await connectClient({ address: router.lastEndpoint!, highWaterMark: 1, sendTimeoutMs: 20_000 });
  const frame = (i: number): Uint8Array => new Uint8Array(1 << 20).fill(i % 251);
  try {
    let sent = 0;
    let blocked: Promise<void> | undefined;
    while (blocked === undefined && sent < 500) {
      const sending = client.sendRaw(frame(sent++));
      if ((await raceDeadline(sending, 200)) === TIMED_OUT) blocked = sending;
    }
    assert.ok(blocked !== undefined, `every one of ${sent} sends of 1 MiB went straight out to a peer that never read`);
    const received: number[] = [];
    for (let i = 0; i < sent; i++) {
      const [, body] = await router.receive();
      received.push(body![0]!);
    }
    await blocked; // settled once the peer drained the queue, long before its 20 s timeout
    assert.deepEqual(
      received,
      Array.from({ length: sent }, (_, i) => i % 251),
    );
  } finally {
    await client.close();
    router.close();
  }
});

void test('a sender that awaits every send still lets the event loop turn (timers and reads are not starved)', async () => {
  // Sends go to ZeroMQ at once and usually settle without a turn of the event loop; the send queue yields every
  // few hundred frames so that a tight `await send()` loop cannot starve everything else in the process.
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const client = await connectClient({ address: server.address, routingId: 'streamer' });
  try {
    await client.send(agentSamples[0]!);
    await take(server.inbound(), 1); // connected
    let timerFiredAt: number | undefined;
    let sent = 0;
    setTimeout(() => {
      timerFiredAt = sent;
    }, 0);
    for (; sent < 5000; sent++) await client.send(agentSamples[0]!);
    assert.ok(timerFiredAt !== undefined && timerFiredAt < 5000, `the timer fired only after ${timerFiredAt} sends`);
    const got = await take(server.inbound(), 5000, 20_000);
    assert.equal(got.length, 5000);
  } finally {
    await client.close();
    await server.close();
  }
});

void test('a reader waiting on inbound answers before the receive loop asks ZeroMQ for the next frame', async () => {
  // Asking ZeroMQ for a frame costs system calls; a reader that was already waiting (a request/reply exchange) gets
  // its message and sends its answer first, so those calls are not on the round trip's critical path.
  const calls: string[] = [];
  let recorded: (() => void) | undefined;
  const record = (socket: unknown, name: string): void => {
    calls.push(`${socket instanceof zmq.Router ? 'router' : 'dealer'} ${name}`);
    recorded?.();
  };
  /** Resolves once `calls` holds all of `names` (each call is recorded before it runs). */
  const called = (...names: string[]): Promise<void> =>
    withTimeout(
      new Promise<void>((resolve) => {
        recorded = () => {
          if (names.every((n) => calls.includes(n))) resolve();
        };
        recorded();
      }),
      5000,
      names.join(', '),
    );
  const restore = [spyOn(zmq.Router.prototype, 'receive', record), spyOn(zmq.Router.prototype, 'send', record)];
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const client = await connectClient({ address: server.address, routingId: 'asker' });
  try {
    const serving = (async () => {
      for await (const item of server.inbound()) {
        calls.push('server got');
        await server.send(item.from, coordinatorSamples[1]!);
        return;
      }
    })();
    const replies = client.inbound()[Symbol.asyncIterator]();
    await called('router receive', 'dealer receive'); // both receive loops are waiting
    calls.length = 0;
    await client.send(agentSamples[0]!);
    await replies.next();
    calls.push('client got');
    await serving;
    await called('router receive', 'dealer receive'); // each loop's next receive
    assert.deepEqual(calls, [
      'dealer send',
      'server got',
      'router send',
      'router receive',
      'client got',
      'dealer receive',
    ]);
  } finally {
    for (const undo of restore) undo();
    await client.close();
    await server.close();
  }
});

/** Calls `record(this, name)` before every call of `proto[name]` (on the prototype that owns it); returns the undo. */
function spyOn(proto: object, name: string, record: (socket: unknown, name: string) => void): () => void {
  let owner = proto;
  while (!Object.hasOwn(owner, name)) owner = Object.getPrototypeOf(owner) as object;
  const original = Object.getOwnPropertyDescriptor(owner, name)!;
  const call = original.value as (...args: unknown[]) => unknown;
  Object.defineProperty(owner, name, {
    ...original,
    value: function (this: unknown, ...args: unknown[]) {
      record(this, name);
      return call.apply(this, args);
    },
  });
  return () => Object.defineProperty(owner, name, original);
}

void test('inbound ends when the transport closes', async () => {
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const pending = take(server.inbound(), 1, 5000);
  await server.close();
  assert.deepEqual(await pending, []);
});

void test('an agent reconnecting under the same routing id takes the route over', async () => {
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const before = await connectClient({ address: server.address, routingId: 'agent-x' });
  let after: Awaited<ReturnType<typeof connectClient>> | undefined;
  try {
    await before.send(agentSamples[0]!);
    await take(server.inbound(), 1);
    // The old connection is still open when the new one arrives, as after a network blip.
    after = await connectClient({ address: server.address, routingId: 'agent-x' });
    await after.send(agentSamples[1]!);
    const [second] = await take(server.inbound(), 1);
    assert.equal(second?.kind === 'message' && second.message.type, 'hello');
    await server.send('agent-x' as PeerId, coordinatorSamples[1]!);
    const [welcome] = await take(after.inbound(), 1);
    assert.equal(welcome?.kind === 'message' && welcome.message.type, 'welcome');
  } finally {
    await Promise.all([before.close(), after?.close()]);
    await server.close();
  }
});

void test('bad addresses and options fail with TransportError naming what was wrong', async () => {
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  try {
    await assert.rejects(
      bindServer({ address: server.address }),
      (error: unknown) => error instanceof TransportError && error.message.includes(`could not bind ${server.address}`),
    );
    await assert.rejects(
      connectClient({ address: 'not-an-endpoint' }),
      (error: unknown) => error instanceof TransportError && error.message.includes('not-an-endpoint'),
    );
    await assert.rejects(
      bindServer({ address: 'tcp://127.0.0.1:0', highWaterMark: 0 }),
      (error: unknown) => error instanceof TransportError && /highWaterMark/.test(error.message),
    );
  } finally {
    await server.close();
  }
});
