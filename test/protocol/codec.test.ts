import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BULK_MIN_BYTES,
  encode,
  encodeParts,
  decodeAgentBulk,
  decodeCoordinatorBulk,
  decodeAgentMessage,
  decodeCoordinatorMessage,
  decodePeerMessage,
  decodePeerParts,
  decodeUnknown,
} from '../../protocol/codec.ts';
import { MalformedMessageError } from '../../protocol/errors.ts';
import { asJobId, newAgentId, newCheckpointId, newRunId } from '../../protocol/ids.ts';
import { metricColumn, metricCount, metricPoints, metricsMessage } from '../../protocol/metric-columns.ts';
import type { MetricPoint } from '../../protocol/messages.ts';
import { agentSamples, coordinatorSamples, jobSpec, peerSamples } from './fixtures/samples.ts';

const point: MetricPoint = {
  step: 1,
  loss: 2.5,
  learningRate: 1e-3,
  gradNorm: 0.5,
  tokensPerSecond: 900,
  time: 1700000000000,
};

function malformed(fn: () => unknown, field: string, pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof MalformedMessageError, `expected MalformedMessageError, got ${String(error)}`);
    assert.equal(error.field, field);
    assert.match(error.message, pattern);
    return true;
  });
}

void test('every sample message round-trips in its direction', () => {
  for (const m of agentSamples) assert.deepEqual(decodeAgentMessage(encode(m)), m);
  for (const m of coordinatorSamples) assert.deepEqual(decodeCoordinatorMessage(encode(m)), m);
  for (const m of peerSamples) assert.deepEqual(decodePeerMessage(encode(m)), m);
});

void test('typed arrays survive as typed arrays', () => {
  const data = {
    f32: new Float32Array([1.5, -2, 3e-7]),
    f64: new Float64Array([Math.PI]),
    i32: new Int32Array([-7]),
    u8: new Uint8Array([1, 255]),
  };
  const m = decodePeerMessage(encode({ type: 'peer_data', source: 0, channel: 'p2p', tag: 0, data }));
  assert.equal(m.type, 'peer_data');
  const got = (m as { data: typeof data }).data;
  assert.ok(got.f32 instanceof Float32Array);
  assert.ok(got.f64 instanceof Float64Array);
  assert.ok(got.i32 instanceof Int32Array);
  assert.ok(got.u8 instanceof Uint8Array);
  assert.deepEqual(got, data);
});

void test('every typed array class comes back as its class, aligned and never sharing the frame memory', () => {
  const source = new Float64Array([1, 2, 3, 4]);
  const data = {
    i8: new Int8Array([-1, 2]),
    u8: new Uint8Array([1, 255]),
    u8c: new Uint8ClampedArray([0, 255]),
    i16: new Int16Array([-300]),
    u16: new Uint16Array([65535]),
    i32: new Int32Array([-7, 8]),
    u32: new Uint32Array([4e9]),
    f32: new Float32Array([1.5]),
    f64: new Float64Array([Math.PI, Number.NaN]),
    bi64: new BigInt64Array([-5n]),
    bu64: new BigUint64Array([2n ** 63n]),
    empty: new Float64Array(0),
    // A view into the middle of a bigger buffer travels as just its elements.
    view: source.subarray(1, 3),
  };
  const bytes = encode({ type: 'peer_data', source: 0, channel: 'p2p', tag: 0, data });
  // Decode from an odd offset, as inside a frame of several messages: the arrays must still come out aligned.
  const shifted = new Uint8Array(bytes.byteLength + 1);
  shifted.set(bytes, 1);
  const m = decodePeerMessage(shifted.subarray(1));
  const got = (m as { data: Record<string, ArrayBufferView> }).data;
  assert.deepEqual(got, { ...data, view: new Float64Array([2, 3]) });
  for (const [name, array] of Object.entries(got)) {
    assert.equal(array.constructor, (data as Record<string, ArrayBufferView>)[name]!.constructor, name);
    assert.notEqual(array.buffer, shifted.buffer, `${name} must not share the frame's memory`);
  }
});

