// The communicator's logic over the in-memory peer transport: the same collectives as over ZeroMQ, checked against
// local reductions for every size up to 6, and its failures (timeouts, bad peers, bad payloads) on a simulated clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimulatedClock } from '../../protocol/clock.ts';
import { Communicator } from '../../protocol/communicator.ts';
import { encode } from '../../protocol/codec.ts';
import { CommunicatorError } from '../../protocol/errors.ts';
import { MemoryPeerNetwork } from '../../protocol/memory-peer-transport.ts';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import type { PeerMessage } from '../../protocol/messages.ts';
import type { PeerTransport } from '../../protocol/transport.ts';
import { memoryRanks, rankData, settle } from './fixtures/memory-ranks.ts';

function expected(size: number, length: number, op: 'sum' | 'mean' | 'max' | 'min'): Float32Array {
  const out = rankData(0, length);
  for (let r = 1; r < size; r++) {
    const d = rankData(r, length);
    for (let i = 0; i < length; i++)
      out[i] = op === 'max' ? Math.max(out[i]!, d[i]!) : op === 'min' ? Math.min(out[i]!, d[i]!) : out[i]! + d[i]!;
  }
  if (op === 'mean') for (let i = 0; i < length; i++) out[i] = out[i]! / size;
  return out;
}

for (const size of [1, 2, 3, 4, 5, 6]) {
  void test(`${size} ranks: allreduce sum, mean, max and min equal the local reduction, in place or not`, async (t) => {
    const { comms } = await memoryRanks(t, size);
    // 10,007 floats: not a multiple of the size or of the 1,024-float chunk, so every uneven edge is crossed.
    const length = 10_007;
    for (const op of ['sum', 'mean', 'max', 'min'] as const) {
      const inputs = comms.map((_, r) => rankData(r, length));
      const results = await Promise.all(comms.map((c, r) => c.allreduce(inputs[r]!, op)));
      for (const [r, result] of results.entries()) {
        assert.deepEqual(result, expected(size, length, op), `${op} on rank ${r}`);
        assert.notEqual(result, inputs[r], 'a new array unless inPlace');
        assert.deepEqual(inputs[r], rankData(r, length), `rank ${r}'s input is left as it was`);
      }
    }
    const own = comms.map((_, r) => rankData(r, length));
    const inPlace = await Promise.all(comms.map((c, r) => c.allreduce(own[r]!, 'sum', { inPlace: true })));
    for (const [r, result] of inPlace.entries()) {
      assert.equal(result, own[r]);
      assert.deepEqual(result, expected(size, length, 'sum'));
    }
    // Fewer elements than ranks: some segments are empty.
    const tiny = await Promise.all(comms.map((c, r) => c.allreduce(new Float32Array([r + 1, 2]), 'sum')));
    for (const result of tiny) assert.deepEqual(Array.from(result), [(size * (size + 1)) / 2, 2 * size]);
    const empty = await Promise.all(comms.map((c) => c.allreduce(new Float32Array(0), 'max')));
    for (const result of empty) assert.equal(result.length, 0);
  });

  void test(`${size} ranks: bcast and reduce from every root, gather, barrier`, async (t) => {
    const { comms } = await memoryRanks(t, size);
    for (let root = 0; root < size; root++) {
      const got = await Promise.all(
        comms.map((c, r) => c.bcast(r === root ? { root, values: new Float32Array([root, 1.5]) } : null, root)),
      );
      for (const value of got) {
        assert.equal(value?.root, root);
        assert.ok(value?.values instanceof Float32Array);
        assert.deepEqual(Array.from(value.values), [root, 1.5]);
      }
      const reduced = await Promise.all(comms.map((c, r) => c.reduce(rankData(r, 3000), 'mean', root)));
      for (const [r, value] of reduced.entries())
        assert.deepEqual(value, r === root ? expected(size, 3000, 'mean') : undefined, `reduce at ${root}, rank ${r}`);
    }
    const gathered = await Promise.all(comms.map((c, r) => c.gather(`rank-${r}`, size - 1)));
    for (const [r, value] of gathered.entries())
      assert.deepEqual(value, r === size - 1 ? comms.map((_, i) => `rank-${i}`) : undefined);
    await Promise.all(comms.map((c) => c.barrier()));
  });
}

