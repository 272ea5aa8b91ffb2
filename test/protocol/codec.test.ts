import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encode,
  decodeAgentMessage,
  decodeCoordinatorMessage,
  decodePeerMessage,
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
  const bad = {
    type: 'assign',
    job: { ...jobSpec, training: { ...jobSpec.training, steps: -1 } },
    attempt: 0,
    epoch: 1,
  };
  malformed(
    () => decodeCoordinatorMessage(encode(bad as never)),
    'job.training.steps',
    /^assign\.job\.training\.steps: expected a positive integer, got -1/,
  );
  const noEncoding = { type: 'assign', job: { ...jobSpec, encoding: 'bogus' }, attempt: 0, epoch: 1 };
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
  malformed(() => decodeAgentMessage(new Uint8Array([0xc1, 0xff, 0x00])), '', /./);
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