void test('small decoded arrays share slabs; a slab transferred away is replaced, and nothing decoded changes', () => {
  const message = (i: number) =>
    encode({ type: 'peer_data', source: 0, channel: 'p2p', tag: i, data: new Float64Array([i, i + 0.5]) });
  const first = decodePeerMessage(message(1)) as { data: Float64Array };
  const second = decodePeerMessage(message(2)) as { data: Float64Array };
  assert.equal(first.data.buffer, second.data.buffer, 'two small arrays in a row share a slab');
  assert.ok(first.data.byteOffset % 8 === 0 && second.data.byteOffset % 8 === 0);
  // Transferring the slab (as a careless postMessage would) detaches it; later decodes get a fresh slab.
  const slab = second.data.buffer as ArrayBuffer;
  structuredClone(slab, { transfer: [slab] });
  assert.equal(first.data.length, 0, 'the transfer detached every array in that slab');
  const third = decodePeerMessage(message(3)) as { data: Float64Array };
  assert.deepEqual(third.data, new Float64Array([3, 3.5]));
  // A large array gets a buffer of its own.
  const big = decodePeerMessage(
    encode({ type: 'peer_data', source: 0, channel: 'p2p', tag: 4, data: new Float32Array(5000).fill(2) }),
  ) as { data: Float32Array };
  assert.equal(big.data.byteOffset, 0);
  assert.equal(big.data.buffer.byteLength, 20_000);
});

void test('a typed array whose bytes are not whole elements is refused as malformed', () => {
  // ext 0x74, Float64Array (code 8), 5 bytes of data
  const bad = encode({ type: 'peer_data', source: 0, channel: 'p2p', tag: 0, data: 0 });
  const ext = new Uint8Array([0xc7, 6, 0x74, 8, 1, 2, 3, 4, 5]);
  const frame = new Uint8Array(bad.byteLength - 1 + ext.byteLength);
  frame.set(bad.subarray(0, bad.byteLength - 1));
  frame.set(ext, bad.byteLength - 1);
  assert.throws(
    () => decodePeerMessage(frame),
    (error: unknown) => error instanceof MalformedMessageError && /Float64Array of 5 bytes/.test(error.message),
  );
});

void test('metric points travel as columns and come back as the same points', () => {
  const points: MetricPoint[] = [
    { ...point, step: 7, loss: Number.NaN, accuracy: 0.25 },
    { ...point, step: 8, loss: Number.POSITIVE_INFINITY },
    { ...point, step: 9, accuracy: 0 },
  ];
  const m = decodeAgentMessage(encode(metricsMessage(asJobId('j'), 3, points)));
  assert.equal(m.type, 'metrics');
  if (m.type !== 'metrics') return;
  assert.equal(metricCount(m), 3);
  assert.deepEqual(metricColumn(m, 'step'), new Float64Array([7, 8, 9]));
  // A step without accuracy travels as NaN and comes back without the field.
  assert.deepEqual(metricPoints(m), points);
  assert.deepEqual(metricPoints(metricsMessage(asJobId('j'), 0, [])), []);
});