void test('send and recv: tags and source filters pick from what arrived, in order per sender; self-sends work', async (t) => {
  const { comms } = await memoryRanks(t, 3);
  const [a, b, c] = comms as [Communicator, Communicator, Communicator];
  await b.send(0, 'b-first', 1);
  await b.send(0, 'b-second', 1);
  await c.send(0, { from: 'c' }, 2);
  await c.send(0, new Float32Array(2048).fill(3), 1); // a bulk frame on the p2p channel
  await a.send(0, 'me', 5);
  assert.deepEqual(await a.recv({ tag: 2 }), { source: 2, tag: 2, data: { from: 'c' } });
  assert.deepEqual(await a.recv({ source: 1, tag: 1 }), { source: 1, tag: 1, data: 'b-first' });
  const fromC = await a.recv({ source: [2], tag: 1 });
  assert.ok(fromC.data instanceof Float32Array && fromC.data.length === 2048 && fromC.data[2047] === 3);
  assert.deepEqual(await a.recv({ source: [1, 2] }), { source: 1, tag: 1, data: 'b-second' });
  assert.deepEqual(await a.recv(), { source: 0, tag: 5, data: 'me' });
  await assert.rejects(a.send(3, 'x'), /send: to: expected an integer in \[0, 2\], got 3/);
  await assert.rejects(a.send(1, 'x', -1), /send: tag: expected an integer in \[0, \d+\], got -1/);
  assert.throws(() => a.allreduce(new Float32Array(1), 'median' as never), /allreduce: unknown op median/);
});

void test('the bulk path: float32 payloads travel as a second frame, the ring segment without a copy', async (t) => {
  const sent: { from: number; message: PeerMessage; bulk: Uint8Array | undefined }[] = [];
  const watch = (rank: number, transport: PeerTransport): PeerTransport => ({
    address: transport.address,
    start: (deliver) => transport.start(deliver),
    send: (to, message, bulk) => {
      sent.push({ from: rank, message, bulk });
      return transport.send(to, message, bulk);
    },
    tell: (to, message) => transport.tell(to, message),
    close: (discard) => transport.close(discard),
  });
  const { comms } = await memoryRanks(t, 2, { chunkBytes: 1 << 20 }, watch);
  sent.length = 0;
  const gradients = comms.map((_, r) => rankData(r, 100_000));
  await Promise.all(comms.map((c, r) => c.allreduce(gradients[r]!, 'sum', { inPlace: true })));
  const data = sent.filter((s) => s.message.type === 'peer_data');
  assert.ok(data.length >= 4);
  for (const s of data) {
    assert.equal((s.message as { bulk?: string }).bulk, 'f32');
    assert.equal((s.message as { data: unknown }).data, null);
  }
  // Each rank's first send is its own segment, straight from the caller's array.
  for (const r of [0, 1]) assert.equal(data.find((s) => s.from === r)?.bulk?.buffer, gradients[r]!.buffer);
  // A point-to-point send is copied: the caller may write to its array as soon as send() returns.
  sent.length = 0;
  const mine = new Float32Array(4096).fill(1);
  await comms[0]!.send(1, mine, 4);
  assert.notEqual(sent[0]?.bulk?.buffer, mine.buffer);
  mine.fill(2);
  const got = await comms[1]!.recv({ tag: 4 });
  assert.ok(got.data instanceof Float32Array && got.data.every((x) => x === 1));
  // Small arrays stay inside the message.
  sent.length = 0;
  await comms[0]!.send(1, new Float32Array(8), 5);
  assert.equal(sent[0]?.bulk, undefined);
  await comms[1]!.recv({ tag: 5 });
});

