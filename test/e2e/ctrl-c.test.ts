// Ctrl-C in a real terminal (tmux): `pe-arena run` started as `npm start` starts it (through tsx's CLI, which
// relays the signal again), one press drains every running job at its current step and exits 130, and `--resume`
// continues from those steps with no step lost or repeated; a second press a second later exits at once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StampedEntry } from '../../coordinator/journal.ts';
import {
  cliPath,
  entries,
  exitWithin,
  fakeWorkload,
  fakeWorkloadExperiment,
  journal,
  killAll,
  killPid,
  repoRoot,
  runDirOf,
  runsFixture,
  spawnCli,
  tinyRealExperiment,
  waitFor,
  writeExperiment,
} from './helpers.ts';
import { openTerminal, tmuxMissing, type Terminal } from './terminal.ts';

after(killAll);

const skip = tmuxMissing();
const tsxCli = join(repoRoot, 'node_modules', '.bin', 'tsx');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The metric steps of a job, in the order metrics.jsonl has them. */
function metricSteps(runDir: string, jobId: string): number[] {
  const file = join(runDir, 'jobs', jobId, 'metrics.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      try {
        return [(JSON.parse(l) as { step: number }).step];
      } catch {
        return []; // a line the sink is writing right now
      }
    });
}

const shQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

interface TerminalRun {
  term: Terminal;
  runDir: string;
  /** The command's exit status, once the shell has printed it. */
  exitCode: () => Promise<number>;
  ctx: () => string;
}

/** `pe-arena run` typed into an interactive shell, through tsx's CLI as `npm start` runs it. */
async function runInTerminal(
  t: Parameters<typeof runsFixture>[0],
  dir: string,
  file: string,
  agents: number,
  workload: readonly string[] = ['--workload-module', fakeWorkload],
): Promise<TerminalRun> {
  const term = openTerminal(t, repoRoot);
  const runsDir = join(dir, 'runs');
  const exitFile = join(dir, 'exit-code');
  const command = [tsxCli, cliPath, 'run', file, '--runs-dir', runsDir, '--agents', String(agents)]
    .concat([...workload, '--view', 'plain', '--plain-every', '1'])
    .map(shQuote)
    .join(' ');
  term.type(`${command}; echo "$?" > ${shQuote(exitFile)}`);
  const ctx = (): string => `--- terminal ---\n${term.screen()}`;
  const runDir = await waitFor('the run directory', 60_000, () => runDirOf(runsDir), ctx);
  return {
    term,
    runDir,
    ctx,
    exitCode: async () =>
      Number(
        await waitFor(
          'the command to end in the terminal',
          60_000,
          () => existsSync(exitFile) && readFileSync(exitFile, 'utf8').trim(),
          ctx,
        ),
      ),
  };
}

/** Every process of the run (the coordinator and its agents) is gone. */
async function nothingLeft(runDir: string): Promise<void> {
  const pids = [
    ...entries(runDir, 'coordinator_started').map((e) => e.pid),
    ...entries(runDir, 'agent_joined').map((e) => e.pid),
  ];
  assert.ok(pids.length >= 2, 'the coordinator and at least one agent ran');
  await waitFor(
    'every process of the run to be gone',
    10_000,
    () => pids.every((pid) => !alive(pid)),
    () => `still alive: ${pids.filter(alive).join(', ')}`,
  );
}

void test(
  'one Ctrl-C in a terminal drains: each job checkpoints at its current step, the stop is journaled, exit 130; --resume goes on with contiguous steps',
  { timeout: 240_000, ...(skip === undefined ? {} : { skip }) },
  async (t) => {
    const dir = runsFixture(t);
    const steps = 600;
    const file = writeExperiment(
      dir,
      fakeWorkloadExperiment(
        'ctrl-c',
        {
          encodings: ['rope', 'nope'],
          // Checkpoints the size of the quick preset's model: their upload and fsync take a while, as they do for real.
          tasks: [{ name: 'addition', params: { perStepMs: 20, checkpointBytes: 5_000_000 } }],
          training: { steps },
        },
        // No periodic checkpoint before the press: the only one that can be there is the drain's.
        { checkpointEvery: 500 },
      ),
    );
    const { term, runDir, exitCode, ctx } = await runInTerminal(t, dir, file, 2);
    const jobs = await waitFor(
      'both jobs running',
      60_000,
      () => entries(runDir, 'job_assigned').length === 2 && entries(runDir, 'job_assigned').map((a) => a.jobId),
      ctx,
    );
    const seen = await waitFor(
      'both jobs past step 30 in metrics.jsonl',
      60_000,
      () => {
        const last = jobs.map((j) => Math.max(0, ...metricSteps(runDir, j)));
        return last.every((s) => s >= 30) && last;
      },
      ctx,
    );
    const coordinatorPid = entries(runDir, 'coordinator_started')[0]!.pid;
    term.ctrlC();
    // What tsx does when the coordinator's report of the first SIGINT is late: relay it once more.
    killPid(coordinatorPid, 'SIGINT');

    assert.equal(await exitCode(), 130, ctx());
    const all = journal(runDir);
    const stops = all.filter((e) => e.type === 'run_stopped');
    assert.equal(stops.length, 1, `one stop record\n${ctx()}`);
    const stop = stops[0] as Extract<StampedEntry, { type: 'run_stopped' }>;
    assert.deepEqual(stop.running.map((r) => r.jobId).sort(), [...jobs].sort());
    const afterStop = all.slice(all.indexOf(stop));
    const drainedAt = new Map<string, number>();
    jobs.forEach((jobId, i) => {
      const acked = all.filter((e) => e.type === 'checkpoint_acked' && e.jobId === jobId && e.kind === 'checkpoint');
      const last = acked.at(-1);
      assert.ok(last !== undefined && afterStop.includes(last), `${jobId}: a checkpoint acknowledged after the stop`);
      assert.ok(last.type === 'checkpoint_acked');
      drainedAt.set(jobId, last.checkpoint.step);
      assert.ok(
        last.checkpoint.step >= seen[i]!,
        `${jobId}: checkpointed at step ${last.checkpoint.step}, the metrics had reached ${seen[i]} before Ctrl-C`,
      );
    });
    assert.equal(all.at(-1)?.type, 'coordinator_stopped');
    assert.doesNotMatch(term.screen(), /exiting now/);
    await nothingLeft(runDir);

    const resumed = spawnCli(['run', '--resume', runDir, '--agents', '2', '--workload-module', fakeWorkload]);
    const code = await exitWithin(resumed, 120_000);
    assert.equal(code.code, 0, resumed.output());
    for (const jobId of jobs) {
      const resumedAt = entries(runDir, 'job_assigned').filter((a) => a.jobId === jobId && a.resumeStep !== undefined);
      assert.deepEqual(
        resumedAt.map((a) => [a.resumeStep, a.attempt]),
        [[drainedAt.get(jobId), 1]],
        `${jobId}: resumed once, from the drain's checkpoint, and the drain cost no attempt`,
      );
      const got = metricSteps(runDir, jobId);
      assert.deepEqual(
        got,
        Array.from({ length: steps }, (_, i) => i + 1),
        `${jobId}: every step once, in order (got ${got.length} points)`,
      );
    }
  },
);

