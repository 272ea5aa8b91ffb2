// Logic tests of the agent actor: memory transport, SimulatedClock, the training loop in process on the fake workload.
// Every test gets its harness from agentHarness (closed in t.after) and, where uploads must be acknowledged, acking.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { PROTOCOL_VERSION, type CheckpointChunk, type CheckpointId, type JobSpec } from '../../protocol/messages.ts';
import { asCheckpointId, asJobId } from '../../protocol/ids.ts';
import { metricCount, metricPoints } from '../../protocol/metric-columns.ts';
import { AGENT_EXIT } from '../../node-agent/agent-config.ts';
import { NodeAgent } from '../../node-agent/agent.ts';
import { createInProcessRunner } from '../../node-agent/job-runner.ts';
import { SimulatedClock } from '../../protocol/clock.ts';
import type { ClientTransport } from '../../protocol/transport.ts';
import { chunkBlob, sha256Hex } from '../../protocol/checkpoint-chunks.ts';
import { fakeCheckpoint, readFakeCheckpoint } from './fixtures/fake-workload.ts';
import {
  acking,
  agentHarness,
  makeConfig,
  makeSpec,
  sendWelcome,
  silentLogger,
  turns,
  welcome,
  type Harness,
} from './helpers.ts';

const training = makeSpec().training;

/** A job of `steps` steps that checkpoints only at its end (the final model). */
function shortSpec(steps: number, overrides: Partial<JobSpec> = {}): JobSpec {
  return makeSpec({ training: { ...training, steps }, checkpointEvery: 1_000_000, ...overrides });
}

/** A job that trains until it is stopped, stepDelayMs real ms a step; no periodic checkpoints unless overridden. */
function endlessSpec(stepDelayMs: number, overrides: Partial<JobSpec> = {}): JobSpec {
  return makeSpec(
    { training: { ...training, steps: 100_000 }, checkpointEvery: 1_000_000, ...overrides },
    { stepDelayMs },
  );
}

async function assign(
  h: Harness,
  job: JobSpec,
  { epoch = 1, attempt = 1, resumeFrom }: { epoch?: number; attempt?: number; resumeFrom?: CheckpointChunkSource } = {},
): Promise<void> {
  await h.coordinator.send({
    type: 'assign',
    job,
    attempt,
    epoch,
    ...(resumeFrom === undefined
      ? {}
      : {
          resumeFrom: {
            checkpointId: resumeFrom.id,
            step: resumeFrom.step,
            totalBytes: resumeFrom.blob.byteLength,
            sha256: sha256Hex(resumeFrom.blob),
          },
        }),
  });
}

/** A welcomed agent (heartbeats every heartbeatIntervalMs), closed after the test. */
async function welcomedAgent(
  t: TestContext,
  config: Parameters<typeof agentHarness>[1] = {},
  heartbeatIntervalMs = 1_000,
): Promise<Harness> {
  const h = agentHarness(t, config);
  await welcome(h, heartbeatIntervalMs);
  return h;
}

void test(
  'hello carries the protocol version and identity; welcome starts heartbeats at its interval',
  { timeout: 30_000 },
  async (t) => {
    const h = agentHarness(t);
    const hello = await h.coordinator.next('hello');
    assert.equal(hello.version, PROTOCOL_VERSION);
    assert.equal(hello.agentId, 'agent-test-1');
    assert.equal(hello.backend, 'cpu');
    assert.equal(hello.pid, 4242);
    const welcomedAt = h.clock.now();
    await sendWelcome(h, hello.agentId, 500);
    assert.equal(h.agent.state, 'ready');
    for (let i = 0; i < 4; i++) {
      await h.clock.advance(500);
      await turns();
    }
    const beats = h.coordinator.all('heartbeat');
    assert.deepEqual(
      beats.map((b) => [b.seq, b.time - welcomedAt]),
      [
        [1, 500],
        [2, 1_000],
        [3, 1_500],
        [4, 2_000],
      ],
      'one heartbeat per interval, the first one interval after the welcome',
    );
    assert.ok(beats.every((b) => b.state === 'idle' && b.agentId === 'agent-test-1' && b.jobId === undefined));
    // No second hello once welcomed: the heartbeats after the hello retry interval are the next things sent.
    await h.clock.advance(5_000);
    await h.coordinator.next('heartbeat', { match: (b) => b.seq === 14 });
    assert.equal(h.coordinator.all('hello').length, 1);
  },
);

