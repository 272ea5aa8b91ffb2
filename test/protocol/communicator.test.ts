// Collectives across real processes: 4 ranks as child processes on 127.0.0.1, checked against local sums.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zmq from 'zeromq';
import { Communicator } from '../../protocol/communicator.ts';
import type { CommunicatorOptions } from '../../protocol/communicator.ts';
import { generateKeyPair } from '../../protocol/keys.ts';
import { applyClientCurve } from '../../protocol/curve-auth.ts';
import { encode } from '../../protocol/codec.ts';
import { CommunicatorError } from '../../protocol/errors.ts';
import { withTimeout } from './fixtures/helpers.ts';
import { finish, runRanks } from './fixtures/ranks.ts';

function rankData(r: number, length: number): Float32Array {
  const data = new Float32Array(length);
  for (let i = 0; i < length; i++) data[i] = (r + 1) * (i % 1000) - 500 * (r % 2);
  return data;
}

void test('4 ranks as processes: allreduce (sum, mean, max), reduce, bcast, gather, barrier, tagged send/recv', async () => {
  const size = 4;
  const ranks = await runRanks(size, 'all', 15_000);
  try {
    const results = await withTimeout(
      Promise.all(ranks.map((r) => r.waitFor('RESULT'))),
      40_000,
      'every rank to report',
    );
    const length = 100_003;
    const all = Array.from({ length: size }, (_, r) => rankData(r, length));
    const expectSum = new Float32Array(length);
    const expectMax = new Float32Array(length).fill(-Infinity);
    for (const d of all)
      for (let i = 0; i < length; i++) {
        expectSum[i]! += d[i]!;
        expectMax[i] = Math.max(expectMax[i]!, d[i]!);
      }
    const expectMean = expectSum.map((x) => x / size);
    const expectReduced = new Float32Array(1000);
    for (let r = 0; r < size; r++) rankData(r, 1000).forEach((x, i) => (expectReduced[i]! += x));
    for (const [rank, text] of results.entries()) {
      const got = JSON.parse(text) as Record<string, unknown>;
      assert.deepEqual(got['sum'], Array.from(expectSum), `rank ${rank} sum`);
      assert.deepEqual(got['mean'], Array.from(expectMean), `rank ${rank} mean`);
      assert.deepEqual(got['max'], Array.from(expectMax), `rank ${rank} max`);
      assert.deepEqual(got['inPlace'], Array.from(expectSum), `rank ${rank} in-place sum`);
      assert.deepEqual(got['tiny'], [1 + 2 + 3 + 4, 8]);
      assert.deepEqual(got['reduced'], rank === size - 1 ? Array.from(expectReduced) : null);
      assert.deepEqual(got['bcast'], { from: 1, payload: [1, 2, 3], typed: true });
      assert.deepEqual(got['gathered'], rank === 0 ? ['rank-0', 'rank-1', 'rank-2', 'rank-3'] : null);
      const left = (rank + size - 1) % size;
      assert.deepEqual(got['p2p'], [
        { source: left, tag: 7, data: { hello: left } },
        { source: left, tag: 8, data: 'second' },
      ]);
    }
  } finally {
    await finish(ranks);
  }
});

void test('a rank killed mid-run makes the others fail with CommunicatorError, not hang', async () => {
  const size = 4;
  const ranks = await runRanks(size, 'die', 1500);
  try {
    const outcomes = await withTimeout(
      Promise.all(ranks.slice(0, size - 1).map((r) => r.waitFor('ERROR'))),
      30_000,
      'the surviving ranks to fail',
    );
    for (const line of outcomes)
      assert.match(line, /^CommunicatorError rank \d: (timed out after 1500 ms in allreduce|rank \d aborted: )/);
    // The rank next to the dead one times out waiting for it by name.
    assert.ok(
      outcomes.some((line) => /waiting for rank 3; it may have died/.test(line)),
      JSON.stringify(outcomes),
    );
    assert.equal(ranks[size - 1]!.lines.length, 0);
  } finally {
    await finish(ranks);
  }
});

void test('ranks that exit right after close() lose nothing: the others still finish the last collective', async () => {
  // Mixed-size allreduces, then a last collective, close() and process.exit(). Before close() waited for the
  // peer_bye answers, queued sends died with the process: the others timed out in a 16 MiB bcast (whose root
  // returns once its sends are queued) every time, and in a 64 MiB allreduce in about half the runs.
  for (const mode of ['soak', 'soak-allreduce']) {
    const ranks = await runRanks(4, mode, 5000, '7');
    try {
      const codes = await withTimeout(Promise.all(ranks.map((r) => r.exited)), 40_000, 'every rank to exit');
      for (const [rank, r] of ranks.entries()) {
        assert.ok(
          r.lines.some((line) => line.startsWith('RESULT')),
          `${mode}, rank ${rank}: ${JSON.stringify(r.lines)}`,
        );
        assert.equal(codes[rank], 0, `${mode}, rank ${rank} exit code`);
      }
    } finally {
      await finish(ranks);
    }
  }
});