void test('a rank that never joins the collective: the others time out naming it, on the clock, and abort each other', async (t) => {
  const clock = new SimulatedClock();
  const { comms, log } = await memoryRanks(t, 3, { clock, timeoutMs: 1500 });
  const outcomes = Promise.allSettled([comms[0]!.allreduce(rankData(0, 5000)), comms[1]!.allreduce(rankData(1, 5000))]);
  await settle();
  await clock.advance(1500);
  const [first, second] = await outcomes;
  assert.equal(first.status, 'rejected');
  assert.equal(second.status, 'rejected');
  const reasons = [first, second].map((o) => ((o as PromiseRejectedResult).reason as Error).message);
  assert.match(
    reasons[0]!,
    /^rank 0: timed out after 1500 ms in allreduce reduce-scatter \(collective #0\) waiting for rank 2; it may have died$/,
  );
  assert.match(reasons[1]!, /^rank 1: (timed out after 1500 ms in allreduce|rank 0 aborted: )/);
  // Rank 2 hears of it too, and the communicator stays broken, as in MPI.
  await settle();
  await assert.rejects(comms[2]!.barrier(), /rank 2: rank [01] aborted: rank [01]: timed out/);
  await assert.rejects(comms[0]!.barrier(), CommunicatorError);
  assert.ok(
    log.some((line) => line.startsWith('[0] rank 0: timed out after 1500 ms')),
    JSON.stringify(log),
  );
  await Promise.all(comms.map((c) => c.close()));
  assert.equal(clock.pending, 0, 'no timer left behind');
});

void test('a recv with no sender and a join with no root time out on the clock with a clear error', async () => {
  const clock = new SimulatedClock();
  const network = new MemoryPeerNetwork();
  const solo = await Communicator.create({
    rank: 0,
    size: 1,
    rootAddress: 'mem://solo:0',
    timeoutMs: 200,
    clock,
    bindTransport: network.binder(),
  });
  const waiting = assert.rejects(
    solo.recv({ source: 0, tag: 9 }),
    /^CommunicatorError: rank 0: timed out after 200 ms in recv from rank 0 with tag 9$/,
  );
  await clock.advance(200);
  await waiting;
  await solo.close();
  const joining = Communicator.create({
    rank: 1,
    size: 2,
    rootAddress: 'mem://nobody:1',
    bindAddress: 'mem://rank1:0',
    joinTimeoutMs: 300,
    clock,
    bindTransport: network.binder(),
  });
  const refused = assert.rejects(joining, (error: unknown) => {
    assert.ok(error instanceof CommunicatorError);
    assert.equal(
      error.message,
      'rank 1: timed out after 300 ms waiting for the address table from rank 0 at mem://nobody:1',
    );
    assert.equal(error.retryable, true);
    return true;
  });
  await settle();
  await clock.advance(300);
  await refused;
  assert.equal(clock.pending, 0);
});

void test('rank 0 refuses a newcomer of another size or protocol version, which fails at once with the reason', async (t) => {
  const network = new MemoryPeerNetwork();
  const log: string[] = [];
  let rootAddress = '';
  const root = Communicator.create({
    rank: 0,
    size: 2,
    rootAddress: 'mem://root:0',
    timeoutMs: 5000,
    log: (line) => log.push(line),
    bindTransport: network.binder(),
    onListening: (address) => (rootAddress = address),
  });
  await settle(1);
  const wrongSize = Communicator.create({
    rank: 1,
    size: 3,
    rootAddress,
    bindAddress: 'mem://wrong:0',
    bindTransport: network.binder(),
  });
  await assert.rejects(
    wrongSize,
    /^CommunicatorError: rank 1: rank 0 aborted: size mismatch: rank 0 has size 2, rank 1 has size 3$/,
  );
  // An older peer's hello, as raw bytes: refused and told why at the address it gave.
  const old = await network.bind('mem://old:1');
  const told: PeerMessage[] = [];
  old.start((message) => told.push(message));
  network.inject(
    rootAddress,
    encode({ type: 'peer_hello', version: PROTOCOL_VERSION - 1, rank: 1, size: 2, address: old.address }),
  );
  await settle();
  assert.deepEqual(told, [
    {
      type: 'peer_abort',
      source: 0,
      reason: `protocol version mismatch: rank 0 speaks ${PROTOCOL_VERSION}, rank 1 speaks ${PROTOCOL_VERSION - 1}`,
    },
  ]);
  await old.close(true);
  // The right rank 1 still gets in.
  const good = await Communicator.create({
    rank: 1,
    size: 2,
    rootAddress,
    bindAddress: 'mem://good:0',
    bindTransport: network.binder(),
  });
  const comms = [await root, good];
  t.after(() => Promise.all(comms.map((c) => c.close())));
  const sums = await Promise.all(comms.map((c) => c.allreduce(new Float32Array([1, 2]))));
  assert.deepEqual(Array.from(sums[0]!), [2, 4]);
  assert.ok(
    log.some((line) => /refused mem:\/\/wrong:\d+: size mismatch/.test(line)),
    JSON.stringify(log),
  );
});

void test('a peer of another session (an older gang generation, another job) is refused with the reason', async (t) => {
  const network = new MemoryPeerNetwork();
  const log: string[] = [];
  let rootAddress = '';
  const root = Communicator.create({
    rank: 0,
    size: 2,
    rootAddress: 'mem://root:0',
    timeoutMs: 5000,
    session: 'job-a epoch 1 generation 3',
    log: (line) => log.push(line),
    bindTransport: network.binder(),
    onListening: (address) => (rootAddress = address),
  });
  await settle(1);
  await assert.rejects(
    Communicator.create({
      rank: 1,
      size: 2,
      rootAddress,
      bindAddress: 'mem://stale:0',
      session: 'job-a epoch 1 generation 2',
      bindTransport: network.binder(),
    }),
    /rank 0 aborted: session mismatch: rank 0 is in job-a epoch 1 generation 3, rank 1 in job-a epoch 1 generation 2$/,
  );
  const good = await Communicator.create({
    rank: 1,
    size: 2,
    rootAddress,
    bindAddress: 'mem://good:0',
    session: 'job-a epoch 1 generation 3',
    bindTransport: network.binder(),
  });
  const comms = [await root, good];
  t.after(() => Promise.all(comms.map((c) => c.close())));
  const sums = await Promise.all(comms.map((c) => c.allreduce(new Float32Array([1]))));
  assert.deepEqual(Array.from(sums[1]!), [2]);
  assert.ok(
    log.some((line) => /refused mem:\/\/stale:\d+: session mismatch/.test(line)),
    JSON.stringify(log),
  );
});

void test('abort() fails the peers at once instead of after their timeout, and the timeout can follow the step time', async (t) => {
  const network = new MemoryPeerNetwork();
  let rootAddress = '';
  const root = Communicator.create({
    rank: 0,
    size: 2,
    rootAddress: 'mem://root:0',
    timeoutMs: 60_000,
    bindTransport: network.binder(),
    onListening: (address) => (rootAddress = address),
  });
  await settle(1);
  const other = await Communicator.create({
    rank: 1,
    size: 2,
    rootAddress,
    timeoutMs: 60_000,
    bindAddress: 'mem://other:0',
    bindTransport: network.binder(),
  });
  const r = await root;
  t.after(() => Promise.all([r.close(), other.close()]));
  other.timeoutMs = 1500;
  assert.equal(other.timeoutMs, 1500);
  const waiting = r.allreduce(new Float32Array([1, 2, 3]));
  await other.abort('the gang reforms');
  await assert.rejects(waiting, /rank 0: rank 1 aborted: rank 1: the gang reforms/);
});

void test('bad frames are logged and dropped; a marker sent after them shows none got through', async (t) => {
  const { comms, network, rootAddress, log } = await memoryRanks(t, 2);
  const bogus = (data: PeerMessage) => encode(data);
  network.inject(rootAddress, new Uint8Array([0xc1, 0x00]));
  network.inject(
    rootAddress,
    bogus({ type: 'peer_data', source: 1, channel: 'coll', tag: 0, data: null, bulk: 'f32' }),
  );
  network.inject(
    rootAddress,
    bogus({ type: 'peer_data', source: 1, channel: 'coll', tag: 0, data: null, bulk: 'f32' }),
    new Uint8Array(7),
  );
  network.inject(
    rootAddress,
    bogus({ type: 'peer_data', source: 1, channel: 'p2p', tag: 0, data: 1 }),
    new Uint8Array(8),
  );
  network.inject(rootAddress, bogus({ type: 'peer_data', source: 9, channel: 'p2p', tag: 0, data: 1 }));
  network.inject(rootAddress, bogus({ type: 'peer_data', source: 1, channel: 'p2p', tag: 99, data: 'marker' }));
  assert.deepEqual(await comms[0]!.recv(), { source: 1, tag: 99, data: 'marker' });
  const refusals = log.filter((line) => line.startsWith('[0] rank 0: '));
  assert.deepEqual(
    refusals.map((line) => line.replace(/^\[0\] rank 0: /, '')),
    [
      `refused a frame from a peer: frame: not valid msgpack (2 bytes): Data read, but end of buffer not reached {"name":"MessagePack 0xC1"}`,
      'refused a frame from a peer: frame: could not be decoded: collective #0 from rank 1: bulk f32 without its second frame',
      'refused a frame from a peer: frame: could not be decoded: collective #0 from rank 1: bulk frame of 7 bytes is not a whole number of float32s',
      'refused a frame from a peer: frame: could not be decoded: tag 0 from rank 1: a second frame without bulk set',
      'ignored data from rank 9, which is not in a communicator of size 2',
    ],
  );
  const sums = await Promise.all(comms.map((c, r) => c.allreduce(rankData(r, 3000))));
  assert.deepEqual(sums[1], expected(2, 3000, 'sum'));
});

void test('a payload of the wrong length fails the collective, naming the peer and the collective', async (t) => {
  const { comms, network, rootAddress } = await memoryRanks(t, 2);
  // Claims to be rank 1's first chunk of collective #0: 512 floats where a chunk of 1024 is due (chunkBytes 4096).
  network.inject(
    rootAddress,
    encode({ type: 'peer_data', source: 1, channel: 'coll', tag: 0, data: null, bulk: 'f32' }),
    new Uint8Array(2048),
  );
  network.inject(rootAddress, encode({ type: 'peer_data', source: 1, channel: 'p2p', tag: 99, data: 'marker' }));
  await comms[0]!.recv({ tag: 99 });
  const outcomes = await Promise.allSettled([
    comms[0]!.allreduce(new Float32Array(10_000)),
    comms[1]!.allreduce(new Float32Array(10_000)),
  ]);
  assert.equal(outcomes[0].status, 'rejected');
  assert.equal(
    ((outcomes[0] as PromiseRejectedResult).reason as Error).message,
    'rank 0: allreduce reduce-scatter (collective #0): rank 1 sent 512 floats, expected 1024 floats; do all ranks pass arrays of the same length?',
  );
  assert.equal(outcomes[1].status, 'rejected');
  assert.match(((outcomes[1] as PromiseRejectedResult).reason as Error).message, /^rank 1: rank 0 aborted: /);
});

void test('close waits for the peers to confirm; a silent peer is given up on after lingerMs on the clock', async () => {
  const clock = new SimulatedClock();
  const network = new MemoryPeerNetwork();
  const log: string[] = [];
  let rootAddress = '';
  const first = Communicator.create({
    rank: 0,
    size: 2,
    rootAddress: 'mem://root:0',
    lingerMs: 700,
    clock,
    log: (line) => log.push(line),
    bindTransport: network.binder(),
    onListening: (address) => (rootAddress = address),
  });
  await settle(1);
  // Rank 1's endpoint goes away without a word, as a killed process would.
  let goneEndpoint: PeerTransport | undefined;
  const [root, gone] = await Promise.all([
    first,
    Communicator.create({
      rank: 1,
      size: 2,
      rootAddress,
      bindAddress: 'mem://gone:0',
      clock,
      bindTransport: async (address) => (goneEndpoint = await network.bind(address)),
    }),
  ]);
  await root.send(1, 'last words');
  assert.deepEqual(await gone.recv(), { source: 0, tag: 0, data: 'last words' });
  await goneEndpoint!.close(true);
  let closed = false;
  const closing = root.close().then(() => (closed = true));
  await settle();
  await clock.advance(699);
  assert.equal(closed, false);
  await clock.advance(1);
  await closing;
  assert.deepEqual(log.slice(-1), [
    'rank 0: closing without word from rank 1 after 700 ms; what was sent to them may be lost',
  ]);
  assert.equal(clock.pending, 0);
});
