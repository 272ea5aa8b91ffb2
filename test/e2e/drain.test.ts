// SIGTERM to `pe-arena run`: local agents checkpoint their jobs and say bye, the journal ends consistent, exit 0,
// and `pe-arena status <runDir>` reads the stopped run back.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  entries,
  exitWithin,
  fakeWorkload,
  journal,
  killAll,
  logTail,
  runDirOf,
  spawnCli,
  tail,
  tempRunsDir,
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

void test(
  'SIGTERM drains: agents checkpoint and leave, the journal is consistent, exit 0; status reads the run dir',
  { timeout: 60_000 },
  async () => {
    const { dir, cleanup } = tempRunsDir();
    try {
      const file = writeExperiment(dir, {
        name: 'drain',
        encodings: ['rope', 'nope'],
        tasks: [{ name: 'addition', params: { perStepMs: 20 } }],
        seeds: [1],
        training: { steps: 1000 },
        evaluation: { samples: 4 },
        cluster: {
          heartbeatIntervalMs: 200,
          failureTimeoutMs: 3000,
          suspectAfterMs: 1000,
          watchdogMs: 0,
          checkpointEvery: 200,
        },
      });
      const runsDir = join(dir, 'runs');
      const run = spawnCli([
        'run',
        file,
        '--agents',
        '2',
        '--runs-dir',
        runsDir,
        '--view',
        'off',
        '--workload-module',
        fakeWorkload,
      ]);
      const runDir = await waitFor(
        'the run directory',
        30_000,
        () => runDirOf(runsDir),
        () => tail(run.output()),
      );
      const ctx = (): string => `${tail(run.output())}\n${logTail(runDir)}`;
      await waitFor('both jobs running', 30_000, () => entries(runDir, 'job_assigned').length === 2, ctx);
      // Let them make some progress (the first periodic checkpoint is at step 50, 1 s in).
      await new Promise((r) => setTimeout(r, 1500));
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
    } finally {
      await killAll();
      cleanup();
    }
  },
);