void test('hello is repeated until a welcome comes', { timeout: 30_000 }, async (t) => {
  const h = agentHarness(t, { helloRetryMs: 1_000 });
  await h.coordinator.next('hello');
  await h.clock.advance(1_000);
  await turns();
  await h.clock.advance(1_000);
  await turns();
  assert.equal(h.coordinator.all('hello').length, 3);
});

void test(
  'a reject before welcome (version mismatch) exits with code 2 and the reason',
  { timeout: 30_000 },
  async (t) => {
    const h = agentHarness(t);
    await h.coordinator.next('hello');
    const reason = `protocol version mismatch: the coordinator speaks version ${PROTOCOL_VERSION + 1}, agent speaks version ${PROTOCOL_VERSION}`;
    await h.coordinator.send({ type: 'reject', reason, version: PROTOCOL_VERSION + 1 });
    const exit = await h.agent.exited;
    assert.equal(exit.code, AGENT_EXIT.rejected);
    assert.equal(exit.reason, reason);
    assert.equal(h.agent.state, 'stopped');
    assert.equal(h.clock.pending, 0, 'no timers left behind');
  },
);

void test(
  'a job streams every metric point once in batches of at most 50, checkpoints every K steps, uploads the final model, then the result',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    acking(t, h);
    const spec = makeSpec();
    await assign(h, spec, { epoch: 3 });
    const result = await h.coordinator.next('job_result');
    assert.equal(result.epoch, 3);
    assert.equal(result.evaluation.steps, 120);
    const batches = h.coordinator.all('metrics');
    assert.ok(batches.every((b) => metricCount(b) <= 50 && b.epoch === 3 && b.jobId === spec.jobId));
    assert.deepEqual(
      batches.flatMap((b) => metricPoints(b).map((p) => p.step)),
      Array.from({ length: 120 }, (_, i) => i + 1),
    );
    const chunks = h.coordinator.all('checkpoint_chunk');
    const periodic = chunks.filter((c) => c.kind === 'checkpoint').map((c) => c.step);
    assert.deepEqual(periodic, [50, 100]);
    const final = chunks.filter((c) => c.kind === 'final');
    assert.equal(final.length, 1);
    assert.equal(readFakeCheckpoint(final[0]!.data).step, 120);
    assert.equal(final[0]!.sha256, sha256Hex(final[0]!.data));
    // The result comes after the final model and after every metrics batch.
    const order = h.coordinator.received.map((m) => m.type);
    assert.ok(order.lastIndexOf('metrics') < order.indexOf('job_result'));
    assert.ok(order.lastIndexOf('checkpoint_chunk') < order.indexOf('job_result'));
    assert.equal(h.agent.current, undefined);
  },
);

void test('metrics wait for the 250 ms flush when fewer than 50 points are pending', { timeout: 30_000 }, async (t) => {
  const h = await welcomedAgent(t, { sliceSteps: 10 });
  // 30 steps in slices, no checkpoints; the final model is never acknowledged here.
  await assign(h, shortSpec(30));
  // The worker reports all 30 points before its final model: sent at once, they would precede its first chunk.
  const final = await h.coordinator.next('checkpoint_chunk', { match: (c) => c.kind === 'final' });
  assert.deepEqual(
    h.coordinator.received.slice(0, h.coordinator.received.indexOf(final)).filter((m) => m.type === 'metrics'),
    [],
    'held until the flush timer',
  );
  await h.clock.advance(250);
  const batch = await h.coordinator.next('metrics');
  assert.equal(metricCount(batch), 30);
  assert.equal(h.coordinator.all('metrics').length, 1);
});

