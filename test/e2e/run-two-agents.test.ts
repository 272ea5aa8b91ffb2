// Real processes, real ZeroMQ on 127.0.0.1, real training (tiny model, few steps): `pe-arena run` with two local
// agents and four jobs finishes with every result, while garbage bytes and a wrong-version peer hit its port.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import type { CoordinatorToAgent } from '../../protocol/messages.ts';
import { connectClient } from '../../protocol/zmq-transport.ts';
import { statusFromCoordinator } from '../../coordinator/status.ts';
import {
  entries,
  exitWithin,
  killAll,
  logTail,
  runsFixture,
  startRun,
  tail,
  tinyRealExperiment,
  TWO_REAL_AGENTS,
  waitFor,
  writeExperiment,
} from './helpers.ts';

after(killAll);

void test(
  'two local agents, four jobs, real training: all finish with every result; bad peers do not disturb the run',
  { timeout: 150_000 },
  async (t) => {
    const dir = runsFixture(t);
    const file = writeExperiment(dir, tinyRealExperiment('two-agents'));
    const { run, runDir } = await startRun(dir, file, TWO_REAL_AGENTS);
    const address = await waitFor('the coordinator address', 30_000, () => entries(runDir, 'run_started')[0]?.address);

    // A peer speaking garbage, then a peer with another protocol version, while agents join and train.
    const bad = await connectClient({ address });
    const replies: CoordinatorToAgent[] = [];
    const pump = (async () => {
      for await (const m of bad.inbound()) if (m.kind === 'message') replies.push(m.message);
    })();
    try {
      await bad.sendRaw(Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xc1]));
      await bad.sendRaw(new Uint8Array(0));
      await bad.send({
        type: 'hello',
        version: PROTOCOL_VERSION + 7,
        agentId: 'old-agent' as never,
        host: 'elsewhere',
        pid: 1,
        backend: 'cpu',
        devices: [],
      });
      const reject = await waitFor('reject for the wrong version', 15_000, () =>
        replies.find((m) => m.type === 'reject'),
      );
      assert.ok(
        reject.type === 'reject' &&
          reject.reason.includes(String(PROTOCOL_VERSION)) &&
          reject.reason.includes(String(PROTOCOL_VERSION + 7)),
        'the reason names both versions',
      );
    } finally {
      await bad.close();
      await pump;
    }

    // Live status over the wire while it runs (no hello needed).
    const status = await statusFromCoordinator(address, { timeoutMs: 10_000 });
    assert.equal(status.jobs.length, 4);

    const exit = await exitWithin(run, 130_000, () => logTail(runDir));
    assert.equal(exit.code, 0, tail(run.output()));
    const jobs = JSON.parse(readFileSync(join(runDir, 'experiment.json'), 'utf8')) as {
      jobs: { jobId: string; training: { steps: number } }[];
    };
    assert.equal(jobs.jobs.length, 4);
    for (const job of jobs.jobs) {
      const evaluation = JSON.parse(readFileSync(join(runDir, 'jobs', job.jobId, 'evaluation.json'), 'utf8')) as {
        jobId: string;
        steps: number;
        exactMatch: number;
      };
      assert.equal(evaluation.jobId, job.jobId);
      assert.equal(evaluation.steps, job.training.steps);
      assert.ok(evaluation.exactMatch >= 0 && evaluation.exactMatch <= 1);
      assert.ok(existsSync(join(runDir, 'jobs', job.jobId, 'final_model', 'model.bin')));
      assert.ok(
        readFileSync(join(runDir, 'jobs', job.jobId, 'metrics.jsonl'), 'utf8').split('\n').length > job.training.steps,
      );
    }
    const report = JSON.parse(readFileSync(join(runDir, 'final_comparison', 'comparison_report.json'), 'utf8')) as {
      jobs: { evaluated: number };
      rows: unknown[];
    };
    assert.equal(report.jobs.evaluated, 4);
    assert.equal(report.rows.length, 2);
    assert.match(run.output(), /encoding\s+task\s+seeds\s+exact/, 'the comparison table is printed');
    // The bad peers were logged and refused; no job was ever lost or retried.
    const log = readFileSync(join(runDir, 'logs', 'coordinator.log'), 'utf8');
    assert.match(log, /malformed message from peer/);
    assert.match(log, /protocol version/);
    assert.equal(entries(runDir, 'job_assigned').length, 4, 'each job assigned once');
    assert.equal(entries(runDir, 'agent_lost').length, 0);
    assert.equal(entries(runDir, 'run_finished').length, 1);
    assert.ok(existsSync(join(runDir, 'logs', 'agents')));
  },
);
