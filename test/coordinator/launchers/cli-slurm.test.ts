// The real CLI through the slurm launcher on the loopback Slurm (.ci/setup-slurm.sh):
// `pe-arena run <exp> --launcher slurm --cluster configs/clusters/test-slurm.json --agents 2` submits one sbatch
// array, both agents join with their Slurm task ids, the run completes with every evaluation, launcher events
// reach the journal and the view, and afterwards squeue holds nothing of the run. `--dry-run` prints the job script
// and submits nothing. Skips, saying why, where sbatch is not on PATH.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  entries,
  exitWithin,
  fakeWorkload,
  killAll,
  killPid,
  logTail,
  runDirOf,
  spawnCli,
  tail,
  tempRunsDir,
  waitFor,
  writeExperiment,
} from '../../e2e/helpers.ts';
import type { Spawned } from '../../e2e/helpers.ts';
import { quickExperiment, slurmSkipReason, squeueRun } from './harness.ts';

const profile = join('configs', 'clusters', 'test-slurm.json');

const skip = slurmSkipReason();

/** The scheduler job name of the run (every submission carries it), from the scripts in launch/. */
function jobNameOf(runDir: string): string | undefined {
  const launch = join(runDir, 'launch');
  if (!existsSync(launch)) return undefined;
  const script = readdirSync(launch).find((f) => /-s\d+\.sh$/.test(f));
  return script?.replace(/-s\d+\.sh$/, '');
}

/** `--launcher slurm --cluster <test profile>` and the rest. */
function slurmArgs(...rest: string[]): string[] {
  return ['--launcher', 'slurm', '--cluster', profile, ...rest];
}

/** The agents' fake workload and how long they wait for a silent coordinator. */
function agentArgs(deathTimeoutMs: number): string[] {
  return ['--workload-module', fakeWorkload, '--agent-death-timeout-ms', String(deathTimeoutMs)];
}

/**
 * A runs directory for one test and the CLI processes it spawns. After the test (whatever happened) a CLI still
 * running is stopped with SIGINT (it cancels its jobs; its output is kept as a diagnostic), whatever of the run is
 * still queued is scancel'd by name, and the directory goes.
 */
function cliFixture(t: TestContext): { dir: string; runsDir: string; spawn(args: string[]): Spawned } {
  const { dir, cleanup } = tempRunsDir();
  const runsDir = join(dir, 'runs');
  const spawned: Spawned[] = [];
  t.after(async () => {
    for (const run of spawned.reverse()) {
      if (run.child.exitCode !== null || run.child.signalCode !== null) continue;
      t.diagnostic(`still running at the end of the test:\n${tail(run.output())}\n${logTail(runDirOf(runsDir))}`);
      run.child.kill('SIGINT');
      await exitWithin(run, 30_000).catch(() => killAll());
    }
    for (const d of existsSync(runsDir) ? readdirSync(runsDir) : []) {
      const name = jobNameOf(join(runsDir, d));
      if (name !== undefined && squeueRun(name).length > 0)
        execFileSync('scancel', [`--name=${name}`], { stdio: 'ignore', timeout: 10_000 });
    }
    cleanup();
  });
  return {
    dir,
    runsDir,
    spawn: (args) => {
      const run = spawnCli(args);
      spawned.push(run);
      return run;
    },
  };
}

function experiment(dir: string, name: string, steps = 30): string {
  return writeExperiment(dir, quickExperiment(name, { steps, params: { perStepMs: 20 }, maxAttempts: 3 }));
}

