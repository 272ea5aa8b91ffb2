// SIGTERM to `pe-arena run`: local agents checkpoint their jobs and say bye, the journal ends consistent, exit 0,
// and `pe-arena status <runDir>` reads the stopped run back.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  entries,
  exitWithin,
  fakeWorkload,
  fakeWorkloadExperiment,
  journal,
  killAll,
  runsFixture,
  spawnCli,
  startRun,
  waitFor,
  writeExperiment,
} from './helpers.ts';

after(killAll);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Lines in a job's metrics.jsonl (the sink writes them about once a second). */
function metricLines(runDir: string, jobId: string): number {
  const file = join(runDir, 'jobs', jobId, 'metrics.jsonl');
  return existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l !== '').length
    : 0;
}

void test(
  'SIGTERM drains: agents checkpoint and leave, the journal is consistent, exit 0; status reads the run dir',
  { timeout: 60_000 },
  async (t) => {
    const dir = runsFixture(t);
    const file = writeExperiment(
      dir,
      fakeWorkloadExperiment(
        'drain',
        {
          encodings: ['rope', 'nope'],
          tasks: [{ name: 'addition', params: { perStepMs: 20 } }],
          training: { steps: 1000 },
        },
        { checkpointEvery: 200 },
      ),
    );
    const { run, runDir, ctx } = await startRun(dir, file, [
      '--agents',
      '2',
      '--view',
      'off',
      '--workload-module',
      fakeWorkload,
    ]);
    const assigned = await waitFor(
      'both jobs running',
      30_000,
      () => entries(runDir, 'job_assigned').length === 2 && entries(runDir, 'job_assigned'),
      ctx,
    );
    // Both jobs have made progress (their metrics reached the sink) before the signal.
    await waitFor(
      'both jobs to report progress',
      30_000,
      () => assigned.every((a) => metricLines(runDir, a.jobId) > 0),
      ctx,
    );
    const cut = journal(runDir).length;
    run.child.kill('SIGTERM');
    const exit = await exitWithin(run, 30_000, ctx);
    assert.equal(exit.code, 0, ctx());
    const afterSignal = journal(runDir).slice(cut);
    const acked = afterSignal.filter((e) => e.type === 'checkpoint_acked');
    assert.equal(acked.length, 2, `each agent checkpointed its job on SIGTERM\n${ctx()}`);
    assert.equal(afterSignal.filter((e) => e.type === 'agent_left').length, 2, 'both agents said bye');
    assert.equal(
      afterSignal.filter((e) => e.type === 'job_requeued').length,
      2,
      'their jobs are back in the queue for a resume',
    );
    assert.equal(afterSignal.at(-1)?.type, 'coordinator_stopped');
    assert.match(run.output(), /continue with: pe-arena run --resume/);

    // No orphans: every agent process is gone once the coordinator has exited.
    const pids = entries(runDir, 'agent_joined').map((e) => e.pid);
    assert.equal(pids.length, 2);
    await waitFor(
      'the agents to be gone',
      10_000,
      () => pids.every((pid) => !alive(pid)),
      () => `still alive: ${pids.filter(alive).join(', ')}`,
    );

    const status = spawnCli(['status', runDir]);
    const statusExit = await exitWithin(status, 30_000);
    assert.equal(statusExit.code, 0, status.output());
    assert.match(status.output(), /rope\/addition\/s1\s+pending/);
  },
);