void test('a field of the wrong kind is named with its path and the message type', () => {
  const assign = (job: Record<string, unknown>): Record<string, unknown> => ({
    type: 'assign',
    job,
    attempt: 0,
    epoch: 1,
  });
  malformed(
    () =>
      decodeCoordinatorMessage(encode(assign({ ...jobSpec, training: { ...jobSpec.training, steps: -1 } }) as never)),
    'job.training.steps',
    /^assign\.job\.training\.steps: expected a positive integer, got -1/,
  );
  malformed(
    () =>
      decodeCoordinatorMessage(
        encode(assign({ ...jobSpec, model: { ...jobSpec.model, attentionLogitCap: -2 } }) as never),
      ),
    'job.model.attentionLogitCap',
    /^assign\.job\.model\.attentionLogitCap: expected a finite number >= 0, got -2/,
  );
  const capped = assign({ ...jobSpec, model: { ...jobSpec.model, attentionLogitCap: 2 } });
  assert.deepEqual(decodeCoordinatorMessage(encode(capped as never)), capped);
  malformed(
    () =>
      decodeCoordinatorMessage(
        encode(assign({ ...jobSpec, model: { ...jobSpec.model, sinusoidalStride: 0 } }) as never),
      ),
    'job.model.sinusoidalStride',
    /^assign\.job\.model\.sinusoidalStride: expected a finite number > 0, got 0/,
  );
  const strided = assign({ ...jobSpec, model: { ...jobSpec.model, sinusoidalStride: 2 } });
  assert.deepEqual(decodeCoordinatorMessage(encode(strided as never)), strided);
  malformed(
    () =>
      decodeCoordinatorMessage(encode(assign({ ...jobSpec, model: { ...jobSpec.model, mapeRelative: 1 } }) as never)),
    'job.model.mapeRelative',
    /^assign\.job\.model\.mapeRelative: expected/,
  );
  const relative = assign({ ...jobSpec, model: { ...jobSpec.model, mapeRelative: true } });
  assert.deepEqual(decodeCoordinatorMessage(encode(relative as never)), relative);
  const noEncoding = assign({ ...jobSpec, encoding: 'bogus' });
  malformed(
    () => decodeCoordinatorMessage(encode(noEncoding as never)),
    'job.encoding',
    /assign\.job\.encoding: expected one of "sinusoidal"/,
  );
  malformed(
    () => decodeAgentMessage(encode({ type: 'heartbeat', agentId: 'a', seq: 1, time: 1 } as never)),
    'state',
    /heartbeat\.state: expected one of/,
  );
  malformed(
    () => decodeAgentMessage(encode({ type: 'metrics', jobId: 'j', epoch: 0, points: [{ step: 1 }] } as never)),
    'columns',
    /^metrics\.columns: expected a Float64Array of 7 columns \(step, loss, .*\) of equal length, got nothing/,
  );
  malformed(
    () => decodeAgentMessage(encode({ type: 'metrics', jobId: 'j', epoch: 0, columns: new Float32Array(14) } as never)),
    'columns',
    /metrics\.columns: expected a Float64Array .*, got a Float32Array of 56 bytes/,
  );
  malformed(
    () => decodeAgentMessage(encode({ type: 'metrics', jobId: 'j', epoch: 0, columns: new Float64Array(8) } as never)),
    'columns',
    /got a Float64Array of 64 bytes/,
  );
  const steps = metricsMessage(
    asJobId('j'),
    0,
    [1, 2, 3].map((step) => ({ ...point, step })),
  );
  for (const [bad, shown] of [
    [-1, '-1'],
    [1.5, '1.5'],
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
  ] as const) {
    steps.columns[2] = bad;
    malformed(
      () => decodeAgentMessage(encode(steps)),
      'columns.step[2]',
      new RegExp(`^metrics\\.columns\\.step\\[2\\]: expected a non-negative integer, got ${shown}`),
    );
  }
  const chunk = { ...agentSamples[4], index: 2, count: 2 };
  malformed(
    () => decodeAgentMessage(encode(chunk as never)),
    'index',
    /checkpoint_chunk\.index: expected an integer below count/,
  );
  const noData = { ...agentSamples[4], data: [1, 2] };
  malformed(() => decodeAgentMessage(encode(noData as never)), 'data', /expected bytes/);
});

void test('unknown type, missing type, non-object, wrong direction', () => {
  malformed(
    () => decodeAgentMessage(encode({ type: 'launch_missiles' } as never)),
    'type',
    /unknown type "launch_missiles"/,
  );
  malformed(() => decodeAgentMessage(encode({ kind: 'hello' } as never)), 'type', /expected a string "type"/);
  malformed(() => decodeAgentMessage(encode([1, 2] as never)), '', /expected an object/);
  // welcome only travels coordinator -> agent.
  malformed(() => decodeAgentMessage(encode(coordinatorSamples[1] as never)), 'type', /unknown type "welcome"/);
});