void test(
  'pe-arena run --launcher slurm: 2 agents from one sbatch array complete the run; squeue is empty afterwards',
  { skip: skip ?? false, timeout: 90_000 },
  async (t) => {
    const { dir, runsDir, spawn } = cliFixture(t);
    const file = experiment(dir, 'cli-slurm');
    const run = spawn([
      'run',
      file,
      ...slurmArgs('--agents', '2', '--view', 'plain', '--no-report'),
      '--runs-dir',
      runsDir,
      ...agentArgs(20_000),
    ]);
    const exit = await run.exited;
    const runDir = runDirOf(runsDir);
    const out = run.output();
    assert.equal(exit.code, 0, `the run exits 0\n${tail(out)}\n${logTail(runDir)}`);
    assert.ok(runDir !== undefined, 'one run directory');
    assert.match(out, /submitted 2 agent\(s\) through sbatch/);
    assert.match(out, /2 done, 0 failed/);

    const expanded = JSON.parse(readFileSync(join(runDir, 'experiment.json'), 'utf8')) as {
      jobs: { jobId: string }[];
    };
    assert.equal(expanded.jobs.length, 2);
    for (const job of expanded.jobs)
      assert.ok(existsSync(join(runDir, 'jobs', job.jobId, 'evaluation.json')), `${job.jobId} has its evaluation`);

    // Agents joined with their Slurm task ids; the launcher's events are in the journal and the view.
    const submitted = entries(runDir, 'launcher_event').find((e) => e.kind === 'submitted');
    assert.ok(submitted?.submissionId !== undefined, 'the submission is journaled');
    const joined = entries(runDir, 'agent_joined').map((e) => e.launcherId);
    assert.ok(joined.length >= 1, 'an agent joined');
    for (const id of joined)
      assert.match(id ?? '', new RegExp(`^${submitted.submissionId}_[01]$`), 'joined with its Slurm task id');
    assert.ok(
      entries(runDir, 'launcher_event').some((e) => e.kind === 'running'),
      'a task was seen running (journal)',
    );
    assert.match(out, /initial submission 1: 2 agent\(s\) as \d+/, 'the view shows the submission');

    const name = jobNameOf(runDir);
    assert.ok(name !== undefined, 'the job script is in launch/');
    assert.deepEqual(squeueRun(name), [], 'no job of the run left in squeue');

    // The bind is open to other hosts and the profile names no keysDir: CURVE is on with keys made for the run,
    // which the job script names by path and never carries.
    const keyFile = join(runDir, 'keys', 'cluster.key');
    assert.equal(statSync(keyFile).mode & 0o777, 0o600, 'the run key is private');
    const secret = readFileSync(keyFile, 'utf8').split('\n')[0] ?? '';
    const scripts = readdirSync(join(runDir, 'launch')).filter((f) => f.endsWith('.sh'));
    assert.ok(scripts.length > 0, 'a job script was written');
    for (const f of scripts) {
      const script = readFileSync(join(runDir, 'launch', f), 'utf8');
      assert.ok(script.includes('--keys-dir'), `${f} names the key directory`);
      assert.ok(secret.length > 0 && !script.includes(secret), `${f} does not carry the secret key`);
    }
  },
);

void test(
  'pe-arena run --launcher slurm --dry-run prints the job script and submits nothing',
  { skip: skip ?? false, timeout: 30_000 },
  async (t) => {
    const { dir, runsDir, spawn } = cliFixture(t);
    const file = experiment(dir, 'cli-slurm-dry');
    const run = spawn([
      'run',
      file,
      ...slurmArgs('--nodes', '2', '--dry-run'),
      '--runs-dir',
      runsDir,
      '--workload-module',
      fakeWorkload,
    ]);
    const exit = await run.exited;
    const out = run.output();
    assert.equal(exit.code, 0, tail(out));
    assert.match(out, /^#!\/bin\/bash -l$/m, 'the script is printed');
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
    assert.deepEqual(squeueRun(name), [], 'squeue holds nothing of the run');
  },
);

void test(
  'kill -9 of a slurm run, then --resume: the new coordinator takes over the queued and running agents and submits none',
  { skip: skip ?? false, timeout: 150_000 },
  async (t) => {
    const { dir, runsDir, spawn } = cliFixture(t);
    // Long enough (2 x 400 steps of 20 ms) that the run is still going when its coordinator is killed.
    const file = experiment(dir, 'cli-slurm-resume', 400);
    const common = slurmArgs('--agents', '2', '--view', 'plain', '--no-report');
    const first = spawn(['run', file, ...common, '--runs-dir', runsDir, ...agentArgs(30_000)]);
    const found = await waitFor(
      'the run directory',
      30_000,
      () => runDirOf(runsDir),
      () => tail(first.output()),
    );
    await waitFor(
      'both agents joined',
      60_000,
      () => entries(found, 'agent_joined').length >= 2,
      () => logTail(found),
    );
    // SIGKILL: no exit hook runs, so the sbatch array stays in Slurm with both agents on it.
    killPid(first.child.pid!, 'SIGKILL');
    await first.exited;
    const name = jobNameOf(found);
    assert.ok(name !== undefined);
    assert.equal(squeueRun(name).length, 2, 'the killed coordinator left both tasks running');

    const second = spawn(['run', '--resume', found, ...common, ...agentArgs(30_000)]);
    const exit = await second.exited;
    const out = second.output();
    assert.equal(exit.code, 0, `the resumed run exits 0\n${tail(out)}\n${logTail(found)}`);
    assert.match(out, /kept 2 queued or running agent\(s\) of the earlier coordinator, submitted 0 agent\(s\)/);
    assert.equal(
      entries(found, 'launcher_event').filter((e) => e.kind === 'submitted').length,
      1,
      'nothing was submitted after the first array',
    );
    assert.ok(
      entries(found, 'launcher_event').some((e) => e.kind === 'adopted'),
      'the take-over is journaled',
    );
    const expanded = JSON.parse(readFileSync(join(found, 'experiment.json'), 'utf8')) as {
      jobs: { jobId: string }[];
    };
    for (const job of expanded.jobs)
      assert.ok(existsSync(join(found, 'jobs', job.jobId, 'evaluation.json')), `${job.jobId} has its evaluation`);
    assert.deepEqual(squeueRun(name), [], 'nothing of the run is left in squeue');
  },
);
