// Unit tests of the coordinator's parts: experiment validation, failure detector, scheduler, journal, view, clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentId, JobId, RunId } from '../../protocol/messages.ts';
import { SimulatedClock } from '../../protocol/clock.ts';
import { compileExperiment, displayJobId, loadExperiment } from '../../coordinator/experiment.ts';
import { ExperimentConfigError } from '../../coordinator/errors.ts';
import { ConfigFileError } from '../../protocol/config-file.ts';
import { FailureDetector } from '../../coordinator/failure-detector.ts';
import { Scheduler, type PlaceableAgent } from '../../coordinator/scheduler.ts';
import { Journal, readJournal, replay } from '../../coordinator/journal.ts';
import { frameBytes, renderFrame, renderPlainLines } from '../../coordinator/progress-view.ts';
import type { ViewSnapshot } from '../../coordinator/progress-view.ts';
import { buildComparisonSummary, formatComparisonSummary } from '../../src/report/comparison.ts';
import { evaluationFor, smallExperiment, tempDir } from './helpers.ts';

const runId = 'r1' as RunId;

/** What placement sees of an agent. */
function placeable(id: string, state: 'idle' | 'busy' = 'idle', backend = 'cpu', joinedAt = 0): PlaceableAgent {
  return { agentId: id as AgentId, backend, devices: [], state, joinedAt };
}

void test('the shipped experiments compile; quick.json is all seven encodings x one task x one seed', async () => {
  const quick = await loadExperiment('configs/experiments/quick.json', runId);
  assert.equal(quick.jobs.length, 7);
  assert.deepEqual(new Set(quick.jobs.map((j) => j.encoding)).size, 7);
  assert.equal(quick.jobs[0]?.jobId, 'sinusoidal-addition-s1');
  const lg = await loadExperiment('configs/experiments/length-generalization.json', runId);
  assert.equal(lg.seeds.length, 3);
  assert.deepEqual(lg.evaluation.lengthRange, [1, 16], 'length generalization tests every length up to 2x trained');
  assert.equal(lg.jobs.length, 21, 'seven encodings, MAPE included, x 3 seeds');
  const cpu = await loadExperiment('configs/experiments/length-generalization-cpu.json', runId);
  assert.equal(cpu.jobs.length, 21);
  assert.deepEqual(cpu.tasks[0]?.params, { minDigits: 1, maxDigits: 5, reverse: true });
  assert.deepEqual(cpu.evaluation, { samples: 500, lengthRange: [1, 12], perLength: 500 });
});

