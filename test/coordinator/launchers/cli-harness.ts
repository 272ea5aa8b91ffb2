// Shared by cli-slurm.test.ts and cli-openpbs.test.ts: the real CLI (`pe-arena run --launcher <slurm|pbs>
// --cluster <test profile>`) on a real scheduler of this host, a fixture that cleans up its processes and jobs
// after the test, and the scenarios both schedulers go through.
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
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
  tinyRealExperiment,
  waitFor,
  writeExperiment,
} from '../../e2e/helpers.ts';
import type { Spawned } from '../../e2e/helpers.ts';
import { quickExperiment } from './harness.ts';
import type { RealScheduler } from './harness.ts';

/** The scheduler job name of the run (every submission carries it), from the scripts in launch/. */
export function jobNameOf(runDir: string): string | undefined {
  const launch = join(runDir, 'launch');
  if (!existsSync(launch)) return undefined;
  const script = readdirSync(launch).find((f) => /-s\d+\.sh$/.test(f));
  return script?.replace(/-s\d+\.sh$/, '');
}

/** `--launcher <launcher> --cluster <test profile>` and the rest. */
export function launcherArgs(scheduler: RealScheduler, ...rest: string[]): string[] {
  return ['--launcher', scheduler.launcher, '--cluster', scheduler.profile, ...rest];
}

/** The launcher flags of a two-agent run with a plain view and no report. */
export function twoAgentRunArgs(scheduler: RealScheduler): string[] {
  return launcherArgs(scheduler, '--agents', '2', '--view', 'plain', '--no-report');
}

/** The agents' fake workload and how long they wait for a silent coordinator. */
export function agentArgs(deathTimeoutMs: number): string[] {
  return ['--workload-module', fakeWorkload, '--agent-death-timeout-ms', String(deathTimeoutMs)];
}

export interface CliFixture {
  readonly dir: string;
  readonly runsDir: string;
  spawn(args: string[]): Spawned;
  /** An experiment file of two quick jobs (steps of 20 ms) in dir. */
  experiment(name: string, steps?: number): string;
  /** `pe-arena run` of a new experiment (`name`, `steps`) with two agents, into runsDir. */
  startRun(name: string, steps: number, deathTimeoutMs: number): Spawned;
}

/**
 * A runs directory for one test and the CLI processes it spawns. After the test (whatever happened) a CLI still
 * running is stopped with SIGINT (it cancels its jobs; its output is kept as a diagnostic), whatever of the run the
 * scheduler still holds is cancelled by force, and the directory goes.
 */
export function cliFixture(t: TestContext, scheduler: RealScheduler): CliFixture {
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
      if (name !== undefined) scheduler.cancelRun(name);
    }
    cleanup();
  });
  const spawn = (args: string[]): Spawned => {
    const run = spawnCli(args);
    spawned.push(run);
    return run;
  };
  const experiment = (name: string, steps = 30): string =>
    writeExperiment(dir, quickExperiment(name, { steps, params: { perStepMs: 20 }, maxAttempts: 3 }));
  return {
    dir,
    runsDir,
    spawn,
    experiment,
    startRun: (name, steps, deathTimeoutMs) =>
      spawn([
        'run',
        experiment(name, steps),
        ...twoAgentRunArgs(scheduler),
        '--runs-dir',
        runsDir,
        ...agentArgs(deathTimeoutMs),
      ]),
  };
}

/** Waits for the run directory of a spawned run and for both of its agents to join; returns the run directory. */
export async function bothAgentsJoined(fixture: CliFixture, run: Spawned): Promise<string> {
  const found = await waitFor(
    'the run directory',
    30_000,
    () => runDirOf(fixture.runsDir),
    () => tail(run.output()),
  );
  await waitFor(
    'both agents joined',
    60_000,
    () => entries(found, 'agent_joined').length >= 2,
    () => logTail(found),
  );
  return found;
}

/** Every job of the run's expanded experiment has its evaluation; returns how many jobs there are. */
export function assertEvaluations(runDir: string): number {
  const expanded = JSON.parse(readFileSync(join(runDir, 'experiment.json'), 'utf8')) as { jobs: { jobId: string }[] };
  for (const job of expanded.jobs)
    assert.ok(existsSync(join(runDir, 'jobs', job.jobId, 'evaluation.json')), `${job.jobId} has its evaluation`);
  return expanded.jobs.length;
}

/**
 * `pe-arena run --agents 2`: one array submission, both agents join with their task ids, the run completes with
 * every evaluation, launcher events reach the journal and the view, CURVE is on with keys the job script names by
 * path and never carries, and afterwards the scheduler holds nothing of the run.
 */