void test(
  'checkpoints are chunked at 1 MiB and sent again, same id, when the ack says ok: false',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    const refused = new Set<string>();
    acking(t, h, (id, kind, n) => {
      if (kind === 'checkpoint' && n === 1) {
        refused.add(id);
        return { ok: false, reason: 'sha256 mismatch' };
      }
      return { ok: true };
    });
    await assign(h, makeSpec({ training: { ...training, steps: 60 } }, { checkpointBytes: 2.5 * 1024 * 1024 }));
    await h.coordinator.next('job_result', { limitMs: 10_000 });
    const periodic = h.coordinator.all('checkpoint_chunk').filter((c) => c.kind === 'checkpoint');
    assert.ok(periodic.every((c) => c.data.byteLength <= 1024 * 1024));
    assert.equal(refused.size, 1);
    const [id] = [...refused];
    const sent = periodic.filter((c) => c.checkpointId === id);
    assert.equal(sent.length, 6, 'three chunks, sent twice');
    assert.deepEqual(
      sent.map((c) => c.index),
      [0, 1, 2, 0, 1, 2],
    );
    const blob = Buffer.concat(sent.slice(0, 3).map((c) => c.data));
    assert.equal(blob.byteLength, sent[0]!.totalBytes);
    assert.equal(sha256Hex(blob), sent[0]!.sha256);
    assert.equal(readFakeCheckpoint(blob).step, 50);
  },
);

void test(
  'an upload refused every time is given up after 3 re-sends; a final model never acknowledged fails the job (retryable)',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    acking(t, h, () => ({ ok: false, reason: 'disk full' }));
    await assign(h, shortSpec(20));
    const failed = await h.coordinator.next('job_failed');
    assert.equal(failed.error.retryable, true);
    assert.match(failed.error.message, /final model/);
    const finals = h.coordinator.all('checkpoint_chunk').filter((c) => c.kind === 'final');
    assert.equal(finals.length, 4, 'first try + 3 re-sends');
    assert.equal(h.coordinator.all('job_result').length, 0);
  },
);

/** A checkpoint blob as the coordinator holds it. */
interface CheckpointChunkSource {
  blob: Uint8Array;
  id: CheckpointId;
  step: number;
}

/** Answer every checkpoint_request with the blob in 100-byte chunks; the nth answer corrupted when corrupt(n). */
function serveCheckpoint(
  t: TestContext,
  h: Harness,
  source: CheckpointChunkSource,
  epoch: number,
  corrupt: (n: number) => boolean,
): void {
  let stopped = false;
  t.after(() => {
    stopped = true;
  });
  let n = 0;
  void (async () => {
    const deadline = Date.now() + 10_000;
    let scanned = 0;
    while (!stopped && Date.now() < deadline) {
      const req = h.coordinator.received.slice(scanned).find((m) => m.type === 'checkpoint_request');
      scanned = h.coordinator.received.length;
      if (req === undefined || req.type !== 'checkpoint_request') {
        await new Promise((resolve) => setTimeout(resolve, 2));
        continue;
      }
      n++;
      const chunks: CheckpointChunk[] = chunkBlob(
        { jobId: req.jobId, epoch, checkpointId: source.id, kind: 'checkpoint', step: source.step },
        source.blob,
        100,
      );
      for (const c of chunks) {
        const data = corrupt(n) && c.index === 1 ? Uint8Array.from(c.data, (b, i) => (i === 0 ? b ^ 0xff : b)) : c.data;
        await h.coordinator.send({ ...c, data });
      }
    }
  })();
}

void test(
  'resume pulls the checkpoint, refuses a corrupt copy (sha256), asks again, and continues from its step',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    acking(t, h);
    const spec = makeSpec();
    const source = { blob: fakeCheckpoint(spec, 40), id: asCheckpointId('ckpt-40'), step: 40 };
    serveCheckpoint(t, h, source, 2, (n) => n === 1);
    await assign(h, spec, { epoch: 2, attempt: 2, resumeFrom: source });
    const result = await h.coordinator.next('job_result');
    const requests = h.coordinator.all('checkpoint_request');
    assert.equal(requests.length, 2, 'asked again after the corrupt copy');
    assert.ok(requests.every((r) => r.checkpointId === source.id && r.epoch === 2 && r.jobId === spec.jobId));
    const steps = h.coordinator.all('metrics').flatMap((b) => metricPoints(b).map((p) => p.step));
    assert.equal(steps[0], 41, 'training continues from the checkpoint, not from 0');
    assert.equal(steps.length, 80);
    assert.equal(result.evaluation.steps, 120);
    assert.equal(result.epoch, 2);
  },
);

