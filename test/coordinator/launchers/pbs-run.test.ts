// A whole run through the pbs launcher on the real OpenPBS of .ci/setup-openpbs.sh, the case issue 26 found broken:
// the real Coordinator on a real socket, 2 agents from one `qsub -J` array for 2 jobs (fake workload), one agent's
// subjob qdel-ed mid-job. The qdel-ed agent drains on PBS's SIGTERM: it checkpoints at the step it had reached and
// waits for the acknowledgement (periodic checkpoints are set too far apart to count). The launcher reports it lost
// and submits a replacement (there is work for two agents), the lost job resumes from that step on the replacement,
// the run completes with every evaluation, and afterwards qstat -x shows nothing of the run queued or running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { LauncherEvent } from '../../../coordinator/launchers/launcher-events.ts';
import { entries } from '../../e2e/helpers.ts';
import { busyJob, coordinatorRun } from './coordinator-run.ts';
import { openpbs } from './harness.ts';

void test(
  "a run through qsub on OpenPBS completes on a replacement after one agent's subjob is qdel-ed mid-job",
  { skip: openpbs.skipReason() ?? false, timeout: 150_000 },
  async (t) => {
    // 300 steps of 60 ms: the other agent is still busy with its own job when the replacement joins.
    const run = await coordinatorRun(t, openpbs, {
      name: 'openpbs-run',
      agents: 2,
      steps: 300,
      stepDelayMs: 60,
      checkpointEvery: 1000,
    });
    const { experiment, runDir, coordinator: c, launcher } = run;
    const replacements: LauncherEvent[] = [];
    launcher.onEvent((e) => {
      if (e.kind === 'replacement' && e.submissionId !== undefined) replacements.push(e);
    });
    assert.deepEqual(
      [...c.agents.values()].map((a) => a.launcherId).sort(),
      [0, 1].map((i) => openpbs.taskId(run.arrayId, i)),
      'every agent joined with its subjob id',
    );
    const busy = await busyJob(run, 20);
    const stepAtQdel = busy.job.step;
    openpbs.cancel([busy.agent.launcherId!]);
    const outcome = await run.done();
    assert.equal(outcome.done, 2);
    assert.equal(outcome.failed, 0);
    for (const job of experiment.jobs)
      assert.ok(existsSync(join(runDir, 'jobs', job.jobId, 'evaluation.json')), `${job.jobId} has its evaluation`);

    assert.equal(replacements.length, 1, 'one replacement for the one qdel-ed subjob');
    const replacementId = replacements[0]!.submissionId!;
    const joined = entries(runDir, 'agent_joined').find((e) => e.launcherId === replacementId);
    assert.ok(joined !== undefined, `the replacement ${replacementId} joined`);
    const again = entries(runDir, 'job_assigned').filter((e) => e.jobId === busy.job.spec.jobId && e.epoch > 1);
    assert.ok(
      again.some((e) => e.agentId === joined.agentId),
      `the lost job went to the replacement: ${JSON.stringify(again)}`,
    );
    assert.ok(
      (again[0]?.resumeStep ?? 0) >= stepAtQdel,
      `and resumed from the drain's checkpoint at step ${again[0]?.resumeStep}, at or past step ${stepAtQdel} where the qdel found it`,
    );

    assert.deepEqual(await run.stopAndList(), [], 'nothing of the run queued or running (qstat -x)');
  },
);
