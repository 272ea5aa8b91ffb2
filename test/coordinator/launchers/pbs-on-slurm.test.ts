// The PBS launcher on a REAL scheduler: the loopback Slurm (.ci/setup-slurm.sh) through slurm-wlm-torque's
// qsub/qstat/qdel. One qsub array of 3 agents says hello, each with its own task number as PBS_JOBID; a task
// ended from outside is reported and replaced; stop() leaves nothing of the run in the queue. This qstat has no
// -t, so the launcher falls back to one `qstat -f` per poll.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { loadClusterProfile } from '../../../coordinator/cluster-profile.ts';
import { createPbsLauncher } from '../../../coordinator/launchers/pbs.ts';
import { launcherHarness, repoRoot, torqueWrapperSkipReason, waitFor } from './harness.ts';

const skip = torqueWrapperSkipReason();

/** own task number -> array form (36_0), for the run's job name. */
function squeueTasks(jobName: string): Map<string, string> {
  const out = execFileSync('squeue', ['--noheader', '--array', `--name=${jobName}`, '-o', '%A %i'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return new Map(
    out
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.trim().split(/\s+/) as [string, string]),
  );
}

void test(
  "pbs launcher on Slurm's torque wrapper: one qsub array hellos, an ended task is replaced, stop empties the queue",
  { skip: skip ?? false, timeout: 90_000 },
  async (t) => {
    const profile = await loadClusterProfile(join(repoRoot, 'configs', 'clusters', 'test-pbs-wrapper.json'));
    const launcher = createPbsLauncher(profile, { pollIntervalMs: 1_000 });
    const h = await launcherHarness(t, launcher, { prefix: 'pe-arena-pbs-slurm-' });
    await h.start(3);
    assert.equal(launcher.submissionIds().length, 1, 'one qsub for three agents');
    const launcherIds = new Set<string>();
    await h.hellos.until('3 hellos', (hello) => launcherIds.add(hello.launcherId ?? '').size >= 3);
    const tasks = squeueTasks(launcher.scheduledJobName);
    const helloIds = [...launcherIds].sort();
    assert.deepEqual(helloIds, [...tasks.keys()].sort(), "each hello carries its task's own number (PBS_JOBID)");

    const victim = helloIds[0]!;
    execFileSync('scancel', [tasks.get(victim)!], { timeout: 10_000 });
    const exit = await h.exits.until('the exit report', (e) => e.launcherId === victim);
    assert.equal(exit.pid, 0);
    const replacement = await h.events.until(
      'a replacement',
      (e) => e.kind === 'replacement' && e.submissionId !== undefined,
    );
    assert.equal(launcher.submissionIds()[1], replacement.submissionId);
    await h.hellos.until("the replacement's hello", (hello) => hello.launcherId === replacement.submissionId);
    assert.deepEqual(
      h.exits.items.map((e) => e.launcherId),
      [victim],
      'only the ended task was reported',
    );

    await h.stopAndList();
    // This qstat calls a task done while Slurm still shows it COMPLETING (its processes exiting): allow that.
    const left = await waitFor('the queue to hold nothing of the run', 15_000, () => {
      const now = [...squeueTasks(launcher.scheduledJobName).keys()];
      return now.length === 0 ? now : undefined;
    }).catch(() => [...squeueTasks(launcher.scheduledJobName).keys()]);
    assert.deepEqual(left, [], 'no job of the run is left in the queue');
  },
);