void test(
  'a second Ctrl-C more than a second after the first exits at once, mid-drain, leaving no process',
  { timeout: 120_000, ...(skip === undefined ? {} : { skip }) },
  async (t) => {
    const dir = runsFixture(t);
    // One step takes 6 s, so the drain's checkpoint (at the next step boundary) is seconds away after the press.
    const file = writeExperiment(
      dir,
      fakeWorkloadExperiment(
        'ctrl-c-twice',
        { encodings: ['rope'], tasks: [{ name: 'addition', params: { perStepMs: 6_000 } }], training: { steps: 100 } },
        { checkpointEvery: 100 },
      ),
    );
    const { term, runDir, exitCode, ctx } = await runInTerminal(t, dir, file, 1);
    const jobId = await waitFor('the job running', 60_000, () => entries(runDir, 'job_assigned')[0]?.jobId, ctx);
    // Press just after a step reached metrics.jsonl: the next boundary is most of a step away.
    const before = await waitFor('a first step', 60_000, () => metricSteps(runDir, jobId).length, ctx);
    await waitFor('the next step', 60_000, () => metricSteps(runDir, jobId).length > before, ctx);
    term.ctrlC();
    const firstAt = Date.now();
    await waitFor('the stop record', 10_000, () => entries(runDir, 'run_stopped').length === 1, ctx);
    await waitFor('a deliberate gap after the first press', 5_000, () => Date.now() - firstAt > 1_200);
    term.ctrlC();

    assert.equal(await exitCode(), 130, ctx());
    assert.match(term.screen(), /SIGINT again, exiting now/);
    const all = journal(runDir);
    const stop = all.findIndex((e) => e.type === 'run_stopped');
    assert.deepEqual(
      all.slice(stop + 1).filter((e) => e.type === 'checkpoint_acked' || e.type === 'coordinator_stopped'),
      [],
      'it did not wait for the drain',
    );
    await nothingLeft(runDir);
  },
);

void test(
  'one Ctrl-C drains a data-parallel gang too: rank 0 checkpoints at the current step, exit 130, --resume goes on',
  { timeout: 300_000, ...(skip === undefined ? {} : { skip }) },
  async (t) => {
    const dir = runsFixture(t);
    const steps = 400;
    const file = writeExperiment(
      dir,
      tinyRealExperiment(
        'ctrl-c-gang',
        {
          encodings: ['rope'],
          seeds: [1],
          training: { steps, batchSize: 12, learningRate: 0.003, dataParallel: { ranks: 2 } },
        },
        { checkpointEvery: 1000 },
      ),
    );
    const { term, runDir, exitCode, ctx } = await runInTerminal(t, dir, file, 2, ['--backend', 'cpu', '--no-report']);
    const jobId = 'rope-addition-s1';
    const seen = await waitFor(
      'a gang of 2 past step 30',
      120_000,
      () => {
        const two = entries(runDir, 'gang_formed').find((g) => g.members.length === 2);
        const last = Math.max(0, ...metricSteps(runDir, jobId));
        return two !== undefined && last > two.step + 30 ? last : undefined;
      },
      ctx,
    );
    term.ctrlC();
    assert.equal(await exitCode(), 130, ctx());
    const all = journal(runDir);
    const stop = all.find((e) => e.type === 'run_stopped');
    assert.ok(stop !== undefined, ctx());
    const acked = all.filter((e) => e.type === 'checkpoint_acked' && e.kind === 'checkpoint').at(-1);
    assert.ok(acked?.type === 'checkpoint_acked' && all.indexOf(acked) > all.indexOf(stop), 'a drain checkpoint');
    assert.ok(acked.checkpoint.step >= seen, `checkpointed at ${acked.checkpoint.step}, metrics were at ${seen}`);
    await nothingLeft(runDir);

    const resumed = spawnCli(['run', '--resume', runDir, '--agents', '2', '--backend', 'cpu', '--no-report']);
    assert.equal((await exitWithin(resumed, 180_000)).code, 0, resumed.output());
    const got = metricSteps(runDir, jobId);
    assert.deepEqual(
      got,
      Array.from({ length: steps }, (_, i) => i + 1),
      `every step once (got ${got.length} points)`,
    );
  },
);