void test('a checkpoint that never verifies fails the job after 3 re-requests', { timeout: 30_000 }, async (t) => {
  const h = await welcomedAgent(t);
  const spec = makeSpec();
  const source = { blob: fakeCheckpoint(spec, 40), id: asCheckpointId('ckpt-bad'), step: 40 };
  serveCheckpoint(t, h, source, 1, () => true);
  await assign(h, spec, { resumeFrom: source });
  const failed = await h.coordinator.next('job_failed');
  assert.equal(failed.error.name, 'CheckpointTransferError');
  assert.equal(h.coordinator.all('checkpoint_request').length, 4);
  assert.equal(h.coordinator.all('metrics').length, 0);
});

void test('cancel stops the job and its worker; the agent goes back to idle', { timeout: 30_000 }, async (t) => {
  const h = await welcomedAgent(t);
  const spec = endlessSpec(5, { checkpointEvery: makeSpec().checkpointEvery });
  await assign(h, spec, { epoch: 4 });
  await h.clock.advance(250);
  await h.coordinator.next('metrics', { limitMs: 5_000 }).catch(async () => {
    await h.clock.advance(250);
    return h.coordinator.next('metrics');
  });
  await h.coordinator.send({ type: 'cancel', jobId: spec.jobId, epoch: 4, reason: 'stale epoch' });
  await turns(10);
  assert.equal(h.agent.current, undefined);
  const afterCancel = h.coordinator.received.length;
  const cancelledAt = h.clock.now();
  // Past a flush and a heartbeat: the heartbeat says idle.
  await h.clock.advance(1_000);
  const beat = await h.coordinator.next('heartbeat', { match: (b) => b.time > cancelledAt });
  assert.equal(beat.state, 'idle');
  // A new assignment is taken; its first metrics batch is the marker: nothing of the cancelled job came before it.
  await assign(h, shortSpec(10, { jobId: asJobId('other') }));
  await h.coordinator.next('checkpoint_chunk', { match: (c) => c.jobId === 'other' && c.kind === 'final' });
  await h.clock.advance(250);
  const batch = await h.coordinator.next('metrics', { match: (m) => m.jobId === 'other' });
  const since = h.coordinator.received.slice(afterCancel, h.coordinator.received.indexOf(batch) + 1);
  assert.deepEqual(
    since.filter((m) => 'jobId' in m && m.jobId === spec.jobId),
    [],
    'nothing of the cancelled job after the cancel',
  );
  assert.deepEqual(
    since.flatMap((m) => (m.type === 'metrics' ? metricPoints(m).map((p) => p.step) : [])),
    Array.from({ length: 10 }, (_, i) => i + 1),
    'the metrics since are the new job, every step once',
  );
});

void test('a cancel for an older epoch of the job is ignored', { timeout: 30_000 }, async (t) => {
  const h = await welcomedAgent(t);
  const spec = endlessSpec(5, { checkpointEvery: makeSpec().checkpointEvery });
  await assign(h, spec, { epoch: 5, attempt: 2 });
  await turns(10);
  await h.coordinator.send({ type: 'cancel', jobId: spec.jobId, epoch: 4, reason: 'old' });
  await turns(10);
  assert.equal(h.agent.current?.epoch, 5);
});

void test(
  'silence: heartbeats go on, metrics are buffered (bounded, oldest dropped) and flushed when the coordinator is heard again',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t, { maxMetricBuffer: 100, metricsBatch: 50 });
    // Go silent: 3+ heartbeat intervals without a word from the coordinator.
    await h.clock.advance(3_500);
    await turns();
    await assign(h, endlessSpec(1));
    await turns();
    // The assign itself was heard; stay silent again long enough, while real time lets the job train.
    await h.clock.advance(3_500);
    await turns();
    const sentBefore = h.coordinator.received.length;
    const deadline = Date.now() + 5_000;
    while (h.agent.current === undefined || h.agent.current.step < 300) {
      if (Date.now() > deadline) throw new Error('job did not train');
      await new Promise((resolve) => setTimeout(resolve, 5));
      await h.clock.advance(300);
    }
    // Past a flush timer, then a heartbeat: the marker after anything the flush would have sent.
    const markAt = h.clock.now();
    await h.clock.advance(1_000);
    const marker = await h.coordinator.next('heartbeat', { match: (b) => b.time > markAt });
    const markerAt = h.coordinator.received.indexOf(marker);
    assert.deepEqual(
      h.coordinator.received.slice(sentBefore, markerAt).filter((m) => m.type === 'metrics'),
      [],
      'nothing was sent while the coordinator was away',
    );
    assert.ok(h.agent.bufferedMetrics <= 100, `buffer bounded, holds ${h.agent.bufferedMetrics}`);
    assert.ok(h.agent.bufferedMetrics > 0);
    const beatsWhileAway = h.coordinator.all('heartbeat').length;
    assert.ok(beatsWhileAway >= 6, `heartbeats continued (${beatsWhileAway})`);
    await h.coordinator.send({ type: 'heartbeat_ack', seq: 1, time: 0 });
    const first = await h.coordinator.next('metrics');
    const current = h.agent.current?.step ?? 0;
    const steps = metricPoints(first).map((p) => p.step);
    assert.ok(steps[0]! > 100, 'the oldest points were dropped');
    assert.ok(steps.at(-1)! <= current);
    await turns(10);
    const flushed = h.coordinator.received
      .slice(markerAt)
      .flatMap((m) => (m.type === 'metrics' ? metricPoints(m) : []));
    assert.ok(flushed.length <= 100 + 50, `only the newest points survived (${flushed.length})`);
  },
);

