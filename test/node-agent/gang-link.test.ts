// GangLink (node-agent/gang-link.ts) on two ranks over real ZeroMQ sockets on 127.0.0.1, with the worker and the
// coordinator played by the test: the rank furthest on hands its state and its metric points to the rank behind, and
// when the rank behind is the new rank 0 it streams the step it never trained, from where the coordinator stands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import type { AgentToCoordinator, GangStart, MetricPoint } from '../../protocol/messages.ts';
import { GangLink, type GangHost } from '../../node-agent/gang-link.ts';
import { asJobId } from '../../protocol/ids.ts';
import type { ToWorker } from '../../node-agent/worker-protocol.ts';

interface Seat {
  link: GangLink;
  sent: AgentToCoordinator[];
  toWorker: ToWorker[];
  streamed: MetricPoint[];
}

function seat(): Seat {
  const sent: AgentToCoordinator[] = [];
  const toWorker: ToWorker[] = [];
  const streamed: MetricPoint[] = [];
  const host: GangHost = {
    jobId: asJobId('job-1'),
    epoch: 1,
    log: pino({ level: 'silent' }),
    peers: { bind: 'tcp://127.0.0.1:0' },
    send: (m) => sent.push(m),
    toWorker: (m) => toWorker.push(m),
    stream: (points) => streamed.push(...points),
    flushMetrics: () => {},
  };
  return { link: new GangLink(host), sent, toWorker, streamed };
}

const point = (step: number): MetricPoint => ({
  step,
  loss: 1 / step,
  learningRate: 0.001,
  gradNorm: 1,
  tokensPerSecond: 100,
  time: 1_000 + step,
});

async function until<T>(what: string, probe: () => T | undefined): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

void test('a rank brought in step gets the metric points it missed, and streams them as the new rank 0', async () => {
  const behind = seat();
  const ahead = seat();
  // The rank ahead trained step 36; the one behind undid it when the old rank 0 died mid-sum.
  ahead.link.onMetrics(Array.from({ length: 36 }, (_, i) => point(i + 1)));
  behind.link.onMetrics(Array.from({ length: 35 }, (_, i) => point(i + 1)));
  ahead.link.onWorkerEvent({ type: 'gang_paused', step: 36 });
  behind.link.onWorkerEvent({ type: 'gang_paused', step: 35 });
  // The coordinator has the points up to 35: the rank behind is seated as rank 0.
  const start: Omit<GangStart, 'rank'> = {
    type: 'gang_start',
    jobId: asJobId('job-1'),
    epoch: 1,
    generation: 2,
    ranks: 2,
    metricsFrom: 35,
    collectiveTimeoutMs: 10_000,
  };
  try {
    behind.link.onStart({ ...start, rank: 0 });
    const address = await until('rank 0 to bind', () => {
      const m = behind.sent.find((s) => s.type === 'gang_address');
      return m?.type === 'gang_address' ? m.address : undefined;
    });
    ahead.link.onStart({ ...start, rank: 1, rootAddress: address });
    // The rank ahead is asked for its state, as its worker would be.
    await until('the snapshot request', () => ahead.toWorker.find((m) => m.type === 'gang_snapshot'));
    const state = new Uint8Array([1, 2, 3, 4]);
    ahead.link.onWorkerEvent({ type: 'gang_state', step: 36, data: state });
    const resumed = await until('the rank behind to resume', () => {
      const m = behind.toWorker.find((w) => w.type === 'gang_resume');
      return m?.type === 'gang_resume' ? m : undefined;
    });
    assert.deepEqual(resumed.state, state, 'the state of the rank ahead');
    assert.equal(resumed.rank, 0);
    assert.deepEqual(
      behind.streamed.map((p) => p.step),
      [36],
      'the new rank 0 streams the step it did not train, once',
    );
    assert.deepEqual(behind.streamed[0], point(36));
    const aheadResumed = await until('the rank ahead to resume', () =>
      ahead.toWorker.find((w) => w.type === 'gang_resume'),
    );
    assert.equal(aheadResumed.type === 'gang_resume' ? aheadResumed.state : 'none', undefined, 'it keeps its own');
    assert.deepEqual(ahead.streamed, [], 'rank 1 streams nothing');
  } finally {
    behind.link.close();
    ahead.link.close();
  }
});