void test('garbage, truncated, empty and trailing bytes are refused as frames', () => {
  // 0xc1 is the one byte msgpack never uses.
  malformed(
    () => decodeAgentMessage(new Uint8Array([0xc1, 0xff, 0x00])),
    '',
    /^frame: not valid msgpack \(3 bytes\): Data read, but end of buffer not reached \{"name":"MessagePack 0xC1"\}$/,
  );
  const good = encode(agentSamples[1]!);
  malformed(() => decodeAgentMessage(good.subarray(0, good.length - 3)), '', /not valid msgpack/);
  malformed(() => decodeAgentMessage(new Uint8Array(0)), '', /empty/);
  const trailing = new Uint8Array(good.length + 1);
  trailing.set(good);
  malformed(() => decodeAgentMessage(trailing), '', /not valid msgpack/);
});

void test('hostile frames: deep nesting and huge declared lengths are refused, not crashes', () => {
  const deep = new Uint8Array(200_001).fill(0x91); // [[[[...]]]] 200k deep
  deep[200_000] = 0xc0;
  malformed(() => decodeAgentMessage(deep), '', /not valid msgpack/);
  malformed(() => decodeAgentMessage(new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff])), '', /not valid msgpack/);
  malformed(() => decodeAgentMessage(new Uint8Array([0xdb, 0x7f, 0xff, 0xff, 0xff, 0x41])), '', /not valid msgpack/);
  // A __proto__ key cannot reach the prototype.
  const polluted = decodeUnknown(encode({ type: 'x', ['__proto__']: { polluted: true } } as never));
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  assert.equal((polluted as Record<string, unknown>)['polluted'], undefined);
});

void test('oversize frames are refused before decoding', () => {
  // Bytes that would be garbage if decoded: the cap must trip first.
  const big = new Uint8Array(2048).fill(0xc1);
  malformed(() => decodeUnknown(big, { maxBytes: 1024 }), '', /2048 bytes is over the 1024-byte cap/);
  const chunk = { ...agentSamples[4], data: new Uint8Array(4096) };
  malformed(() => decodeAgentMessage(encode(chunk as never), { maxBytes: 1024 }), '', /over the 1024-byte cap/);
  assert.equal(decodeAgentMessage(encode(chunk as never), { maxBytes: 8192 }).type, 'checkpoint_chunk');
});

void test('ids are distinct and run ids sort by time', () => {
  assert.notEqual(newAgentId(), newAgentId());
  assert.notEqual(newCheckpointId(), newCheckpointId());
  const a = newRunId(new Date('2026-01-01T00:00:00Z'));
  const b = newRunId(new Date('2026-01-02T00:00:00Z'));
  assert.match(a, /^20260101-000000-[0-9a-z]{8}$/);
  assert.ok(a < b);
});

void test('a checkpoint chunk of 64 KiB or more sends its bytes as a bulk frame, read where they land', () => {
  const small = agentSamples[4]!;
  assert.equal(encodeParts(small).bulk, undefined); // 4 bytes of data: one frame, as encode() makes it
  assert.deepEqual(encodeParts(small).head, encode(small));
  const bytes = new Uint8Array(BULK_MIN_BYTES).map((_, i) => i % 251);
  const chunk = { ...small, data: bytes } as typeof small;
  const { head, bulk } = encodeParts(chunk);
  assert.equal(bulk, bytes); // the caller's bytes themselves: ZeroMQ sends them without a copy
  assert.ok(head.byteLength < 300, `head of ${head.byteLength} bytes`);
  assert.equal((decodeUnknown(head) as { bulk: number }).bulk, BULK_MIN_BYTES);
  // The receiver's frame is a Buffer; data comes back as a plain Uint8Array over the same memory.
  const frame = Buffer.from(bytes);
  const [item] = decodeAgentBulk(head, frame);
  assert.ok(item?.ok, item?.ok === false ? item.error.message : '');
  assert.deepEqual(item.message, chunk);
  const data = (item.message as { data: Uint8Array }).data;
  assert.equal(Object.getPrototypeOf(data), Uint8Array.prototype);
  assert.equal(data.buffer, frame.buffer);
  // The other direction (coordinator -> agent, a checkpoint to resume from) reads the same way.
  const [back] = decodeCoordinatorBulk(...(Object.values(encodeParts(chunk)) as [Uint8Array, Uint8Array]));
  assert.ok(back?.ok && back.message.type === 'checkpoint_chunk');
});

