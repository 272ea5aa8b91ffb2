// The slurm launcher against a REAL Slurm on 127.0.0.1 (.ci/setup-slurm.sh) and a real coordinator socket:
// an array of agents says hello with its scheduler ids, a scancel'd task comes back through onExit, and stop()
// leaves nothing of the run in squeue. Skips, saying why, where sbatch is not on PATH.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadClusterProfile } from '../../../coordinator/cluster-profile.ts';
import {
  agentProcessesExited,
  assertEventKinds,
  launcherHarness,
  repoRoot,
  slurm,
  walltimeScenario,
} from './harness.ts';

const skip = slurm.skipReason();

void test(
  'slurm launcher: array of agents hello, scancel is reported through onExit, stop leaves squeue empty',
  { skip: skip ?? false, timeout: 90_000 },
  async (t) => {
    const profile = await loadClusterProfile(join(repoRoot, slurm.profile));
    const launcher = slurm.createLauncher(profile, { pollIntervalMs: 1_000 });
    const h = await launcherHarness(t, launcher, { prefix: 'pe-arena-slurm-', queue: slurm.leftovers });
    await h.start(3);
    const ids = launcher.submissionIds();
    assert.equal(ids.length, 1, 'one submission (one job array) for three agents');
    const script = readFileSync(join(h.runDir, 'launch', `${launcher.scheduledJobName}-s1.sh`), 'utf8');
    assert.match(script, /#SBATCH --array=0-2/);

    // Every agent says hello with its own Slurm task id (array form, e.g. 12_0).
    const launcherIds = new Set<string | undefined>();
    await h.hellos.until('3 hellos', (hello) => launcherIds.add(hello.launcherId).size >= 3);
    assert.deepEqual([...launcherIds].sort(), [0, 1, 2].map((i) => slurm.taskId(ids[0]!, i)).sort());

    // End one task from outside, as an admin or preemption would: the launcher reports it.
    const victim = slurm.taskId(ids[0]!, 1);
    slurm.cancel([victim]);
    const exit = await h.exits.until('the exit report', (e) => e.launcherId === victim);
    assert.equal(exit.code, null, 'a cancelled task has no exit code');
    assert.ok(exit.signal !== null, 'a cancelled task names how it ended');
    // A replacement was submitted for it (the profile allows 2).
    await h.events.until('a replacement submission', (e) => e.kind === 'replacement' && e.submissionId !== undefined);
    assert.ok(
      h.exits.items.every((e) => e.launcherId === victim),
      `only the cancelled task was reported, got ${JSON.stringify(h.exits.items)}`,
    );
    assertEventKinds(h.runDir, ['submitted', 'running', 'ended', 'replacement']);

    assert.deepEqual(await h.stopAndList(), [], 'stop() leaves no job of the run in squeue');
    // No agent process outlives its task (each hello carried its pid; all fake nodes are this host).
    await agentProcessesExited(h.hellos, 10_000);
  },
);

void test(
  'slurm launcher: an agent drains at its walltime margin and a continuation takes over',
  { skip: skip ?? false, timeout: 90_000 },
  (t) => walltimeScenario(t, slurm),
);