void test('in-process: size 1 works without sockets; bad arguments are refused; a missing root times out', async () => {
  const solo = await Communicator.create({ rank: 0, size: 1, rootAddress: 'tcp://127.0.0.1:0' });
  assert.deepEqual(Array.from(await solo.allreduce(new Float32Array([1, 2]), 'mean')), [1, 2]);
  assert.deepEqual(await solo.bcast('x'), 'x');
  assert.deepEqual(await solo.gather(5), [5]);
  await solo.barrier();
  await solo.send(0, 'self', 3);
  assert.deepEqual(await solo.recv({ tag: 3 }), { source: 0, tag: 3, data: 'self' });
  await assert.rejects(solo.send(1, 'x'), CommunicatorError);
  await solo.close();
  await assert.rejects(Communicator.create({ rank: 2, size: 2, rootAddress: 'tcp://127.0.0.1:0' }), CommunicatorError);
  // Nobody listens at the root: rank 1 gives up after its timeout.
  await assert.rejects(
    Communicator.create({ rank: 1, size: 2, rootAddress: 'tcp://127.0.0.1:1', joinTimeoutMs: 300 }),
    (error: unknown) =>
      error instanceof CommunicatorError && /timed out after 300 ms waiting for the address table/.test(error.message),
  );
});

void test('in-process: a recv with no sender times out with a clear error', async () => {
  const root = await Communicator.create({ rank: 0, size: 1, rootAddress: 'tcp://127.0.0.1:0', timeoutMs: 200 });
  await assert.rejects(
    root.recv({ source: 0, tag: 9 }),
    (error: unknown) =>
      error instanceof CommunicatorError && /timed out after 200 ms in recv from rank 0 with tag 9/.test(error.message),
  );
  // The communicator is broken after a failure, as in MPI.
  await assert.rejects(root.barrier(), CommunicatorError);
  await root.close();
});

/** Resolves once a handshake of the socket has failed (it must not have connected yet). */
function handshakeFailed(socket: zmq.Dealer): Promise<void> {
  return new Promise((resolve) => {
    for (const type of ['handshake:error:auth', 'handshake:error:protocol', 'handshake:error:other'] as const)
      socket.events.on(type, () => resolve());
  });
}

/** Two ranks in this process (rank 0 first, so its address is known), closed by the caller. */
async function twoRanks(
  options: Partial<CommunicatorOptions>,
  log: string[],
): Promise<[Communicator, Communicator, string]> {
  let rootAddress = '';
  let bound: () => void = () => {};
  const listening = new Promise<void>((resolve) => (bound = resolve));
  const first = Communicator.create({
    rank: 0,
    size: 2,
    rootAddress: 'tcp://127.0.0.1:0',
    timeoutMs: 5000,
    chunkBytes: 8192,
    ...options,
    log: (line) => log.push(line),
    onListening: (address) => {
      rootAddress = address;
      bound();
    },
  });
  await withTimeout(listening, 5000, 'rank 0 to listen');
  const second = Communicator.create({ ...options, rank: 1, size: 2, rootAddress, timeoutMs: 5000, chunkBytes: 8192 });
  const [rank0, rank1] = await withTimeout(Promise.all([first, second]), 10_000, 'both ranks to join');
  return [rank0, rank1, rootAddress];
}

void test('in-process: two ranks shrug off garbage frames and still allreduce (bulk frames included)', async () => {
  const log: string[] = [];
  const [rank0, rank1, rootAddress] = await twoRanks({}, log);
  const raw = new zmq.Dealer({ linger: 0 });
  raw.connect(rootAddress);
  try {
    await raw.send(new Uint8Array([0xc1, 0x00]));
    await raw.send(['a', 'b', 'c', 'd']);
    await raw.send([
      encode({ type: 'peer_data', source: 1, channel: 'coll', tag: 0, data: null, bulk: 'f32' }),
      new Uint8Array(7),
    ]);
    await raw.send(encode({ type: 'peer_data', source: 9, channel: 'p2p', tag: 0, data: 1 }));
    // A marker after the garbage on the same connection: once it is received, every frame before it has been seen.
    await raw.send(encode({ type: 'peer_data', source: 1, channel: 'p2p', tag: 99, data: 'marker' }));
    assert.deepEqual(await withTimeout(rank0.recv(), 5000, 'the marker'), { source: 1, tag: 99, data: 'marker' });
    assert.ok(
      log.some((line) => /refused a message of 4 frames \(expected 1 or 2\)/.test(line)),
      JSON.stringify(log),
    );
    const a = Float32Array.from({ length: 10_001 }, (_, i) => i);
    const b = Float32Array.from({ length: 10_001 }, (_, i) => 2 * i);
    const [x, y] = await withTimeout(
      Promise.all([rank0.allreduce(a, 'sum'), rank1.allreduce(b, 'sum')]),
      10_000,
      'allreduce',
    );
    const expected = Float32Array.from({ length: 10_001 }, (_, i) => 3 * i);
    assert.deepEqual(x, expected);
    assert.deepEqual(y, expected);
    assert.deepEqual(a[5], 5); // inputs are not modified
    assert.ok(
      log.some((line) => /refused a frame/.test(line)),
      JSON.stringify(log),
    );
    assert.ok(
      log.some((line) => /not a whole number of float32s/.test(line)),
      JSON.stringify(log),
    );
    assert.ok(
      log.some((line) => /not in a communicator of size 2/.test(line)),
      JSON.stringify(log),
    );
  } finally {
    raw.close();
    await Promise.all([rank0.close(), rank1.close()]);
  }
});

