// A whole run through the slurm launcher on the loopback Slurm (.ci/setup-slurm.sh): the real Coordinator on a
// real socket, 3 agents from one sbatch array (fake workload), one agent's task scancel'd mid-job. Every agent
// joins with its Slurm task id, the lost job resumes elsewhere, the run completes with every evaluation, and
// afterwards squeue holds nothing of the run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyJob, coordinatorRun } from './coordinator-run.ts';
import { slurm } from './harness.ts';

void test(
  "a run through sbatch completes after one agent's task is scancel'd mid-job",
  { skip: slurm.skipReason() ?? false, timeout: 120_000 },
  async (t) => {
    const run = await coordinatorRun(t, slurm, { name: 'slurm-run', agents: 3, steps: 80, stepDelayMs: 60 });
    const { experiment, runDir, coordinator: c } = run;
    assert.deepEqual(
      [...c.agents.values()].map((a) => a.launcherId).sort(),
      [0, 1, 2].map((i) => slurm.taskId(run.arrayId, i)),
      'every agent joined with its Slurm task id',
    );
    // A job well under way: end its agent's task from outside.
    const busy = await busyJob(run, 20);
    assert.ok(busy.agent.launcherId !== undefined);
    slurm.cancel([busy.agent.launcherId]);
    const outcome = await run.done();
    assert.equal(outcome.done, 2);
    assert.equal(outcome.failed, 0);
    for (const job of experiment.jobs)
      assert.ok(existsSync(join(runDir, 'jobs', job.jobId, 'evaluation.json')), `${job.jobId} has its evaluation`);
    const journal = readFileSync(join(runDir, 'journal.jsonl'), 'utf8');
    const assigned = journal.split('\n').filter((l) => l.includes('"job_assigned"')).length;
    assert.ok(assigned >= 3, `the lost job was assigned again (${assigned} assignments for 2 jobs)`);

    assert.deepEqual(await run.stopAndList(), [], 'no job of the run left in squeue');
  },
);