void test('death timeout: the agent exits with code 3 and stops its worker', { timeout: 30_000 }, async (t) => {
  const h = await welcomedAgent(t, { deathTimeoutMs: 10_000 });
  await assign(h, endlessSpec(2, { checkpointEvery: makeSpec().checkpointEvery }));
  await turns(10);
  assert.ok(h.agent.current !== undefined);
  await h.clock.advance(9_000);
  await turns();
  assert.equal(h.agent.state, 'ready', 'still alive before the timeout');
  await h.clock.advance(1_500);
  const exit = await h.agent.exited;
  assert.equal(exit.code, AGENT_EXIT.coordinatorGone);
  assert.equal(h.agent.current, undefined);
  assert.equal(h.clock.pending, 0);
});

void test('a message heard resets the death timer', { timeout: 30_000 }, async (t) => {
  const h = await welcomedAgent(t, { deathTimeoutMs: 10_000 });
  for (let i = 0; i < 5; i++) {
    await h.clock.advance(6_000);
    await h.coordinator.send({ type: 'heartbeat_ack', seq: i, time: 0 });
    await turns();
  }
  assert.equal(h.agent.state, 'ready');
});

void test(
  'a reject after welcome abandons the job and says hello again with a fresh agent id',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    await assign(h, endlessSpec(2, { checkpointEvery: makeSpec().checkpointEvery }));
    await turns(10);
    await h.coordinator.send({ type: 'reject', reason: 'unknown agent agent-test-1', version: PROTOCOL_VERSION });
    const hello = await h.coordinator.next('hello');
    assert.notEqual(hello.agentId, 'agent-test-1');
    assert.equal(h.agent.agentId, hello.agentId);
    assert.equal(h.agent.current, undefined);
    // A second stale reject does not make yet another id.
    await h.coordinator.send({ type: 'reject', reason: 'unknown agent agent-test-1', version: PROTOCOL_VERSION });
    await turns(10);
    assert.equal(h.agent.agentId, hello.agentId);
    assert.equal(h.agent.state, 'ready');
    await sendWelcome(h, hello.agentId);
    await h.clock.advance(1_000);
    await turns();
    const beat = h.coordinator.all('heartbeat').at(-1);
    assert.equal(beat?.agentId, hello.agentId);
    assert.equal(beat?.state, 'idle');
  },
);

void test('shutdown: checkpoint the running job, stop training, send bye, exit 0', { timeout: 30_000 }, async (t) => {
  const h = await welcomedAgent(t);
  acking(t, h);
  await assign(h, endlessSpec(2));
  await turns(10);
  await h.coordinator.send({ type: 'shutdown', reason: 'coordinator draining' });
  const exit = await h.agent.exited;
  assert.equal(exit.code, AGENT_EXIT.ok);
  const bye = await h.coordinator.next('bye');
  assert.equal(bye.agentId, 'agent-test-1');
  assert.equal(h.agent.current, undefined);
  const types = h.coordinator.received.map((m) => m.type);
  assert.ok(types.includes('checkpoint_chunk') && types.indexOf('checkpoint_chunk') < types.indexOf('bye'));
});

