// The real CLI through the slurm launcher on the loopback Slurm (.ci/setup-slurm.sh):
// `pe-arena run <exp> --launcher slurm --cluster configs/clusters/test-slurm.json --agents 2` submits one sbatch
// array, both agents join with their Slurm task ids, the run completes with every evaluation, launcher events
// reach the journal and the view, and afterwards squeue holds nothing of the run. `--dry-run` prints the job script
// and submits nothing. Skips, saying why, where sbatch is not on PATH.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fakeWorkload, tail } from '../../e2e/helpers.ts';
import {
  cliFixture,
  dataParallelScenario,
  jobNameOf,
  killAndResumeScenario,
  launcherArgs,
  runCompletesScenario,
} from './cli-harness.ts';
import { slurm } from './harness.ts';

const skip = slurm.skipReason();

void test(
  'pe-arena run --launcher slurm: 2 agents from one sbatch array complete the run; squeue is empty afterwards',
  { skip: skip ?? false, timeout: 90_000 },
  (t) => runCompletesScenario(t, slurm),
);

void test(
  'pe-arena run --launcher slurm --dry-run prints the job script and submits nothing',
  { skip: skip ?? false, timeout: 30_000 },
  async (t) => {
    const { runsDir, spawn, experiment } = cliFixture(t, slurm);
    const file = experiment('cli-slurm-dry');
    const run = spawn([
      'run',
      file,
      ...launcherArgs(slurm, '--nodes', '2', '--dry-run'),
      '--runs-dir',
      runsDir,
      '--workload-module',
      fakeWorkload,
    ]);
    const exit = await run.exited;
    const out = run.output();
    assert.equal(exit.code, 0, tail(out));
    assert.match(out, /^#!\/bin\/bash$/m, 'the script is printed (no login shell: the profile has no set-up)');
    assert.match(out, /^#SBATCH --array=0-1$/m, '--nodes 2 is a 2-task array');
    assert.match(
      out,
      /^exec .* agent --coordinator 'tcp:\/\/127\.0\.0\.1:\d+' /m,
      "agents dial the profile's head address",
    );
    assert.match(out, /dry run: nothing was submitted/);

    const dirs = readdirSync(runsDir);
    assert.equal(dirs.length, 1, 'one run directory');
    const runDir = join(runsDir, dirs[0]!);
    const name = jobNameOf(runDir);
    assert.ok(name !== undefined, 'the job script is written into launch/');
    assert.ok(readFileSync(join(runDir, 'launch', `${name}-s1.sh`), 'utf8').includes('#SBATCH --array=0-1'));
    const events = readFileSync(join(runDir, 'launch', 'events.jsonl'), 'utf8');
    assert.ok(!events.includes('"submitted"'), 'no submission event');
    assert.deepEqual(slurm.leftovers(name), [], 'squeue holds nothing of the run');
  },
);

void test(
  'kill -9 of a slurm run, then --resume: the new coordinator takes over the queued and running agents and submits none',
  { skip: skip ?? false, timeout: 150_000 },
  (t) =>
    killAndResumeScenario(t, slurm, (left) =>
      assert.equal(left.length, 2, 'the killed coordinator left both tasks running'),
    ),
);

void test(
  'a data-parallel job through slurm: one gang across the array tasks (CURVE on, peers by host name) trains every step once',
  { skip: skip ?? false, timeout: 240_000 },
  (t) => dataParallelScenario(t, slurm),
);
