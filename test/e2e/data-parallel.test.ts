// Data-parallel gangs over real agents (child processes, ZeroMQ on 127.0.0.1, real training on the cpu backend):
// kill -9 of rank 1 or of rank 0 mid-run, and the survivors carry on in a new generation with every step trained
// once; a loss below minRanks falls back to the requeue; an idle agent joins a gang below maxRanks.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  entries,
  exitWithin,
  killAll,
  killPid,
  logTail,
  pidOf,
  realAgents,
  runsFixture,
  spawnCli,
  startRun,
  tinyRealExperiment,
  waitFor,
  writeExperiment,
} from './helpers.ts';

after(killAll);

const JOB = 'rope-addition-s1';
const STEPS = 300;

function gangExperiment(name: string, dataParallel: Record<string, number>): Record<string, unknown> {
  return tinyRealExperiment(
    name,
    {
      encodings: ['rope'],
      seeds: [1],
      training: { steps: STEPS, batchSize: 12, learningRate: 0.003, dataParallel },
    },
    { checkpointEvery: 50 },
  );
}

const AGENTS = (n: number): string[] => [...realAgents(n), '--no-report'];

function metricSteps(runDir: string): number[] {
  const file = join(runDir, 'jobs', JOB, 'metrics.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { step: number }).step);
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Start a run, wait until the gang trains on `ranks` ranks past step 30, and return it with that generation. */
async function runningGang(
  t: Parameters<typeof runsFixture>[0],
  name: string,
  dp: Record<string, number>,
  agents: number,
  ranks: number,
) {
  const dir = runsFixture(t);
  const file = writeExperiment(dir, gangExperiment(name, dp));
  const started = await startRun(dir, file, AGENTS(agents));
  const { runDir, ctx } = started;
  const generation = await waitFor(
    `a generation of ${ranks} ranks training`,
    120_000,
    () => {
      const g = entries(runDir, 'gang_formed').find((e) => e.members.length === ranks);
      return g !== undefined && metricSteps(runDir).some((s) => s > g.step + 30) ? g : undefined;
    },
    ctx,
  );
  return { ...started, generation };
}

void test(
  'kill -9 of rank 1: the survivors go on in a new generation, no step lost or repeated; a new agent joins and the gang grows back',
  { timeout: 240_000 },
  async (t) => {
    const { run, runDir, ctx, generation } = await runningGang(t, 'gang-kill-rank1', { ranks: 3, minRanks: 2 }, 3, 3);
    const victim = generation.members[1]!;
    killPid(pidOf(runDir, victim)!, 'SIGKILL');
    const shrunk = await waitFor(
      'a generation without the killed rank',
      60_000,
      () => entries(runDir, 'gang_formed').find((e) => e.generation > generation.generation),
      ctx,
    );
    assert.deepEqual(
      shrunk.members,
      generation.members.filter((m) => m !== victim),
      'the survivors, rank 0 first',
    );
    // A replacement agent, started by hand as a scheduler would start one.
    const address = /coordinator at (tcp:\/\/\S+)/.exec(run.output())?.[1];
    assert.ok(address !== undefined, ctx());
    spawnCli(['agent', '--coordinator', address, '--backend', 'cpu']);
    const grown = await waitFor(
      'the gang grown back to 3 ranks',
      120_000,
      () => entries(runDir, 'gang_formed').find((e) => e.generation > shrunk.generation && e.members.length === 3),
      ctx,
    );
    assert.deepEqual(grown.members.slice(0, 2), shrunk.members, 'the newcomer takes the last rank');
    const exit = await exitWithin(run, 180_000, () => logTail(runDir));
    assert.equal(exit.code, 0, ctx());
    assert.equal(entries(runDir, 'job_requeued').length, 0, 'the job never went back to the queue');
    assert.deepEqual(metricSteps(runDir), range(1, STEPS), 'every step once, in order');
    assert.equal(entries(runDir, 'job_done').length, 1);
  },
);

void test(
  'kill -9 of rank 0: a survivor becomes rank 0 and streams on from the last step the coordinator has',
  { timeout: 240_000 },
  async (t) => {
    const { run, runDir, ctx, generation } = await runningGang(t, 'gang-kill-rank0', { ranks: 3, minRanks: 2 }, 3, 3);
    const victim = generation.members[0]!;
    killPid(pidOf(runDir, victim)!, 'SIGKILL');
    const exit = await exitWithin(run, 180_000, () => logTail(runDir));
    assert.equal(exit.code, 0, ctx());
    const after = entries(runDir, 'gang_formed').filter((e) => e.generation > generation.generation);
    assert.ok(after.length > 0 && after.every((e) => !e.members.includes(victim)), 'a generation without it');
    assert.equal(entries(runDir, 'job_requeued').length, 0, 'no requeue: the survivors kept the state');
    assert.deepEqual(metricSteps(runDir), range(1, STEPS), 'every step once, in order');
  },
);

void test(
  'a loss below minRanks falls back to the requeue from the last checkpoint, and the run completes',
  { timeout: 240_000 },
  async (t) => {
    const { run, runDir, ctx, generation } = await runningGang(
      t,
      'gang-below-min',
      { ranks: 2, minRanks: 2, maxRanks: 2 },
      3,
      2,
    );
    killPid(pidOf(runDir, generation.members[1]!)!, 'SIGKILL');
    const exit = await exitWithin(run, 180_000, () => logTail(runDir));
    assert.equal(exit.code, 0, ctx());
    const requeued = entries(runDir, 'job_requeued');
    assert.equal(requeued.length, 1, ctx());
    assert.match(requeued[0]!.reason, /gang fell apart: 1 ranks left, minRanks is 2/);
    const assigns = entries(runDir, 'job_assigned');
    assert.equal(assigns.length, 2, 'placed again');
    const steps = metricSteps(runDir);
    assert.equal(Math.max(...steps), STEPS);
    assert.deepEqual(
      [...new Set(steps)].sort((a, b) => a - b),
      range(1, STEPS),
      'no step missing',
    );
  },
);

void test('an idle agent joins a running gang below maxRanks at a step boundary', { timeout: 240_000 }, async (t) => {
  const { run, runDir, ctx, generation } = await runningGang(t, 'gang-grow', { ranks: 2, maxRanks: 3 }, 3, 3);
  const exit = await exitWithin(run, 180_000, () => logTail(runDir));
  assert.equal(exit.code, 0, ctx());
  assert.match(generation.reason, /joins/, 'the third rank joined a running gang');
  assert.deepEqual(metricSteps(runDir), range(1, STEPS), 'every step once, in order');
});