void test('shutdown while idle: bye and exit 0 at once', { timeout: 30_000 }, async (t) => {
  const h = await welcomedAgent(t);
  await h.coordinator.send({ type: 'shutdown', reason: 'run complete' });
  assert.equal((await h.agent.exited).code, AGENT_EXIT.ok);
  await h.coordinator.next('bye');
  assert.equal(h.coordinator.all('checkpoint_chunk').length, 0);
});

void test(
  'drain (SIGTERM): checkpoint the running job, upload it, wait for the ack, bye, exit 0',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    acking(t, h);
    await assign(h, endlessSpec(2), { epoch: 7 });
    await turns(20);
    const exit = await h.agent.drain('SIGTERM', true);
    assert.equal(exit.code, AGENT_EXIT.ok);
    const chunks = h.coordinator.all('checkpoint_chunk');
    assert.equal(chunks.length, 1);
    assert.equal(chunks[0]!.kind, 'checkpoint');
    assert.equal(chunks[0]!.epoch, 7);
    await h.coordinator.next('bye');
    const order = h.coordinator.received.map((m) => m.type);
    assert.ok(order.indexOf('checkpoint_chunk') < order.indexOf('bye'));
  },
);

void test(
  'drain gives up waiting for an ack after drainTimeoutMs and still leaves with bye',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t, { drainTimeoutMs: 3_000 });
    await assign(h, endlessSpec(2));
    await turns(20);
    const exiting = h.agent.drain('SIGTERM', true);
    await h.coordinator.next('checkpoint_chunk');
    await h.clock.advance(3_000);
    const exit = await exiting;
    assert.equal(exit.code, AGENT_EXIT.ok);
    await h.coordinator.next('bye');
  },
);

void test(
  'a non-retryable training error is reported as job_failed with retryable false',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    await assign(h, makeSpec({}, { nanAtStep: 15 }));
    const failed = await h.coordinator.next('job_failed');
    assert.equal(failed.error.retryable, false);
    assert.match(failed.error.message, /NaN/);
    // Metrics of the slices before the failure were delivered, in order, none past it.
    const steps = h.coordinator.all('metrics').flatMap((b) => metricPoints(b).map((p) => p.step));
    assert.ok(steps.length >= 1 && steps.length < 15);
    assert.deepEqual(
      steps,
      Array.from({ length: steps.length }, (_, i) => i + 1),
    );
    assert.equal(h.agent.current, undefined);
  },
);

void test(
  'a workload module that cannot load fails the job (retryable) and the agent keeps serving',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t, {
      workloadModule: new URL('./fixtures/does-not-exist.ts', import.meta.url).href,
    });
    await assign(h, makeSpec());
    const failed = await h.coordinator.next('job_failed');
    assert.equal(failed.error.name, 'WorkloadModuleError');
    assert.equal(failed.error.retryable, true);
    await h.clock.advance(1_000);
    await turns();
    assert.equal(h.coordinator.all('heartbeat').at(-1)?.state, 'idle');
  },
);

void test(
  'an assign while busy is refused with a retryable job_failed for the new job',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    await assign(h, endlessSpec(2, { checkpointEvery: makeSpec().checkpointEvery }));
    await assign(h, makeSpec({ jobId: asJobId('second') }));
    const failed = await h.coordinator.next('job_failed');
    assert.equal(failed.jobId, 'second');
    assert.equal(failed.error.name, 'AgentBusyError');
    assert.equal(failed.error.retryable, true);
    assert.equal(h.agent.current?.jobId, 'rope-addition-s1');
  },
);

void test(
  'garbage bytes from the coordinator are logged and the agent keeps serving',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    await h.coordinator.server.sendRaw(h.coordinator.peer!, Uint8Array.from([0xc1, 0xff, 0x00, 0x13]));
    await h.coordinator.server.sendRaw(h.coordinator.peer!, new TextEncoder().encode('not msgpack at all'));
    await turns();
    await h.clock.advance(1_000);
    await turns();
    assert.equal(h.agent.state, 'ready');
    assert.equal(h.coordinator.all('heartbeat').length, 1);
  },
);

