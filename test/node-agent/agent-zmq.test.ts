// runAgent on a real ZeroMQ DEALER against a tiny hand-written coordinator on 127.0.0.1 (port 0), training the REAL
// TensorFlow.js workload (tiny model, a few dozen steps) in a worker thread, through to job_result and shutdown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { settledWithin } from '../../protocol/deadline.ts';
import { bindServer } from '../../protocol/zmq-transport.ts';
import { metricPoints } from '../../protocol/metric-columns.ts';
import { PROTOCOL_VERSION, type AgentToCoordinator, type JobResult } from '../../protocol/messages.ts';
import type { PeerId } from '../../protocol/transport.ts';
import { AGENT_EXIT } from '../../node-agent/agent-config.ts';
import { runAgent } from '../../node-agent/run.ts';
import { ChunkUploads } from './chunk-uploads.ts';
import { makeSpec, silentLogger, welcomeAndAssign } from './helpers.ts';

void test(
  'a real agent over ZeroMQ trains the real tf workload through to job_result, then drains on shutdown',
  { timeout: 60_000 },
  async () => {
    const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
    const received: AgentToCoordinator[] = [];
    const uploads = new ChunkUploads();
    const acked: { kind: string; step: number; bytes: number }[] = [];
    let result: JobResult | undefined;
    const spec = makeSpec({
      model: { layers: 1, dModel: 16, heads: 2, ffnDim: 32, dropout: 0, maxLen: 24 },
      task: { name: 'addition', params: { minDigits: 1, maxDigits: 2 } },
      training: { steps: 30, batchSize: 8, learningRate: 0.003, warmupSteps: 2, weightDecay: 0, clipNorm: 1 },
      evaluation: { samples: 8 },
      checkpointEvery: 10,
    });

    const serve = (async () => {
      let peer: PeerId | undefined;
      for await (const inbound of server.inbound()) {
        if (inbound.kind !== 'message') continue;
        const m = inbound.message;
        received.push(m);
        peer = inbound.from;
        switch (m.type) {
          case 'hello':
            await welcomeAndAssign(server, peer, m, spec, 'run-zmq');
            break;
          case 'heartbeat':
            await server.send(peer, { type: 'heartbeat_ack', seq: m.seq, time: Date.now() });
            break;
          case 'checkpoint_chunk': {
            const complete = uploads.add(m);
            if (complete === undefined) break;
            if (complete.ack.ok) acked.push({ kind: m.kind, step: m.step, bytes: complete.blob.byteLength });
            await server.send(peer, complete.ack);
            break;
          }
          case 'job_result':
            result = m;
            await server.send(peer, { type: 'shutdown', reason: 'run complete' });
            break;
          case 'job_failed':
            await server.send(peer, { type: 'shutdown', reason: `job failed: ${m.error.message}` });
            break;
          case 'bye':
            return;
          default:
            break;
        }
      }
    })();

    const lines: string[] = [];
    try {
      const code = await runAgent({
        coordinator: server.address,
        backend: 'cpu',
        logger: silentLogger,
        handleSignals: false,
        deathTimeoutMs: 30_000,
        stderr: { write: (line: string) => lines.push(line) },
      });
      const failed = received.find((m) => m.type === 'job_failed');
      assert.equal(failed, undefined, JSON.stringify(failed));
      assert.equal(code, AGENT_EXIT.ok, lines.join(''));
      assert.ok(result !== undefined, 'job_result arrived');
      assert.equal(result.evaluation.steps, 30);
      assert.equal(result.evaluation.backend, 'cpu');
      const steps = received.flatMap((m) => (m.type === 'metrics' ? metricPoints(m).map((p) => p.step) : []));
      assert.deepEqual(
        steps,
        Array.from({ length: 30 }, (_, i) => i + 1),
      );
      assert.ok(
        received.flatMap((m) => (m.type === 'metrics' ? metricPoints(m) : [])).every((p) => Number.isFinite(p.loss)),
      );
      assert.deepEqual(
        acked.filter((a) => a.kind === 'checkpoint').map((a) => a.step),
        [10, 20],
      );
      assert.equal(acked.filter((a) => a.kind === 'final').length, 1);
      const hello = received.find((m) => m.type === 'hello');
      assert.ok(hello?.type === 'hello' && hello.version === PROTOCOL_VERSION && hello.backend === 'cpu');
      // The stub stops reading at the bye: wait for that (bounded).
      await settledWithin(serve, 5_000);
      assert.ok(
        received.some((m) => m.type === 'bye'),
        'bye arrived',
      );
    } finally {
      await server.close();
      await serve.catch(() => undefined);
    }
  },
);
