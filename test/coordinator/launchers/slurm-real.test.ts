// The slurm launcher against a REAL Slurm on 127.0.0.1 (.ci/setup-slurm.sh) and a real coordinator socket:
// an array of agents says hello with its scheduler ids, a scancel'd task comes back through onExit, and stop()
// leaves nothing of the run in squeue. Skips, saying why, where sbatch is not on PATH.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileClusterProfile, loadClusterProfile } from '../../../coordinator/cluster-profile.ts';
import { createSlurmLauncher } from '../../../coordinator/launchers/slurm.ts';
import { launcherHarness, repoRoot, slurmSkipReason, waitFor } from './harness.ts';

const skip = slurmSkipReason();

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** launch/events.jsonl of the run, parsed. */
function eventsOnDisk(runDir: string): { kind: string; text: string; launcherId?: string }[] {
  return readFileSync(join(runDir, 'launch', 'events.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { kind: string; text: string; launcherId?: string });
}

void test(
  'slurm launcher: array of agents hello, scancel is reported through onExit, stop leaves squeue empty',
  { skip: skip ?? false, timeout: 90_000 },
  async (t) => {
    const profile = await loadClusterProfile(join(repoRoot, 'configs', 'clusters', 'test-slurm.json'));
    const launcher = createSlurmLauncher(profile, { pollIntervalMs: 1_000 });
    const h = await launcherHarness(t, launcher, { prefix: 'pe-arena-slurm-' });
    await h.start(3);
    const ids = launcher.submissionIds();
    assert.equal(ids.length, 1, 'one submission (one job array) for three agents');
    const script = readFileSync(join(h.runDir, 'launch', `${launcher.scheduledJobName}-s1.sh`), 'utf8');
    assert.match(script, /#SBATCH --array=0-2/);

    // Every agent says hello with its own Slurm task id (array form, e.g. 12_0).
    const launcherIds = new Set<string | undefined>();
    await h.hellos.until('3 hellos', (hello) => launcherIds.add(hello.launcherId).size >= 3);
    assert.deepEqual([...launcherIds].sort(), [0, 1, 2].map((i) => `${ids[0]}_${i}`).sort());

    // End one task from outside, as an admin or preemption would: the launcher reports it.
    const victim = `${ids[0]}_1`;
    execFileSync('scancel', [victim], { timeout: 10_000 });
    const exit = await h.exits.until('the exit report', (e) => e.launcherId === victim);
    assert.equal(exit.code, null, 'a cancelled task has no exit code');
    assert.ok(exit.signal !== null, 'a cancelled task names how it ended');
    // A replacement was submitted for it (the profile allows 2).
    await h.events.until('a replacement submission', (e) => e.kind === 'replacement' && e.submissionId !== undefined);
    assert.ok(
      h.exits.items.every((e) => e.launcherId === victim),
      `only the cancelled task was reported, got ${JSON.stringify(h.exits.items)}`,
    );
    const events = eventsOnDisk(h.runDir);
    for (const kind of ['submitted', 'running', 'ended', 'replacement'])
      assert.ok(
        events.some((e) => e.kind === kind),
        `events.jsonl has a ${kind} event`,
      );

    assert.deepEqual(await h.stopAndList(), [], 'stop() leaves no job of the run in squeue');
    // No agent process outlives its task (each hello carried its pid; all fake nodes are this host).
    await waitFor('agent processes to exit', 10_000, () =>
      h.hellos.items.every((hello) => !processAlive(hello.pid)) ? true : undefined,
    );
  },
);

void test(
  'slurm launcher: an agent drains at its walltime margin and a continuation takes over',
  { skip: skip ?? false, timeout: 90_000 },
  async (t) => {
    // One-minute walltime: the agent leaves 45 s before the end (at ~15 s); the continuation goes in 55 s before it.
    const profile = compileClusterProfile(
      {
        name: 'walltime-test',
        scheduler: 'slurm',
        queue: 'debug',
        walltime: '00:01:00',
        resources: { cpus: 1 },
        workdir: '/tmp',
        agentArgs: ['--backend', 'cpu'],
        walltimeMarginS: 45,
        continuationLeadS: 55,
        pollIntervalS: 1,
        maxReplacements: 2,
      },
      'walltime-test.json',
    );
    const launcher = createSlurmLauncher(profile, { pollIntervalMs: 1_000 });
    const h = await launcherHarness(t, launcher, { prefix: 'pe-arena-slurm-', welcome: true });
    await h.start(1);
    const first = launcher.submissionIds()[0]!;
    const firstHello = await h.hellos.until('the first hello', (hello) => hello.launcherId === first);
    // The continuation is submitted while the first agent still runs.
    const continuation = await h.events.until(
      'a continuation submission',
      (e) => e.kind === 'continuation' && e.launcherId === first,
    );
    const second = continuation.submissionId!;
    await h.hellos.until('the continuation hello', (hello) => hello.launcherId === second);
    // The first agent leaves at its margin, saying why, and its task ends cleanly (exit 0): no replacement.
    const bye = await h.byes.until('the walltime bye', (b) => b.agentId === firstHello.agentId);
    assert.equal(bye.reason, 'walltime');
    const exit = await h.exits.until('the first task to end', (e) => e.launcherId === first);
    assert.equal(exit.code, 0);
    // (Later submissions are continuations of the continuation, whose one-minute walltime is also short.)
    const events = eventsOnDisk(h.runDir);
    assert.ok(!events.some((e) => e.kind === 'replacement'), 'a clean walltime exit is not replaced');
    assert.ok(
      events.some((e) => e.kind === 'continuation' && e.text.includes(first)),
      'the continuation names the agent it continues',
    );
    assert.deepEqual(await h.stopAndList(), [], 'stop() leaves no job of the run in squeue');
  },
);
