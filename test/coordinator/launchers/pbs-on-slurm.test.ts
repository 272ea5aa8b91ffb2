// The PBS launcher on a REAL scheduler: the loopback Slurm (.ci/setup-slurm.sh) through slurm-wlm-torque's
// qsub/qstat/qdel. One qsub array of 3 agents says hello, each with its own task number as PBS_JOBID; a task
// ended from outside is reported and replaced; stop() leaves nothing of the run in the queue. This qstat has no
// -t, so the launcher falls back to one `qstat -f` per poll.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { bindServer } from '../../../protocol/zmq-transport.ts';
import type { Hello } from '../../../protocol/messages.ts';
import { newRunId } from '../../../protocol/ids.ts';
import { loadClusterProfile } from '../../../coordinator/cluster-profile.ts';
import { createPbsLauncher } from '../../../coordinator/launchers/pbs.ts';
import type { AgentExit } from '../../../coordinator/launchers/types.ts';
import { waitFor } from './harness.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..', '..');
const fakeWorkload = join(repoRoot, 'test', 'node-agent', 'fixtures', 'fake-workload.ts');

function why(): string | undefined {
  try {
    execFileSync('qsub', ['--help'], { stdio: 'ignore', timeout: 5_000 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      return 'qsub is not on PATH: run .ci/setup-slurm.sh (slurm-wlm-torque)';
  }
  try {
    execFileSync('sinfo', ['-h', '-o', '%T'], { stdio: 'ignore', timeout: 5_000 });
  } catch {
    return 'Slurm does not answer: run .ci/setup-slurm.sh';
  }
  return undefined;
}
const skip = why();

/** own task number -> array form (36_0), for the run's job name. */
function squeueTasks(jobName: string, all: boolean): Map<string, string> {
  const out = execFileSync(
    'squeue',
    ['--noheader', '--array', ...(all ? ['--states=all'] : []), `--name=${jobName}`, '-o', '%A %i'],
    { encoding: 'utf8', timeout: 10_000 },
  );
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
  async () => {
    const runDir = join(mkdtempSync(join(tmpdir(), 'pe-arena-pbs-slurm-')), newRunId());
    const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
    const profile = await loadClusterProfile(join(repoRoot, 'configs', 'clusters', 'test-pbs-wrapper.json'));
    const launcher = createPbsLauncher(profile, { pollIntervalMs: 1_000 });
    const exits: AgentExit[] = [];
    launcher.onExit((e) => exits.push(e));
    let left: string[] = [];
    const hellos = new Map<string, Hello>();
    const reader = (async () => {
      for await (const item of server.inbound())
        if (item.kind === 'message' && item.message.type === 'hello') hellos.set(item.message.agentId, item.message);
    })();
    try {
      await launcher.start({
        coordinator: server.address,
        count: 3,
        runDir,
        agentArgs: ['--workload-module', fakeWorkload, '--death-timeout-ms', '30000'],
      });
      assert.equal(launcher.submissionIds().length, 1, 'one qsub for three agents');
      await waitFor('3 hellos', 45_000, () =>
        new Set([...hellos.values()].map((h) => h.launcherId)).size >= 3 ? true : undefined,
      );
      const tasks = squeueTasks(launcher.scheduledJobName, false);
      const helloIds = [...hellos.values()].map((h) => h.launcherId ?? '').sort();
      assert.deepEqual(helloIds, [...tasks.keys()].sort(), "each hello carries its task's own number (PBS_JOBID)");

      const victim = helloIds[0]!;
      execFileSync('scancel', [tasks.get(victim)!], { timeout: 10_000 });
      const exit = await waitFor('the exit report', 20_000, () => exits.find((e) => e.launcherId === victim));
      assert.equal(exit.pid, 0);
      await waitFor('a replacement', 15_000, () => (launcher.submissionIds().length >= 2 ? true : undefined));
      await waitFor("the replacement's hello", 30_000, () =>
        [...hellos.values()].some((h) => h.launcherId === launcher.submissionIds()[1]) ? true : undefined,
      );
      assert.deepEqual(
        exits.map((e) => e.launcherId),
        [victim],
        'only the ended task was reported',
      );
    } finally {
      await launcher.stop(3_000);
      // This qstat calls a task done while Slurm still shows it COMPLETING (its processes exiting): allow that.
      for (let i = 0; i < 75; i++) {
        left = [...squeueTasks(launcher.scheduledJobName, false).keys()];
        if (left.length === 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      await server.close().catch(() => undefined);
      await reader.catch(() => undefined);
      rmSync(join(runDir, '..'), { recursive: true, force: true });
    }
    assert.deepEqual(left, [], 'no job of the run is left in the queue');
  },
);
