// `pe-arena run <experiment> --reuse <runDir>`: a second run of an experiment that changes only MAPE's options takes
// the other encodings' finished jobs over from the first (results copied, journaled as reused) and trains MAPE
// again; a wrong --reuse is refused before any run directory exists.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  entries,
  exitWithin,
  fakeWorkload,
  fakeWorkloadExperiment,
  killAll,
  runsFixture,
  spawnCli,
  tail,
  writeExperiment,
} from './helpers.ts';
import { readJournal, replay } from '../../coordinator/journal.ts';

after(killAll);

const AGENT_ARGS = ['--agents', '2', '--view', 'off', '--no-report', '--workload-module', fakeWorkload];

async function runToEnd(dir: string, file: string, runsDir: string, extra: string[] = []): Promise<string> {
  const before = existsSync(runsDir) ? new Set(readdirSync(runsDir)) : new Set<string>();
  const run = spawnCli(['run', file, '--runs-dir', runsDir, ...AGENT_ARGS, ...extra]);
  const exit = await exitWithin(run, 90_000);
  assert.equal(exit.code, 0, tail(run.output()));
  const made = readdirSync(runsDir).filter((d) => !before.has(d));
  assert.equal(made.length, 1, `one new run directory (got ${made.join(', ')})`);
  return join(runsDir, made[0] as string);
}

void test(
  '--reuse takes over the finished jobs whose job is the same and trains the rest',
  { timeout: 180_000 },
  async (t) => {
    const dir = runsFixture(t);
    const runsDir = join(dir, 'runs');
    const base = {
      encodings: ['rope', 'mape'],
      tasks: [{ name: 'addition', params: { perStepMs: 5 } }],
      training: { steps: 40 },
    };
    const first = await runToEnd(dir, writeExperiment(dir, fakeWorkloadExperiment('reuse-a', base)), runsDir);

    // The same experiment with a MAPE option: rope's job is unchanged (MAPE's options are not part of it), MAPE's is not.
    const changed = writeExperiment(dir, fakeWorkloadExperiment('reuse-b', { ...base, model: { mapeMaxOffset: 10 } }));
    const run = spawnCli(['run', changed, '--runs-dir', runsDir, ...AGENT_ARGS, '--reuse', first]);
    const exit = await exitWithin(run, 90_000);
    assert.equal(exit.code, 0, tail(run.output()));
    assert.match(run.output(), /1 finished job\(s\) taken over from run \S+, 1 to train/);
    assert.match(run.output(), /mape-addition-s1 trains again: its job differs/);
    const second = join(runsDir, readdirSync(runsDir).find((d) => join(runsDir, d) !== first) as string);

    const reused = entries(second, 'job_reused');
    assert.deepEqual(
      reused.map((e) => e.jobId),
      ['rope-addition-s1'],
    );
    assert.equal(reused[0]?.fromRun, JSON.parse(readFileSync(join(first, 'experiment.json'), 'utf8')).jobs[0].runId);
    assert.deepEqual(
      entries(second, 'job_assigned').map((e) => e.jobId),
      ['mape-addition-s1'],
      'only the changed job trains',
    );
    // The reused job's results are the first run's, byte for byte; the journal replays it as done.
    for (const name of ['evaluation.json', 'metrics.jsonl'])
      assert.deepEqual(
        readFileSync(join(second, 'jobs', 'rope-addition-s1', name)),
        readFileSync(join(first, 'jobs', 'rope-addition-s1', name)),
        name,
      );
    assert.ok(!existsSync(join(second, 'jobs', 'rope-addition-s1', 'checkpoints')), 'training checkpoints stay behind');
    const replayed = replay(readJournal(join(second, 'journal.jsonl')));
    assert.deepEqual(
      [...replayed.jobs.values()].map((j) => j.state),
      ['done', 'done'],
    );
    assert.equal(replayed.finished, true);
    // The report says which results were taken over, and the MAPE option the experiment set.
    const report = spawnCli(['report', second, '--no-attention', '--resamples', '50']);
    assert.equal((await exitWithin(report, 60_000)).code, 0, tail(report.output()));
    const summary = readFileSync(join(second, 'final_comparison', 'summary.md'), 'utf8');
    assert.match(summary, /2 of 2 evaluated, 1 taken over from run \S+ \(the same job spec/);
    assert.match(summary, /MAPE: mapeMaxOffset 10, mapeRelative true/);

    // Reusing a run of the same jobs trains nothing.
    const third = await runToEnd(dir, changed, runsDir, ['--reuse', second]);
    assert.equal(entries(third, 'job_reused').length, 2);
    assert.equal(entries(third, 'job_assigned').length, 0);
  },
);

void test('--reuse of something that is not a run directory is refused, and no run directory is made', async (t) => {
  const dir = runsFixture(t);
  const runsDir = join(dir, 'runs');
  const file = writeExperiment(
    dir,
    fakeWorkloadExperiment('reuse-bad', {
      encodings: ['rope'],
      tasks: [{ name: 'addition', params: { perStepMs: 5 } }],
      training: { steps: 10 },
    }),
  );
  const run = spawnCli(['run', file, '--runs-dir', runsDir, ...AGENT_ARGS, '--reuse', join(dir, 'nowhere')]);
  const exit = await exitWithin(run, 30_000);
  assert.notEqual(exit.code, 0);
  assert.match(run.output(), /--reuse .*nowhere: not a run directory \(no experiment\.json\)/);
  assert.ok(!existsSync(runsDir) || readdirSync(runsDir).length === 0, 'no run directory');
});