void test(
  'hello is not repeated while the previous one is still stuck in the socket',
  { timeout: 30_000 },
  async () => {
    const sends: string[] = [];
    let closeInbound!: () => void;
    const closed = new Promise<void>((r) => (closeInbound = r));
    const transport: ClientTransport = {
      send: (m) => {
        sends.push(m.type);
        return new Promise(() => undefined); // the coordinator is not there yet
      },
      inbound: () => ({
        async *[Symbol.asyncIterator]() {
          await closed;
        },
      }),
      close: async () => closeInbound(),
    };
    const clock = new SimulatedClock(0);
    const agent = new NodeAgent(makeConfig({ helloRetryMs: 1_000, deathTimeoutMs: 30_000 }), {
      transport,
      clock,
      runner: createInProcessRunner(),
      logger: silentLogger,
    });
    agent.start();
    await clock.advance(10_000);
    assert.deepEqual(sends, ['hello']);
    await clock.advance(20_000);
    assert.equal((await agent.exited).code, AGENT_EXIT.coordinatorGone);
  },
);

void test(
  'an error answer to checkpoint_request makes the agent ask again at once, then fail the job',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    await h.coordinator.send({
      type: 'assign',
      job: makeSpec(),
      attempt: 2,
      epoch: 2,
      resumeFrom: { checkpointId: asCheckpointId('gone'), step: 40, totalBytes: 10, sha256: 'a'.repeat(64) },
    });
    for (let i = 0; i < 4; i++) {
      await h.coordinator.next('checkpoint_request');
      await h.coordinator.send({
        type: 'error',
        error: { name: 'CheckpointNotFound', message: 'no checkpoint gone', retryable: false },
        context: 'checkpoint_request',
      });
    }
    const failed = await h.coordinator.next('job_failed');
    assert.equal(failed.error.name, 'CheckpointTransferError');
    assert.equal(failed.error.retryable, true);
    assert.match(failed.error.message, /no checkpoint gone/);
    assert.equal(h.coordinator.all('checkpoint_request').length, 4);
  },
);

void test(
  'drain while the final model is going up waits (bounded) for the result to go out, then bye',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    await assign(h, shortSpec(20));
    const final = await h.coordinator.next('checkpoint_chunk', { match: (c) => c.kind === 'final' });
    const exiting = h.agent.drain('SIGTERM', true);
    await turns();
    await h.coordinator.send({
      type: 'checkpoint_ack',
      jobId: final.jobId,
      epoch: 1,
      checkpointId: final.checkpointId,
      ok: true,
    });
    const exit = await exiting;
    assert.equal(exit.code, AGENT_EXIT.ok);
    await h.coordinator.next('bye');
    const order = h.coordinator.received.map((m) => m.type);
    assert.ok(order.includes('job_result'));
    assert.ok(order.indexOf('job_result') < order.indexOf('bye'));
  },
);

void test(
  'periodic checkpoints wait while the coordinator is away; only the newest goes up when it is back',
  { timeout: 30_000 },
  async (t) => {
    const h = await welcomedAgent(t);
    acking(t, h);
    await assign(h, endlessSpec(1, { checkpointEvery: 20 }));
    await turns();
    await h.clock.advance(3_500); // silent past 3 heartbeats
    await turns();
    const before = h.coordinator.received.length;
    const deadline = Date.now() + 5_000;
    while ((h.agent.current?.step ?? 0) < 200) {
      if (Date.now() > deadline) throw new Error('job did not train');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // A heartbeat reporting step 200 or more is the marker: checkpoints up to there would have gone before it.
    await h.clock.advance(1_000);
    const marker = await h.coordinator.next('heartbeat', { match: (b) => (b.step ?? 0) >= 200 });
    assert.deepEqual(
      h.coordinator.received
        .slice(before, h.coordinator.received.indexOf(marker))
        .filter((m) => m.type === 'checkpoint_chunk'),
      [],
      'no uploads while away',
    );
    const chunksBefore = h.coordinator.all('checkpoint_chunk').length;
    await h.coordinator.send({ type: 'heartbeat_ack', seq: 1, time: 0 });
    const chunk = await h.coordinator.next('checkpoint_chunk', { match: (c) => c.step >= 200 });
    assert.equal(chunk.kind, 'checkpoint');
    assert.equal(chunk.step % 20, 0);
    const afterBack = h.coordinator.all('checkpoint_chunk').slice(chunksBefore);
    assert.equal(afterBack[0], chunk, 'the first upload after the return is the newest checkpoint, not the backlog');
  },
);