void test('experiment errors name the file and the field', () => {
  const base = { name: 'x', tasks: [{ name: 'addition', params: {} }], training: { steps: 10 } };
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ ...base, training: { steps: 0 } }, /x\.json: training\.steps must be a positive integer/],
    [{ ...base, training: { steps: 1.5 } }, /training\.steps must be a positive integer/],
    [{ ...base, encodings: ['rope', 'fourier'] }, /encodings\[1\] must be one of/],
    [{ ...base, preset: 'huge' }, /preset must be one of/],
    [{ ...base, tasks: [] }, /tasks must be a non-empty array/],
    [
      { ...base, cluster: { heartbeatIntervalMs: 1000, failureTimeoutMs: 500 } },
      /cluster\.failureTimeoutMs must be larger/,
    ],
    [{ ...base, model: { heads: 5 } }, /model\.dModel must be divisible by model\.heads/],
    [{ ...base, model: { attentionLogitCap: -1 } }, /model\.attentionLogitCap must be a non-negative number/],
    [{ ...base, model: { sinusoidalStride: 0 } }, /model\.sinusoidalStride must be a positive number/],
    [{ ...base, model: { mapeMaxOffset: -1 } }, /model\.mapeMaxOffset must be an integer >= 0/],
    [{ ...base, model: { mapeOffset: 'no' } }, /model\.mapeOffset must be true or false/],
    [{ ...base, model: { mapeRoles: 0 } }, /model\.mapeRoles must be true or false/],
    [{ ...base, model: { mapeRelative: 1 } }, /model\.mapeRelative must be true or false/],
    [{ ...base, seeds: [1, 1] }, /seeds must not repeat/],
    [{ ...base, lr: 3 }, /x\.json: lr is not a known field/],
    [{ ...base, evaluation: { lengthRange: 12 } }, /evaluation\.lengthRange must be \[from, to\]/],
    [{ ...base, evaluation: { lengthRange: [5, 2] } }, /evaluation\.lengthRange\[1\] must be an integer >= 5/],
    [{ ...base, evaluation: { lengthRange: [0, 2] } }, /evaluation\.lengthRange\[0\] must be a positive integer/],
    [{ ...base, evaluation: { lengthRange: [1, 4], perLength: 0 } }, /evaluation\.perLength must be a positive/],
    [{ ...base, evaluation: { perLength: 100 } }, /evaluation\.perLength needs evaluation\.lengthRange/],
    [
      { ...base, evaluation: { lengthRange: [1, 4], lengthTask: { name: 'addition', params: {} } } },
      /evaluation\.lengthRange is a second length-generalization set beside lengthTask/,
    ],
    [
      { ...base, tasks: [{ name: 'arithmetic', params: {} }], evaluation: { lengthRange: [1, 4] } },
      /evaluation\.lengthRange needs tasks with operand lengths \(addition, multiplication\); tasks\[0\] is arithmetic/,
    ],
    [
      { ...base, training: { steps: 10, dataParallel: { ranks: 0 } } },
      /training\.dataParallel\.ranks must be a positive/,
    ],
    [
      { ...base, training: { steps: 10, dataParallel: { ranks: 1.5 } } },
      /training\.dataParallel\.ranks must be a positive/,
    ],
    [
      { ...base, training: { steps: 10, dataParallel: { ranks: 2, minRanks: 3 } } },
      /training\.dataParallel\.minRanks must be at most ranks \(2\) \(got 3\)/,
    ],
    [
      { ...base, training: { steps: 10, dataParallel: { ranks: 3, maxRanks: 2 } } },
      /training\.dataParallel\.maxRanks must be at least ranks \(3\)/,
    ],
    [
      { ...base, training: { steps: 10, batchSize: 4, dataParallel: { ranks: 5 } } },
      /training\.dataParallel\.ranks must be at most training\.batchSize \(4\)/,
    ],
    [{ ...base, training: { steps: 10, dataParallel: 2 } }, /training\.dataParallel must be an object/],
  ];
  for (const [raw, pattern] of cases) {
    assert.throws(
      () => compileExperiment(raw, 'x.json', runId),
      (e: unknown) => e instanceof ExperimentConfigError && pattern.test(e.message),
      `expected ${pattern}`,
    );
  }
  // A data-parallel job carries its gang size in every JobSpec; without the field, jobs are as before.
  const gang = compileExperiment(
    { ...base, training: { steps: 10, dataParallel: { ranks: 2, minRanks: 1, maxRanks: 3 } } },
    'x.json',
    runId,
  );
  assert.ok(gang.jobs.length > 0);
  for (const j of gang.jobs) assert.deepEqual(j.training.dataParallel, { ranks: 2, minRanks: 1, maxRanks: 3 });
  assert.ok(compileExperiment(base, 'x.json', runId).jobs.every((j) => !('dataParallel' in j.training)));
  // A valid override reaches every job, on top of the preset.
  const capped = compileExperiment({ ...base, model: { attentionLogitCap: 2 } }, 'x.json', runId);
  assert.ok(capped.jobs.length > 0 && capped.jobs.every((j) => j.model.attentionLogitCap === 2 && j.model.dModel > 0));
  // MAPE's ablations travel as model options.
  const ablated = compileExperiment(
    {
      ...base,
      encodings: ['mape'],
      model: { mapeOffset: false, mapeRoles: false, mapeMaxOffset: 8, mapeRelative: true },
    },
    'x.json',
    runId,
  );
  assert.deepEqual(
    ablated.jobs.map((j) => [
      j.encoding,
      j.model.mapeOffset,
      j.model.mapeRoles,
      j.model.mapeMaxOffset,
      j.model.mapeRelative,
    ]),
    [['mape', false, false, 8, true]],
  );
  // Per-length testing travels in every job's evaluation; perLength defaults to 500.
  const perLength = compileExperiment({ ...base, evaluation: { samples: 50, lengthRange: [1, 12] } }, 'x.json', runId);
  assert.ok(perLength.jobs.length > 0);
  for (const j of perLength.jobs)
    assert.deepEqual(j.evaluation, { samples: 50, lengthRange: [1, 12], perLength: 500 }, j.jobId);
});

void test('an experiment file that is not JSON names the line and column; one that is missing says so', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'broken.json');
    writeFileSync(file, '{\n  "name": "x",\n  "seeds" 2\n}\n');
    await assert.rejects(
      loadExperiment(file, runId),
      (e: unknown) =>
        e instanceof ExperimentConfigError &&
        e instanceof ConfigFileError &&
        !e.retryable &&
        e.file === file &&
        /is not valid JSON at line 3, column 11/.test(e.message),
    );
    await assert.rejects(
      loadExperiment(join(dir, 'absent.json'), runId),
      (e: unknown) => e instanceof ExperimentConfigError && /absent\.json: cannot be read/.test(e.message),
    );
  } finally {
    cleanup();
  }
});

