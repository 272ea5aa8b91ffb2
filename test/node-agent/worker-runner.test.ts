// The real worker thread: TypeScript loads in it, it trains the fake workload, checkpoints on request and
// every K steps, and terminate() leaves no thread behind. Also a whole job through the agent with a real worker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { systemClock } from '../../protocol/clock.ts';
import { MemoryNetwork } from '../../protocol/memory-transport.ts';
import { metricPoints } from '../../protocol/metric-columns.ts';
import { NodeAgent } from '../../node-agent/agent.ts';
import { createWorkerRunner } from '../../node-agent/job-runner.ts';
import type { FromWorker } from '../../node-agent/worker-protocol.ts';
import { readFakeCheckpoint } from './fixtures/fake-workload.ts';
import { FAKE_WORKLOAD, ScriptedCoordinator, autoAck, makeConfig, makeSpec, silentLogger, welcome } from './helpers.ts';

function collect(limitMs: number): {
  events: FromWorker[];
  exit: Promise<Error | undefined>;
  onEvent(e: FromWorker): void;
  onExit(e?: Error): void;
  waitFor(p: (e: FromWorker, index: number) => boolean): Promise<FromWorker>;
} {
  const events: FromWorker[] = [];
  let resolveExit!: (e: Error | undefined) => void;
  const exit = new Promise<Error | undefined>((r) => (resolveExit = r));
  return {
    events,
    exit,
    onEvent: (e) => events.push(e),
    onExit: (e) => resolveExit(e),
    async waitFor(p) {
      const deadline = Date.now() + limitMs;
      for (;;) {
        const hit = events.find((e, i) => p(e, i));
        if (hit !== undefined) return hit;
        if (Date.now() > deadline)
          throw new Error(`no matching worker event within ${limitMs} ms; got ${events.map((e) => e.type).join(',')}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
  };
}

void test(
  'a worker thread runs the fake workload to its evaluation, with periodic checkpoints',
  { timeout: 30_000 },
  async () => {
    const c = collect(20_000);
    const handle = createWorkerRunner().start(
      { workloadModule: FAKE_WORKLOAD, spec: makeSpec({ checkpointEvery: 40 }), sliceSteps: 10, backend: 'cpu' },
      c,
    );
    try {
      const evaluation = await c.waitFor((e) => e.type === 'evaluation' || e.type === 'failed');
      assert.equal(evaluation.type, 'evaluation', JSON.stringify(evaluation));
      const started = c.events.find((e) => e.type === 'started');
      assert.deepEqual(started, { type: 'started', backend: 'cpu', step: 0, parameterCount: 1234 });
      const steps = c.events.flatMap((e) => (e.type === 'metrics' ? e.points.map((p) => p.step) : []));
      assert.deepEqual(
        steps,
        Array.from({ length: 120 }, (_, i) => i + 1),
      );
      const ckpts = c.events.flatMap((e) => (e.type === 'checkpoint' ? [e] : []));
      assert.deepEqual(
        ckpts.map((e) => e.step),
        [40, 80],
      );
      assert.equal(readFakeCheckpoint(ckpts[0]!.data).step, 40);
      const final = c.events.find((e) => e.type === 'final');
      assert.ok(final?.type === 'final' && readFakeCheckpoint(final.data).step === 120);
      assert.equal(await c.exit, undefined, 'a clean exit after the evaluation');
    } finally {
      await handle.terminate();
    }
  },
);

void test(
  'a worker answers a checkpoint request between slices and terminate() stops it mid-job',
  { timeout: 30_000 },
  async () => {
    const c = collect(20_000);
    const spec = makeSpec(
      { training: { ...makeSpec().training, steps: 1_000_000 }, checkpointEvery: 1_000_000 },
      { stepDelayMs: 2 },
    );
    const runner = createWorkerRunner();
    const handle = runner.start({ workloadModule: FAKE_WORKLOAD, spec, sliceSteps: 10 }, c);
    try {
      await c.waitFor((e) => e.type === 'metrics');
      handle.requestCheckpoint(7);
      const ckpt = await c.waitFor((e) => e.type === 'checkpoint');
      assert.ok(ckpt.type === 'checkpoint');
      assert.equal(ckpt.requestId, 7);
      assert.equal(ckpt.reason, 'requested');
      assert.equal(readFakeCheckpoint(ckpt.data).step, ckpt.step);
      assert.ok(ckpt.step > 0, 'taken after some training');
    } finally {
      await handle.terminate();
    }
    // The marker: a second job on the same runner and collector. Before its 'started' come only its start-up logs.
    const count = c.events.length;
    const next = runner.start({ workloadModule: FAKE_WORKLOAD, spec: makeSpec(), sliceSteps: 10 }, c);
    try {
      const started = await c.waitFor((e, i) => i >= count && e.type === 'started');
      const between = c.events.slice(count, c.events.indexOf(started));
      assert.deepEqual(
        between.filter((e) => e.type !== 'log'),
        [],
        'no events of the first job after terminate',
      );
    } finally {
      await next.terminate();
    }
  },
);

void test('a worker reports a failing workload as a failed event carrying retryable', { timeout: 30_000 }, async () => {
  const c = collect(20_000);
  const handle = createWorkerRunner().start(
    { workloadModule: FAKE_WORKLOAD, spec: makeSpec({}, { failAtStep: 25, failRetryable: true }), sliceSteps: 10 },
    c,
  );
  try {
    const failed = await c.waitFor((e) => e.type === 'failed');
    assert.ok(failed.type === 'failed');
    assert.equal(failed.error.retryable, true);
    assert.equal(failed.error.name, 'FakeWorkloadError');
  } finally {
    await handle.terminate();
  }
});

async function until(what: string, done: () => boolean, limitMs: number): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

void test(
  'a spare worker loads the workload before its job and runs it; after the job a new spare warms up',
  { timeout: 60_000 },
  async () => {
    const lines: string[] = [];
    const runner = createWorkerRunner({
      warm: { workloadModule: FAKE_WORKLOAD, backend: 'cpu' },
      log: (l) => lines.push(l),
    });
    const ready = (): number => lines.filter((l) => l.includes('spare worker ready')).length;
    try {
      runner.prewarm?.();
      await until('the first spare', () => ready() === 1, 20_000);
      const c = collect(20_000);
      const handle = runner.start(
        { workloadModule: FAKE_WORKLOAD, spec: makeSpec(), sliceSteps: 10, backend: 'cpu' },
        c,
      );
      const end = await c.waitFor((e) => e.type === 'evaluation' || e.type === 'failed');
      assert.equal(end.type, 'evaluation', JSON.stringify(end));
      assert.ok(
        c.events.some((e) => e.type === 'log' && e.line === 'fake workload prepared: cpu'),
        'the job ran in the warmed thread',
      );
      assert.equal(await c.exit, undefined);
      await handle.terminate();
      await until('the next spare, once the job thread is gone', () => ready() === 2, 20_000);

      // A job for another backend cannot use that spare: it gets a fresh thread (and the spare stays).
      const other = collect(20_000);
      const h2 = runner.start(
        { workloadModule: FAKE_WORKLOAD, spec: makeSpec(), sliceSteps: 10, backend: 'wasm' },
        other,
      );
      await other.waitFor((e) => e.type === 'evaluation');
      assert.ok(other.events.some((e) => e.type === 'log' && e.line === 'fake workload prepared: no'));
      await h2.terminate();
    } finally {
      await runner.close?.();
    }
  },
);

void test('the agent runs a whole job through a real worker thread', { timeout: 30_000 }, async () => {
  const network = new MemoryNetwork();
  const coordinator = new ScriptedCoordinator(network.listen('mem://real-worker'));
  const agent = new NodeAgent(makeConfig(), {
    transport: network.connect('mem://real-worker'),
    clock: systemClock,
    runner: createWorkerRunner(),
    logger: silentLogger,
  });
  const h = { coordinator, agent, clock: systemClock as never, close: async () => undefined };
  agent.start();
  const stopAck = autoAck(h);
  try {
    await welcome(h, 200);
    await coordinator.send({ type: 'assign', job: makeSpec(), attempt: 1, epoch: 1 });
    const result = await coordinator.next('job_result', { limitMs: 20_000 });
    assert.equal(result.evaluation.steps, 120);
    assert.equal(coordinator.all('metrics').flatMap(metricPoints).length, 120);
    assert.ok(coordinator.all('heartbeat').some((b) => b.state === 'busy'));
  } finally {
    stopAck();
    await agent.stop('test over');
    await coordinator.close();
  }
});

void test(
  'a worker thread that dies mid-job fails the job with a retryable WorkerCrashedError; the agent stays up',
  { timeout: 30_000 },
  async () => {
    const network = new MemoryNetwork();
    const coordinator = new ScriptedCoordinator(network.listen('mem://crash'));
    const agent = new NodeAgent(makeConfig(), {
      transport: network.connect('mem://crash'),
      clock: systemClock,
      runner: createWorkerRunner(),
      logger: silentLogger,
    });
    agent.start();
    try {
      await welcome({ coordinator, agent, clock: systemClock as never, close: async () => undefined }, 200);
      await coordinator.send({ type: 'assign', job: makeSpec({}, { exitAtStep: 35 }), attempt: 1, epoch: 2 });
      const failed = await coordinator.next('job_failed', { limitMs: 20_000 });
      assert.equal(failed.epoch, 2);
      assert.equal(failed.error.name, 'WorkerCrashedError');
      assert.equal(failed.error.retryable, true);
      assert.match(failed.error.message, /code 7/);
      assert.equal(agent.current, undefined);
      assert.equal(agent.state, 'ready');
    } finally {
      await agent.stop('test over');
      await coordinator.close();
    }
  },
);
