// The coordinator on a real ZeroMQ ROUTER (127.0.0.1, free port) with scripted DEALER peers: a corrupt checkpoint
// chunk is refused with checkpoint_ack ok:false and the resend is stored; garbage frames change nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import type { AgentId, CheckpointId, CoordinatorToAgent } from '../../protocol/messages.ts';
import { bindServer, connectClient } from '../../protocol/zmq-transport.ts';
import { Coordinator } from '../../coordinator/coordinator.ts';
import { chunkBlob } from '../../protocol/checkpoint-chunks.ts';
import { blobFor, smallExperiment, tempDir } from '../coordinator/helpers.ts';
import { waitFor } from './helpers.ts';

void test(
  'real sockets: a corrupt checkpoint chunk is refused, sent again and stored; garbage frames are ignored',
  { timeout: 30_000 },
  async (t) => {
    const { dir, cleanup } = tempDir();
    const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
    const coordinator = new Coordinator({
      experiment: smallExperiment({ encodings: ['rope'], seeds: [1] }),
      runDir: dir,
      transport: server,
      drainMs: 2000,
    });
    coordinator.start();
    const agent = await connectClient({ address: server.address });
    const got: CoordinatorToAgent[] = [];
    const pump = (async () => {
      for await (const m of agent.inbound()) {
        if (m.kind !== 'message') continue;
        got.push(m.message);
        if (m.message.type === 'shutdown')
          await agent.send({ type: 'bye', agentId: 'wire-agent' as AgentId, reason: 'shutdown' });
      }
    })();
    t.after(async () => {
      await coordinator.stop('test over');
      await agent.close();
      await pump;
      cleanup();
    });
    await agent.sendRaw(Uint8Array.from([1, 2, 3, 4, 5]));
    await agent.send({
      type: 'hello',
      version: PROTOCOL_VERSION,
      agentId: 'wire-agent' as AgentId,
      host: 'h',
      pid: process.pid,
      backend: 'cpu',
      devices: [],
    });
    const assign = await waitFor('assign', 10_000, () => got.find((m) => m.type === 'assign'));
    assert.ok(assign.type === 'assign');
    const { job, epoch } = assign;
    const blob = blobFor(job.jobId, 10);
    const checkpointId = 'wire-ck' as CheckpointId;
    const chunks = chunkBlob({ jobId: job.jobId, epoch, checkpointId, kind: 'checkpoint', step: 10 }, blob, 100);
    assert.ok(chunks.length >= 3);
    // Upload with one chunk's bytes flipped in transit: refused.
    for (const c of chunks) await agent.send(c.index === 1 ? { ...c, data: c.data.map((b) => b ^ 0x5a) } : c);
    await agent.sendRaw(new TextEncoder().encode('not msgpack at all'));
    const refused = await waitFor('a refusal', 10_000, () => got.find((m) => m.type === 'checkpoint_ack'));
    assert.ok(refused.type === 'checkpoint_ack' && refused.ok === false && /sha256/.test(refused.reason ?? ''));
    assert.equal(coordinator.scheduler.get(job.jobId)?.checkpoints.length, 0);
    // Sent again, intact: acknowledged and on disk.
    for (const c of chunks) await agent.send(c);
    const accepted = await waitFor('an acceptance', 10_000, () => got.find((m) => m.type === 'checkpoint_ack' && m.ok));
    assert.ok(accepted.type === 'checkpoint_ack' && accepted.checkpointId === checkpointId);
    assert.deepEqual(
      readdirSync(join(dir, 'jobs', job.jobId, 'checkpoints')).filter((f) => f.endsWith('.ckpt')).length,
      1,
    );
    assert.equal(coordinator.scheduler.get(job.jobId)?.checkpoints.at(-1)?.step, 10);
    assert.equal(coordinator.state, 'running', 'the garbage did not stop it');
  },
);