void test('job ids are readable and filesystem-safe; two tasks of the same name stay apart', () => {
  const e = compileExperiment(
    {
      name: 'x',
      encodings: ['rope'],
      tasks: [
        { name: 'addition', params: { maxDigits: 2 } },
        { name: 'addition', params: { maxDigits: 4 } },
      ],
      seeds: 2,
      training: { steps: 5 },
    },
    'x.json',
    runId,
  );
  assert.deepEqual(
    e.jobs.map((j) => j.jobId),
    ['rope-addition1-s1', 'rope-addition1-s2', 'rope-addition2-s1', 'rope-addition2-s2'],
  );
  assert.equal(displayJobId('rope-addition-s1'), 'rope/addition/s1');
});

void test('failure detector: suspect after suspectAfterMs, dead after failureTimeoutMs, alive again when heard from', () => {
  const fd = new FailureDetector({ suspectAfterMs: 2500, failureTimeoutMs: 5000, watchdogMs: 0 });
  const a = { agentId: 'a' as AgentId, lastHeardAt: 0, suspect: false };
  assert.deepEqual(
    fd.check(2000, [a], () => undefined),
    [],
  );
  assert.equal(fd.check(3000, [a], () => undefined)[0]?.verdict, 'suspect');
  a.suspect = true;
  assert.deepEqual(
    fd.check(4000, [a], () => undefined),
    [],
    'reported once',
  );
  assert.equal(fd.check(5001, [a], () => undefined)[0]?.verdict, 'dead');
  a.lastHeardAt = 5000;
  assert.equal(fd.check(5100, [a], () => undefined)[0]?.verdict, 'alive');
});

void test('failure detector: the watchdog ignores jobs that are evaluating or at their last step', () => {
  const fd = new FailureDetector({ suspectAfterMs: 2500, failureTimeoutMs: 5000, watchdogMs: 1000 });
  const a = { agentId: 'a' as AgentId, lastHeardAt: 10_000, suspect: false, jobId: 'j' as JobId };
  const job = { state: 'running', step: 5, totalSteps: 10, lastProgressAt: 0 };
  assert.equal(fd.check(10_000, [a], () => job)[0]?.verdict, 'dead');
  assert.deepEqual(
    fd.check(10_000, [a], () => ({ ...job, state: 'evaluating' })),
    [],
  );
  assert.deepEqual(
    fd.check(10_000, [a], () => ({ ...job, step: 10 })),
    [],
  );
});

void test('scheduler: epochs bump on every assignment, re-queued jobs go first, the cap fails a job', () => {
  const e = smallExperiment({ encodings: ['rope'], seeds: [1, 2, 3] }, { maxAttempts: 2 });
  const s = new Scheduler(e.jobs, 2, 0);
  const placed = s.placements([placeable('a'), placeable('b', 'busy')]);
  assert.equal(placed.length, 1);
  const j1 = placed[0]!.jobId;
  assert.equal(s.assign(j1, 'a' as AgentId, 0).epoch, 1);
  assert.ok(s.isCurrent(j1, 1, 'a' as AgentId));
  assert.ok(!s.isCurrent(j1, 0, 'a' as AgentId));
  assert.ok(!s.isCurrent(j1, 1, 'b' as AgentId));
  assert.equal(s.requeue(j1).outcome, 'requeued');
  assert.equal(s.pending()[0], j1, 'a re-queued job goes to the front');
  assert.equal(s.assign(j1, 'b' as AgentId, 0).epoch, 2);
  assert.ok(!s.isCurrent(j1, 1, 'a' as AgentId), 'the old epoch is fenced');
  assert.equal(s.requeue(j1).outcome, 'failed');
  assert.throws(() => s.assign(j1, 'a' as AgentId, 0));
});

