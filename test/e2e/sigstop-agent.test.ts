// An agent frozen with SIGSTOP is declared lost within the failure timeout and its job moves; after SIGCONT its
// stale messages are rejected and it rejoins as a fresh agent. (Light test workload: this is about the runtime.)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  entries,
  exitWithin,
  fakeWorkload,
  fakeWorkloadExperiment,
  killAll,
  killPid,
  logTail,
  pidOf,
  runsFixture,
  startRun,
  waitFor,
  writeExperiment,
} from './helpers.ts';

after(killAll);

void test(
  'SIGSTOP: lost within the timeout, job moves; after SIGCONT the stale agent is rejected and rejoins fresh',
  { timeout: 90_000 },
  async (t) => {
    const dir = runsFixture(t);
    // A stopped agent is thawed after the test, whatever its outcome.
    const frozenPids: number[] = [];
    t.after(() => {
      for (const pid of frozenPids) killPid(pid, 'SIGCONT');
    });
    const failureTimeoutMs = 2000;
    const file = writeExperiment(
      dir,
      fakeWorkloadExperiment(
        'sigstop',
        { encodings: ['rope'], tasks: [{ name: 'addition', params: { perStepMs: 20 } }], training: { steps: 400 } },
        { failureTimeoutMs, suspectAfterMs: 800 },
      ),
    );
    const { run, runDir, ctx } = await startRun(dir, file, [
      '--agents',
      '2',
      '--view',
      'plain',
      '--workload-module',
      fakeWorkload,
    ]);
    const first = await waitFor('the job to be assigned', 30_000, () => entries(runDir, 'job_assigned')[0], ctx);
    await waitFor(
      'a checkpoint',
      30_000,
      () => entries(runDir, 'checkpoint_acked').find((e) => e.checkpoint.step > 0),
      ctx,
    );
    const frozen = pidOf(runDir, first.agentId);
    assert.ok(frozen !== undefined);
    frozenPids.push(frozen);
    const stoppedAt = Date.now();
    killPid(frozen, 'SIGSTOP');

    const lost = await waitFor(
      'the frozen agent to be declared lost',
      failureTimeoutMs + 4000,
      () => entries(runDir, 'agent_lost').find((e) => e.agentId === first.agentId),
      ctx,
    );
    const detectMs = lost.t - stoppedAt;
    assert.ok(
      detectMs <= failureTimeoutMs + 1500,
      `declared lost after ${detectMs} ms (timeout ${failureTimeoutMs} ms)`,
    );
    assert.match(lost.reason, /no heartbeat/);
    const moved = await waitFor('the job to move', 10_000, () => entries(runDir, 'job_assigned')[1], ctx);
    assert.notEqual(moved.agentId, first.agentId);
    assert.ok((moved.resumeStep ?? 0) > 0, 'resumed from a checkpoint');

    killPid(frozen, 'SIGCONT');
    // Its next messages come from an agent the coordinator has forgotten: rejected, then a fresh hello.
    const rejoined = await waitFor(
      'the thawed agent to rejoin with a fresh id',
      15_000,
      () => entries(runDir, 'agent_joined').find((e) => e.pid === frozen && e.agentId !== first.agentId),
      ctx,
    );
    assert.notEqual(rejoined.agentId, first.agentId);
    const log = readFileSync(join(runDir, 'logs', 'coordinator.log'), 'utf8');
    assert.match(log, new RegExp(`rejected \\w+ from unknown agent ${first.agentId}`));

    const exit = await exitWithin(run, 60_000, () => logTail(runDir));
    assert.equal(exit.code, 0, ctx());
    // The job finished exactly once, on the agent it moved to; nothing from the stale epoch was recorded.
    const done = entries(runDir, 'job_done');
    assert.equal(done.length, 1);
    assert.equal(done[0]?.epoch, moved.epoch);
    const staleAfterLoss = readFileSync(join(runDir, 'jobs', first.jobId, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { epoch: number; time: number })
      .filter((p) => p.epoch === first.epoch && p.time > lost.t + 200);
    assert.equal(staleAfterLoss.length, 0, 'no metrics of the old epoch after it was declared lost');
  },
);