export async function runCompletesScenario(t: TestContext, scheduler: RealScheduler): Promise<void> {
  const fixture = cliFixture(t, scheduler);
  const run = fixture.startRun(`cli-${scheduler.name}`, 30, 20_000);
  const exit = await run.exited;
  const runDir = runDirOf(fixture.runsDir);
  const out = run.output();
  assert.equal(exit.code, 0, `the run exits 0\n${tail(out)}\n${logTail(runDir)}`);
  assert.ok(runDir !== undefined, 'one run directory');
  assert.match(out, /2 done, 0 failed/);
  assert.equal(assertEvaluations(runDir), 2);

  // The launcher's events are in the journal and the view.
  const submitted = entries(runDir, 'launcher_event').find((e) => e.kind === 'submitted');
  assert.ok(submitted?.submissionId !== undefined, 'the submission is journaled');
  const arrayId = submitted.submissionId;
  assert.match(arrayId, scheduler.arrayId);
  assert.ok(
    out.includes(`submitted 2 agent(s) through ${scheduler.submit} (${arrayId})`),
    `the submission is reported\n${tail(out)}`,
  );
  const joined = entries(runDir, 'agent_joined').map((e) => e.launcherId);
  assert.ok(joined.length >= 1, 'an agent joined');
  const taskIds = [0, 1].map((i) => scheduler.taskId(arrayId, i));
  for (const id of joined) assert.ok(taskIds.includes(id ?? ''), `${id} joined with its task id (${taskIds})`);
  assert.ok(
    entries(runDir, 'launcher_event').some((e) => e.kind === 'running'),
    'a task was seen running (journal)',
  );
  assert.match(out, /initial submission 1: 2 agent\(s\) as \d+/, 'the view shows the submission');

  const name = jobNameOf(runDir);
  assert.ok(name !== undefined, 'the job script is in launch/');
  assert.deepEqual(scheduler.leftovers(name), [], 'nothing of the run is queued or running');

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
}

/**
 * kill -9 of a run's coordinator leaves its array running (`leftRunning` says how the scheduler lists it); then
 * `--resume` takes over the queued and running agents, submits none, and the run completes with every evaluation.
 */
export async function killAndResumeScenario(
  t: TestContext,
  scheduler: RealScheduler,
  leftRunning: (leftovers: string[]) => void,
): Promise<void> {
  const fixture = cliFixture(t, scheduler);
  // Long enough (2 x 400 steps of 20 ms) that the run is still going when its coordinator is killed.
  const first = fixture.startRun(`cli-${scheduler.name}-resume`, 400, 30_000);
  const found = await bothAgentsJoined(fixture, first);
  // SIGKILL: no exit hook runs, so the array stays in the scheduler with both agents on it.
  killPid(first.child.pid!, 'SIGKILL');
  await first.exited;
  const name = jobNameOf(found);
  assert.ok(name !== undefined);
  leftRunning(scheduler.leftovers(name));

  const second = fixture.spawn(['run', '--resume', found, ...twoAgentRunArgs(scheduler), ...agentArgs(30_000)]);
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
  assertEvaluations(found);
  assert.deepEqual(scheduler.leftovers(name), [], 'nothing of the run is left queued or running');
}

/**
 * One data-parallel job (ranks 2) on the scheduler's two array tasks: a gang forms across them (the profile binds
 * beyond loopback, so CURVE is on and the ranks reach each other by host name), and every step is trained once.
 */
export async function dataParallelScenario(t: TestContext, scheduler: RealScheduler): Promise<void> {
  const { dir, runsDir, spawn } = cliFixture(t, scheduler);
  const steps = 120;
  const file = writeExperiment(
    dir,
    tinyRealExperiment(
      `cli-${scheduler.name}-gang`,
      {
        encodings: ['rope'],
        seeds: [1],
        training: { steps, batchSize: 12, learningRate: 0.003, dataParallel: { ranks: 2 } },
      },
      { checkpointEvery: 40 },
    ),
  );
  const run = spawn(['run', file, ...twoAgentRunArgs(scheduler), '--runs-dir', runsDir]);
  // While it trains, `status tcp://` (with the run's keys) shows the gang and the scheduler's own task states.
  const live = await waitFor(
    'a gang of both array tasks',
    120_000,
    () => {
      const d = runDirOf(runsDir);
      return d !== undefined && entries(d, 'gang_formed').some((g) => g.members.length === 2) ? d : undefined;
    },
    () => tail(run.output()),
  );
  const address = /coordinator at (tcp:\/\/\S+)/.exec(run.output())?.[1];
  assert.ok(address !== undefined, tail(run.output()));
  const status = spawnCli(['status', address.replace('0.0.0.0', '127.0.0.1'), '--keys-dir', join(live, 'keys')]);
  assert.equal((await status.exited).code, 0, status.output());
  assert.match(status.output(), /gang gen \d+: \S+, \S+/, `the gang's members\n${status.output()}`);
  assert.match(
    status.output(),
    /scheduler task[^\n]*\n(\S+ +initial +running +(RUNNING|R) [^\n]*\n){2}/,
    `the scheduler's task states\n${status.output()}`,
  );
  const exit = await run.exited;
  const runDir = runDirOf(runsDir);
  assert.equal(exit.code, 0, `${tail(run.output())}\n${logTail(runDir)}`);
  assert.ok(runDir !== undefined);
  const two = entries(runDir, 'gang_formed').filter((g) => g.members.length === 2);
  assert.ok(two.length > 0, `a generation of both array tasks\n${logTail(runDir)}`);
  const launchers = new Map(entries(runDir, 'agent_joined').map((a) => [a.agentId, a.launcherId]));
  assert.ok(
    two[0]!.members.every((m) => launchers.get(m) !== undefined),
    'members are array tasks',
  );
  const points = readFileSync(join(runDir, 'jobs', 'rope-addition-s1', 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { step: number }).step);
  assert.deepEqual(
    points,
    Array.from({ length: steps }, (_, i) => i + 1),
    'every step once, in order',
  );
  const name = jobNameOf(runDir);
  assert.deepEqual(name === undefined ? [] : scheduler.leftovers(name), [], 'the scheduler holds nothing of the run');
}