void test('journal: entries survive a reopen; a torn last line is skipped; a torn middle line is an error', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'journal.jsonl');
    const j = new Journal(file, () => 5);
    j.append({ type: 'run_started', runId, experiment: 'x', jobs: ['a-b-s1' as JobId], address: 'tcp://127.0.0.1:1' });
    j.append({ type: 'job_assigned', jobId: 'a-b-s1' as JobId, agentId: 'ag' as AgentId, attempt: 1, epoch: 1 });
    j.close();
    appendFileSync(file, '{"type":"job_do');
    const run = replay(readJournal(file));
    assert.equal(run.jobs.get('a-b-s1' as JobId)?.state, 'running');
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace(
        '{"type":"job_do',
        '{"type":"job_do\n{"t":1,"type":"job_done","jobId":"a-b-s1","epoch":1}\n',
      ),
    );
    assert.throws(() => readJournal(file), /journal\.jsonl:3: unreadable/);
  } finally {
    cleanup();
  }
});

function snapshot(): ViewSnapshot {
  return {
    experiment: 'quick',
    runId: 'r1',
    now: 60_000,
    startedAt: 0,
    rows: [
      {
        jobId: 'rope-addition-s1' as JobId,
        encoding: 'rope',
        task: 'addition',
        seed: 1,
        state: 'running',
        attempt: 2,
        epoch: 2,
        step: 150,
        totalSteps: 300,
        agentId: 'agent-1' as AgentId,
        loss: 0.5,
        accuracy: 0.42,
        tokensPerSecond: 1234,
        where: 'agent-1@node7',
        suspect: true,
        heartbeatAgeMs: 3100,
        etaS: 75,
      },
      {
        jobId: 'nope-addition-s1' as JobId,
        encoding: 'nope',
        task: 'addition',
        seed: 1,
        state: 'pending',
        attempt: 0,
        epoch: 0,
        step: 0,
        totalSteps: 300,
        where: '',
        suspect: false,
      },
    ],
    agents: [
      {
        agentId: 'agent-1' as AgentId,
        host: 'node7',
        pid: 1,
        backend: 'cpu',
        state: 'suspect',
        lastHeartbeatAgoMs: 3100,
      },
    ],
    events: [
      {
        time: 59_000,
        kind: 'reassigned',
        text: 'rope/addition/s1 lost on agent-3 at step 120; resumed on agent-1 from step 100',
      },
    ],
  };
}

void test('progress view: a frame shows every job field, suspect agents and the event log', () => {
  const lines = renderFrame(snapshot(), 200);
  const text = lines.join('\n');
  for (const want of [
    'rope/addition/s1',
    'agent-1@node7',
    'running?',
    '150/300',
    '0.500',
    '42%',
    '1234',
    '1m15s',
    '3.1s!',
    'SUSPECT: agent-1',
    'nope/addition/s1',
    'pending',
    'resumed on agent-1 from step 100',
  ]) {
    assert.ok(text.includes(want), `frame lacks ${want}:\n${text}`);
  }
  assert.ok(text.includes('[##########..........]'), 'half a bar at 150/300');
  assert.ok(
    renderFrame(snapshot(), 40).every((l) => l.length <= 40),
    'lines fit the width',
  );
  const bytes = frameBytes(lines, 7);
  assert.ok(bytes.startsWith('\x1b[7A'), 'cursor up over the last frame');
  assert.equal(bytes.split('\x1b[2K').length - 1, lines.length, 'every line cleared before it is written');
  const plain = renderPlainLines(snapshot());
  assert.equal(plain.length, 2);
  assert.ok(!plain.join('').includes('\x1b'), 'no escape codes off a TTY');
});

void test('comparison: mean over seeds per encoding and task; the table lists every encoding', () => {
  const e = smallExperiment();
  const evals = e.jobs.map((j) => evaluationFor(j, j.encoding === 'rope' ? (j.seed === 1 ? 0.8 : 0.6) : 0.1));
  const report = buildComparisonSummary(e, evals);
  const rope = report.rows.find((r) => r.encoding === 'rope');
  assert.ok(rope);
  assert.ok(Math.abs(rope.exactMatch - 0.7) < 1e-9);
  assert.equal(rope.seeds, 2);
  assert.deepEqual(Object.keys(rope.perLength), ['1', '2']);
  const table = formatComparisonSummary(report);
  assert.match(table.split('\n')[2] ?? '', /^rope/, 'best first');
  assert.ok(table.includes('70.0%'));
});

void test('simulated clock: timers fire in order, intervals repeat, cleared timers do not fire', async () => {
  const c = new SimulatedClock(0);
  const fired: string[] = [];
  c.setTimeout(() => fired.push('b@200'), 200);
  c.setTimeout(() => fired.push('a@100'), 100);
  const i = c.setInterval(() => fired.push(`i@${c.now()}`), 150);
  const x = c.setTimeout(() => fired.push('never'), 50);
  c.clearTimeout(x);
  await c.advance(320);
  assert.deepEqual(fired, ['a@100', 'i@150', 'b@200', 'i@300']);
  c.clearInterval(i);
  assert.equal(c.pending, 0);
  const slept = c.sleep(10).then(() => 'woke');
  await c.advance(10);
  assert.equal(await slept, 'woke');
});