void test('in-process: a payload of the wrong length fails the collective, naming the peer and the collective', async () => {
  const log: string[] = [];
  const [rank0, rank1, rootAddress] = await twoRanks({}, log);
  const raw = new zmq.Dealer({ linger: 0 });
  raw.connect(rootAddress);
  try {
    // Claims to be rank 1's first chunk of collective #0: 1024 floats where a chunk of 2048 is due (chunkBytes 8192).
    await raw.send([
      encode({ type: 'peer_data', source: 1, channel: 'coll', tag: 0, data: null, bulk: 'f32' }),
      new Uint8Array(4096),
    ]);
    // Then a marker on the same connection: once it is received, the bogus chunk has arrived before rank 1's own.
    await raw.send(encode({ type: 'peer_data', source: 1, channel: 'p2p', tag: 99, data: 'marker' }));
    await withTimeout(rank0.recv({ tag: 99 }), 5000, 'the marker');
    const outcomes = await withTimeout(
      Promise.allSettled([rank0.allreduce(new Float32Array(10_000)), rank1.allreduce(new Float32Array(10_000))]),
      10_000,
      'both allreduces to settle',
    );
    assert.equal(outcomes[0].status, 'rejected');
    const error = (outcomes[0] as PromiseRejectedResult).reason as Error;
    assert.ok(error instanceof CommunicatorError, String(error));
    assert.match(error.message, /\(collective #0\): rank 1 sent 1024 floats, expected 2048 floats/);
    assert.equal(outcomes[1].status, 'rejected'); // told by rank 0's abort
  } finally {
    raw.close();
    await Promise.all([rank0.close(), rank1.close()]);
  }
});

void test('in-process: with CURVE, an outsider cannot abort the ranks; members still allreduce', async () => {
  const cluster = generateKeyPair();
  const log: string[] = [];
  const [rank0, rank1, rootAddress] = await twoRanks({ curve: cluster }, log);
  const outsiders = [new zmq.Dealer({ linger: 0, sendTimeout: 200 }), new zmq.Dealer({ linger: 0, sendTimeout: 200 })];
  applyClientCurve(outsiders[0]!, { serverPublicKey: cluster.publicKey, ...generateKeyPair() });
  try {
    const refused = outsiders.map((outsider) => handshakeFailed(outsider));
    for (const outsider of outsiders) {
      outsider.connect(rootAddress);
      await outsider.send(encode({ type: 'peer_abort', source: 1, reason: 'injected' })).catch(() => undefined);
    }
    // Their handshakes fail (a stranger's key, no CURVE at all), so nothing they queued can be delivered; then a
    // member's marker is the next thing rank 0 receives, and no abort broke it.
    await withTimeout(Promise.all(refused), 5000, 'the outsiders to be refused');
    await rank1.send(0, 'marker', 99);
    assert.deepEqual(await withTimeout(rank0.recv(), 5000, 'the marker'), { source: 1, tag: 99, data: 'marker' });
    const [x] = await withTimeout(
      Promise.all([rank0.allreduce(new Float32Array([1, 2]), 'max'), rank1.allreduce(new Float32Array([3, 0]), 'max')]),
      10_000,
      'allreduce',
    );
    assert.deepEqual(Array.from(x), [3, 2]);
    assert.ok(!log.some((line) => /injected/.test(line)), JSON.stringify(log));
    assert.ok(
      log.some((line) => /not allowed/.test(line)),
      JSON.stringify(log),
    );
  } finally {
    for (const outsider of outsiders) outsider.close();
    await Promise.all([rank0.close(), rank1.close()]);
  }
});
