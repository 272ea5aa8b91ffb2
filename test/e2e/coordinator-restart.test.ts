// kill -9 of the coordinator mid-run, then `pe-arena run --resume <runDir>`: it rebinds the same address, the
// agents (still running) are told they are unknown and rejoin, no finished job runs again, and the run completes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  entries,
  exitWithin,
  fakeWorkload,
  fakeWorkloadExperiment,
  journal,
  killAll,
  killPid,
  logTail,
  runsFixture,
  spawnCli,
  startRun,
  tail,
  waitFor,
  writeExperiment,
} from './helpers.ts';

after(killAll);

void test(
  'kill -9 of the coordinator, restart on the same run directory: done jobs stay done and the run completes',
  { timeout: 120_000 },
  async (t) => {
    const dir = runsFixture(t);
    // The first coordinator's agents outlive it; they go after the test too.
    let agentPids: number[] = [];
    t.after(() => {
      for (const pid of agentPids) killPid(pid, 'SIGKILL');
    });
    const file = writeExperiment(
      dir,
      fakeWorkloadExperiment('restart', {
        encodings: ['rope', 'nope'],
        tasks: [{ name: 'addition', params: { perStepMs: 25 } }],
        seeds: [1, 2],
        training: { steps: 100 },
      }),
    );
    // Agents give up on a vanished coordinator after 30 s, so nothing outlives the test for long.
    const { run: first, runDir } = await startRun(dir, file, [
      '--agents',
      '2',
      '--view',
      'off',
      '--workload-module',
      fakeWorkload,
      '--agent-death-timeout-ms',
      '30000',
    ]);
    const ctx = (): string => logTail(runDir);
    // Kill it once one job is done and another has progress of its own.
    await waitFor(
      'a done job and a running job with a checkpoint',
      60_000,
      () => {
        const done = new Set(entries(runDir, 'job_done').map((e) => e.jobId));
        return (
          done.size >= 1 &&
          entries(runDir, 'checkpoint_acked').some((e) => !done.has(e.jobId) && e.kind === 'checkpoint') &&
          done.size < 4
        );
      },
      ctx,
    );
    agentPids = entries(runDir, 'agent_joined').map((e) => e.pid);
    killPid(first.child.pid!, 'SIGKILL');
    await exitWithin(first, 10_000);
    const before = journal(runDir);
    const doneBefore = new Set(before.filter((e) => e.type === 'job_done').map((e) => (e as { jobId: string }).jobId));
    const cut = before.length;

    const second = spawnCli(['run', '--resume', runDir, '--launcher', 'none', '--view', 'plain']);
    const exit = await exitWithin(second, 90_000, ctx);
    assert.equal(exit.code, 0, `${tail(second.output())}\n${ctx()}`);

    const after = journal(runDir).slice(cut);
    assert.ok(
      after.some((e) => e.type === 'coordinator_started'),
      'the restart is journaled',
    );
    const reassigned = after.filter((e) => e.type === 'job_assigned') as { jobId: string; resumeStep?: number }[];
    for (const e of reassigned)
      assert.ok(!doneBefore.has(e.jobId), `${e.jobId} was done before the crash and ran again`);
    assert.ok(
      reassigned.some((e) => (e.resumeStep ?? 0) > 0),
      'a running job resumed from its checkpoint',
    );
    const allDone = new Set(
      journal(runDir)
        .filter((e) => e.type === 'job_done')
        .map((e) => (e as { jobId: string }).jobId),
    );
    assert.equal(allDone.size, 4);
    for (const jobId of allDone) assert.ok(existsSync(join(runDir, 'jobs', jobId, 'evaluation.json')));
    assert.ok(existsSync(join(runDir, 'final_comparison', 'comparison_report.json')));
    // The agents that outlived the first coordinator rejoined the second as fresh agents.
    const rejoinedPids = new Set(
      (after.filter((e) => e.type === 'agent_joined') as { pid: number }[]).map((e) => e.pid),
    );
    assert.ok(
      agentPids.some((p) => rejoinedPids.has(p)),
      'the old agents rejoined',
    );
  },
);