void test('with the data code wired in, task params and model.maxLen are checked at start, naming the field', async () => {
  const { validateTask, measureMaxLength } = await import('../../src/data/tasks.ts');
  const checks = {
    validate: validateTask,
    maxLength: (t: Parameters<typeof measureMaxLength>[0]) => measureMaxLength(t, 300),
  };
  for (const f of ['quick', 'length-generalization', 'length-generalization-cpu'])
    await loadExperiment(`configs/experiments/${f}.json`, runId, undefined, checks);
  const base = {
    name: 'x',
    tasks: [{ name: 'addition', params: { minDigits: 3, maxDigits: 2 } }],
    training: { steps: 10 },
  };
  assert.throws(
    () => compileExperiment(base, 'x.json', runId, undefined, checks),
    /x\.json: tasks\[0\]\.params\.maxDigits/,
  );
  const long = {
    ...base,
    tasks: [{ name: 'addition', params: { minDigits: 20, maxDigits: 20 } }],
    model: { maxLen: 16 },
  };
  assert.throws(
    () => compileExperiment(long, 'x.json', runId, undefined, checks),
    /model\.maxLen is 16, too short for tasks\[0\]/,
  );
  // The longest per-length test problems must fit the model too (12-digit operands, reversed: 41 tokens).
  const lengths = {
    ...base,
    tasks: [{ name: 'addition', params: { minDigits: 1, maxDigits: 5, reverse: true } }],
    evaluation: { lengthRange: [1, 12] },
  };
  compileExperiment({ ...lengths, model: { maxLen: 41 } }, 'x.json', runId, undefined, checks);
  assert.throws(
    () => compileExperiment({ ...lengths, model: { maxLen: 40 } }, 'x.json', runId, undefined, checks),
    /model\.maxLen is 40, too short for evaluation\.lengthRange \(addition: examples need up to 41 tokens\)/,
  );
});

void test('scheduler: a data-parallel job takes a gang of one backend or waits, holding its place ahead of single jobs', () => {
  const e = smallExperiment({ encodings: ['rope'], seeds: [1, 2, 3] });
  const [first, ...rest] = e.jobs;
  const gangJob = { ...first!, training: { ...first!.training, dataParallel: { ranks: 2, minRanks: 2 } } };
  const s = new Scheduler([gangJob, ...rest], 3, 0);
  assert.deepEqual(
    s.placements([placeable('a'), placeable('b', 'busy')]),
    [],
    'one idle agent: the gang waits, and the single jobs behind it wait too (the reservation)',
  );
  assert.deepEqual(s.placements([placeable('a')]), [], 'minRanks 2 with one agent in the run: nothing to place');
  const placed = s.placements([
    placeable('a', 'idle', 'cpu', 2),
    placeable('b', 'idle', 'wasm', 0),
    placeable('c', 'idle', 'cpu', 1),
  ]);
  assert.deepEqual(
    placed[0],
    { jobId: gangJob.jobId, agentId: 'c', gang: ['c', 'a'] },
    'one backend, longest idle first',
  );
  assert.equal(placed[1]?.agentId, 'b', 'the next job takes the agent left over');
  s.assign(gangJob.jobId, 'c' as AgentId, 0).gang = { generation: 1, members: ['c' as AgentId, 'a' as AgentId] };
  assert.ok(s.isCurrent(gangJob.jobId, 1, 'a' as AgentId), "a member's messages belong to the job");
  assert.ok(!s.isCurrent(gangJob.jobId, 1, 'b' as AgentId));
  assert.equal(s.requeue(gangJob.jobId).job.gang, undefined, 'a requeued job keeps no gang');
});

void test('scheduler: a gang is as big as the agents that could ever run it allow, down to minRanks', () => {
  const e = smallExperiment({ encodings: ['rope'], seeds: [1] });
  const spec = { ...e.jobs[0]!, training: { ...e.jobs[0]!.training, dataParallel: { ranks: 4 } } };
  const s = new Scheduler([spec], 3, 0);
  assert.deepEqual(
    s.placements([placeable('a'), placeable('b')])[0]?.gang,
    ['a', 'b'],
    'two agents here: a gang of two',
  );
  assert.deepEqual(
    s.placements([placeable('a'), placeable('b'), placeable('c', 'busy')]),
    [],
    'three could: wait for the third',
  );
});
