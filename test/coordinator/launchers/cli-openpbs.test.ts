// The real CLI through the pbs launcher on the real OpenPBS of .ci/setup-openpbs.sh (commands in /opt/pbs/bin,
// named by the test profile's commandsDir): `pe-arena run <exp> --launcher pbs --cluster
// configs/clusters/test-openpbs.json --agents 2` submits one `qsub -J` array, both agents join with their subjob
// ids, the run completes, and afterwards qstat -x shows nothing of the run queued or running; so after Ctrl-C. After
// a kill -9 of the coordinator, `--resume` takes over the subjobs it left running and submits none. Skips, saying why, where
// /opt/pbs/bin/qstat is missing or its server does not answer.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
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
import { openPbs, openPbsSkipReason, qstatRun, quickExperiment } from './harness.ts';

const profile = join('configs', 'clusters', 'test-openpbs.json');

const skip = openPbsSkipReason();

/** The scheduler job name of the run (every submission carries it), from the scripts in launch/. */
function jobNameOf(runDir: string): string | undefined {
  const launch = join(runDir, 'launch');
  if (!existsSync(launch)) return undefined;
  const script = readdirSync(launch).find((f) => /-s\d+\.sh$/.test(f));
  return script?.replace(/-s\d+\.sh$/, '');
}

/** `--launcher pbs --cluster <test profile>` and the rest. */
function pbsArgs(...rest: string[]): string[] {
  return ['--launcher', 'pbs', '--cluster', profile, ...rest];
}

/** The agents' fake workload and how long they wait for a silent coordinator. */
function agentArgs(deathTimeoutMs: number): string[] {
  return ['--workload-module', fakeWorkload, '--agent-death-timeout-ms', String(deathTimeoutMs)];
}

/**
 * A runs directory for one test and the CLI processes it spawns. After the test (whatever happened) a CLI still
 * running is stopped with SIGINT (it cancels its jobs; its output is kept as a diagnostic), whatever of the run
 * OpenPBS still holds is qdel-ed by force, and the directory goes.
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
      const left = name === undefined ? [] : qstatRun(name).map((line) => line.split(' ')[0]!);
      if (left.length > 0) {
        try {
          openPbs('qdel', ['-W', 'force', ...left]);
        } catch {
          // already gone between the two calls
        }
      }
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
  'pe-arena run --launcher pbs on OpenPBS: 2 agents from one qsub -J array complete the run; qstat -x shows none left',
  { skip: skip ?? false, timeout: 90_000 },
  async (t) => {
    const { dir, runsDir, spawn } = cliFixture(t);
    const file = experiment(dir, 'cli-openpbs');
    const run = spawn([
      'run',
      file,
      ...pbsArgs('--agents', '2', '--view', 'plain', '--no-report'),
      '--runs-dir',
      runsDir,
      ...agentArgs(20_000),
    ]);
    const exit = await run.exited;
    const runDir = runDirOf(runsDir);
    const out = run.output();
    assert.equal(exit.code, 0, `the run exits 0\n${tail(out)}\n${logTail(runDir)}`);
    assert.ok(runDir !== undefined, 'one run directory');
    assert.match(out, /submitted 2 agent\(s\) through qsub \(\d+\[\]\.localhost\)/);
    assert.match(out, /2 done, 0 failed/);
    const expanded = JSON.parse(readFileSync(join(runDir, 'experiment.json'), 'utf8')) as {
      jobs: { jobId: string }[];
    };
    for (const job of expanded.jobs)
      assert.ok(existsSync(join(runDir, 'jobs', job.jobId, 'evaluation.json')), `${job.jobId} has its evaluation`);
    const submitted = entries(runDir, 'launcher_event').find((e) => e.kind === 'submitted');
    assert.ok(submitted?.submissionId !== undefined, 'the submission is journaled');
    const joined = entries(runDir, 'agent_joined').map((e) => e.launcherId);
    assert.ok(joined.length >= 1, 'an agent joined');
    for (const id of joined)
      assert.equal(id, submitted.submissionId.replace('[]', `[${/\[(\d+)\]/.exec(id ?? '')?.[1] ?? '?'}]`));
    const name = jobNameOf(runDir);
    assert.ok(name !== undefined, 'the job script is in launch/');
    assert.deepEqual(qstatRun(name), [], 'nothing of the run is queued or running (qstat -x)');
  },
);

void test(
  'Ctrl-C of a pbs run on OpenPBS: the coordinator drains, qdel-s its array, and qstat -x shows none of it left',
  { skip: skip ?? false, timeout: 90_000 },
  async (t) => {
    const { dir, runsDir, spawn } = cliFixture(t);
    const file = experiment(dir, 'cli-openpbs-ctrl-c', 400);
    const run = spawn([
      'run',
      file,
      ...pbsArgs('--agents', '2', '--view', 'plain', '--no-report'),
      '--runs-dir',
      runsDir,
      ...agentArgs(30_000),
    ]);
    const found = await waitFor(
      'the run directory',
      30_000,
      () => runDirOf(runsDir),
      () => tail(run.output()),
    );
    await waitFor(
      'both agents joined',
      60_000,
      () => entries(found, 'agent_joined').length >= 2,
      () => logTail(found),
    );
    const name = jobNameOf(found);
    assert.ok(name !== undefined);
    assert.ok(qstatRun(name).length > 0, 'the array is running');
    run.child.kill('SIGINT');
    const exit = await run.exited;
    const out = run.output();
    assert.equal(exit.code, 0, `a Ctrl-C'd run exits 0\n${tail(out)}`);
    assert.match(out, /stopped with 0 done, 0 failed; continue with: pe-arena run --resume/);
    assert.deepEqual(qstatRun(name), [], 'nothing of the run is queued or running (qstat -x)');
    // After the coordinator's journal closes, the launcher's own log says what stop() cancelled.
    const events = readFileSync(join(found, 'launch', 'events.jsonl'), 'utf8');
    assert.match(events, /"kind":"cancelled".*"text":"stop: cancelled \d+\[\]\.localhost"/);
  },
);

void test(
  'kill -9 of a pbs run on OpenPBS, then --resume: the new coordinator takes over the running subjobs and submits none',
  { skip: skip ?? false, timeout: 150_000 },
  async (t) => {
    const { dir, runsDir, spawn } = cliFixture(t);
    // Long enough (2 x 400 steps of 20 ms) that the run is still going when its coordinator is killed.
    const file = experiment(dir, 'cli-openpbs-resume', 400);
    const common = pbsArgs('--agents', '2', '--view', 'plain', '--no-report');
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
    // SIGKILL: no exit hook runs, so the qsub array stays in OpenPBS with both agents on it.
    killPid(first.child.pid!, 'SIGKILL');
    await first.exited;
    const name = jobNameOf(found);
    assert.ok(name !== undefined);
    assert.deepEqual(
      qstatRun(name)
        .map((l) => l.split(' ')[1])
        .sort(),
      ['B', 'R', 'R'],
      'the killed coordinator left the array (B) with both subjobs running',
    );

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
    assert.deepEqual(qstatRun(name), [], 'nothing of the run is queued or running (qstat -x)');
  },
);