void test('a bulk frame that does not match its message is refused, naming what is wrong', () => {
  const chunk = { ...agentSamples[4]!, data: new Uint8Array(BULK_MIN_BYTES) } as never;
  const { head, bulk } = encodeParts(chunk) as { head: Uint8Array; bulk: Uint8Array };
  const refusal = (items: ReturnType<typeof decodeAgentBulk>): { message: string; field: string } => {
    assert.equal(items.length, 1);
    assert.ok(items[0] && !items[0].ok, 'expected a refusal');
    return items[0].error;
  };
  assert.match(
    refusal(decodeAgentBulk(head, bulk.subarray(1))).message,
    /^checkpoint_chunk\.bulk: announces 65536 bytes, but the second frame has 65535$/,
  );
  assert.equal(refusal(decodeAgentBulk(head, bulk.subarray(1))).field, 'bulk');
  assert.match(
    refusal(decodeAgentBulk(encode(agentSamples[1]!), bulk)).message,
    /^hello: a second frame of 65536 bytes, but no bulk field announces it/,
  );
  const both = encode({ ...(decodeUnknown(head) as object), data: new Uint8Array(1) } as never);
  assert.match(
    refusal(decodeAgentBulk(both, bulk)).message,
    /^checkpoint_chunk\.data: set in the message and sent as a bulk frame too/,
  );
  assert.match(
    refusal(decodeAgentBulk(head.subarray(0, head.byteLength - 3), bulk)).message,
    /^frame: not valid msgpack/,
  );
  assert.match(refusal(decodeAgentBulk(encode(7 as never), bulk)).message, /^message: a second frame/);
  assert.match(
    refusal(decodeAgentBulk(head, bulk, { maxBytes: 1024 })).message,
    /^bulk frame of 65536 bytes is over the 1024-byte cap/,
  );
  // With its bytes re-attached, the message is validated as any other.
  const wrong = encode({ ...(decodeUnknown(head) as object), index: -1 } as never);
  assert.match(refusal(decodeAgentBulk(wrong, bulk)).message, /^checkpoint_chunk\.index: /);
});

void test('a peer_data bulk frame becomes its float32s, read in place when aligned and copied when not', () => {
  const head = encode({ type: 'peer_data', source: 1, channel: 'coll', tag: 3, data: null, bulk: 'f32' });
  const floats = Float32Array.from([1.5, -2, 3.25]);
  const aligned = new Uint8Array(floats.buffer);
  const inPlace = decodePeerParts(head, aligned) as { data: Float32Array };
  assert.deepEqual(Array.from(inPlace.data), [1.5, -2, 3.25]);
  assert.equal(inPlace.data.buffer, floats.buffer);
  const shifted = new Uint8Array(13);
  shifted.set(aligned, 1);
  const copied = decodePeerParts(head, shifted.subarray(1)) as { data: Float32Array };
  assert.deepEqual(Array.from(copied.data), [1.5, -2, 3.25]);
  assert.notEqual(copied.data.buffer, shifted.buffer);
  malformed(
    () => decodePeerParts(encode(peerSamples[4]!), aligned),
    '',
    /^frame: could not be decoded: a second frame on a peer_abort$/,
  );
});
