// A whole run through the slurm launcher on the loopback Slurm (.ci/setup-slurm.sh): the real Coordinator on a
// real socket, 3 agents from one sbatch array (fake workload), one agent's task scancel'd mid-job. Every agent
// joins with its Slurm task id, the lost job resumes elsewhere, the run completes with every evaluation, and
// afterwards squeue holds nothing of the run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bindServer } from '../../../protocol/zmq-transport.ts';
import { newRunId } from '../../../protocol/ids.ts';
import type { RunId } from '../../../protocol/messages.ts';
import { Coordinator } from '../../../coordinator/coordinator.ts';
import type { RunOutcome } from '../../../coordinator/coordinator.ts';
import { compileExperiment } from '../../../coordinator/experiment.ts';
import { loadClusterProfile } from '../../../coordinator/cluster-profile.ts';
import { createSlurmLauncher } from '../../../coordinator/launchers/slurm.ts';
import { fakeWorkload, quickExperiment, repoRoot, slurmSkipReason, squeueRun, tempRunDir, waitFor } from './harness.ts';

const skip = slurmSkipReason();

void test(
  "a run through sbatch completes after one agent's task is scancel'd mid-job",
  { skip: skip ?? false, timeout: 120_000 },
  async (t) => {
    const runId = newRunId() as RunId;
    const { runDir, remove } = tempRunDir('pe-arena-slurm-run-', runId);
    const experiment = compileExperiment(
      quickExperiment('slurm-run', { steps: 80, params: { stepDelayMs: 60 }, maxAttempts: 4 }),
      'slurm-run.json',
      runId,
    );
    const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
    const profile = await loadClusterProfile(join(repoRoot, 'configs', 'clusters', 'test-slurm.json'));
    const ref: { coordinator?: Coordinator } = {};
    // The run's demand: jobs not finished yet (so a lost agent is replaced only while there is work for it).
    const launcher = createSlurmLauncher(profile, {
      pollIntervalMs: 1_000,
      demand: () => {
        const c = ref.coordinator?.scheduler.counts();
        return c === undefined ? 3 : Math.min(3, c.pending + c.assigned + c.running + c.evaluating);
      },
    });
    const coordinator = new Coordinator({ experiment, runDir, transport: server, launcher, drainMs: 3_000 });
    ref.coordinator = coordinator;
    let finished = false;
    let launcherStopped = false;
    t.after(async () => {
      if (!finished) await coordinator.stop('test over');
      if (!launcherStopped) await launcher.stop(3_000);
      await server.close().catch(() => undefined);
      remove();
    });
    coordinator.start();
    await launcher.start({
      coordinator: server.address,
      count: 3,
      runDir,
      agentArgs: ['--workload-module', fakeWorkload, '--death-timeout-ms', '20000'],
    });
    const arrayId = launcher.submissionIds()[0]!;
    const c = coordinator;
    await waitFor('3 agents to join', 60_000, () => (c.agents.size >= 3 ? true : undefined));
    assert.deepEqual(
      [...c.agents.values()].map((a) => a.launcherId).sort(),
      [0, 1, 2].map((i) => `${arrayId}_${i}`),
      'every agent joined with its Slurm task id',
    );
    // A job well under way: end its agent's task from outside.
    const busy = await waitFor('a job past step 20', 60_000, () => {
      const job = [...c.scheduler.jobs.values()].find(
        (j) => j.state === 'running' && j.step >= 20 && j.agentId !== undefined,
      );
      return job === undefined ? undefined : c.agents.get(job.agentId!);
    });
    assert.ok(busy.launcherId !== undefined);
    execFileSync('scancel', [busy.launcherId], { timeout: 10_000 });
    // The run's end is an event: the test's own timeout bounds it.
    const outcome: RunOutcome = await c.done;
    finished = true;
    assert.equal(outcome.done, 2);
    assert.equal(outcome.failed, 0);
    for (const job of experiment.jobs)
      assert.ok(existsSync(join(runDir, 'jobs', job.jobId, 'evaluation.json')), `${job.jobId} has its evaluation`);
    const journal = readFileSync(join(runDir, 'journal.jsonl'), 'utf8');
    const assigned = journal.split('\n').filter((l) => l.includes('"job_assigned"')).length;
    assert.ok(assigned >= 3, `the lost job was assigned again (${assigned} assignments for 2 jobs)`);

    await launcher.stop(3_000);
    launcherStopped = true;
    assert.deepEqual(squeueRun(launcher.scheduledJobName), [], 'no job of the run left in squeue');
  },
);
