// A short real `pe-arena train` in a child process: it writes its files, resumes from its own checkpoint, and
// refuses a corrupt one with a clear message instead of a stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Evaluation, MetricPoint } from '../../protocol/messages.ts';
import { readTrainingCheckpoint } from '../../src/train/trainer.ts';

const exec = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const cli = join(root, 'src', 'cli.ts');

async function train(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await exec(process.execPath, ['--import', 'tsx', cli, 'train', ...args], {
      cwd: root,
      timeout: 90_000,
    });
    return { code: 0, stderr };
  } catch (error) {
    const e = error as { code?: number; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stderr: e.stderr ?? '' };
  }
}

const metrics = async (dir: string): Promise<MetricPoint[]> =>
  (await readFile(join(dir, 'metrics.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as MetricPoint);

void test(
  'pe-arena train writes checkpoints, final model, metrics and evaluation.json; --resume continues exactly',
  { timeout: 120_000 },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pe-arena-train-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const out = join(dir, 'a');
    const common = [
      '--task',
      'addition',
      '--digits',
      '1-2',
      '--reverse',
      '--preset',
      'tiny',
      '--batch',
      '8',
      '--backend',
      'wasm',
      '--eval-samples',
      '10',
      '--seed',
      '3',
    ];
    const first = await train([
      '--pe',
      'sinusoidal',
      '--steps',
      '4',
      '--checkpoint-every',
      '2',
      '--out',
      out,
      ...common,
    ]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /step 4\/4 +loss/, 'plain progress lines when not on a TTY');
    assert.deepEqual(await readdir(join(out, 'checkpoints')), ['step-0000002.ckpt']);
    const evaluation = JSON.parse(await readFile(join(out, 'evaluation.json'), 'utf8')) as Evaluation;
    assert.equal(evaluation.steps, 4);
    assert.equal(evaluation.encoding, 'sinusoidal');
    assert.equal(evaluation.backend, 'wasm');
    assert.equal(evaluation.problems.length, 10);
    const final = readTrainingCheckpoint(new Uint8Array(await readFile(join(out, 'final_model', 'model.ckpt'))));
    assert.equal(final.meta.step, 4);
    assert.equal(final.meta.job.task.params['reverse'], true);
    const straight = await metrics(out);
    assert.deepEqual(
      straight.map((p) => p.step),
      [1, 2, 3, 4],
    );

    const out2 = join(dir, 'b');
    const resumed = await train([
      '--resume',
      join(out, 'checkpoints', 'step-0000002.ckpt'),
      '--out',
      out2,
      '--backend',
      'wasm',
    ]);
    assert.equal(resumed.code, 0, resumed.stderr);
    const tail = await metrics(out2);
    assert.deepEqual(
      tail.map((p) => p.step),
      [3, 4],
    );
    assert.deepEqual(
      tail.map((p) => p.loss),
      straight.slice(2).map((p) => p.loss),
      'same losses after the resume',
    );

    const broken = join(dir, 'broken.ckpt');
    const bytes = await readFile(join(out, 'checkpoints', 'step-0000002.ckpt'));
    await writeFile(broken, bytes.subarray(0, bytes.length - 500));
    const refused = await train(['--resume', broken, '--out', join(dir, 'c')]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /CheckpointError: checkpoint is \d+ bytes but its header describes \d+ \(truncated\)/);
    assert.doesNotMatch(refused.stderr, /^\s+at /m, 'a message, not a stack trace');

    const badFlag = await train(['--pe', 'bogus', '--out', join(dir, 'd')]);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /--pe must be one of/);
  },
);

void test(
  'pe-arena train --length-range prints exact match for every length and the longest at >= 90%; bad ranges name the flag',
  { timeout: 120_000 },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pe-arena-train-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const common = ['--pe', 'mape', '--task', 'addition', '--digits', '1-2', '--reverse', '--backend', 'wasm'];
    const out = join(dir, 'a');
    const run = await train([
      ...common,
      ...['--steps', '3', '--batch', '8', '--eval-samples', '6', '--checkpoint-every', '0'],
      ...['--length-range', '2-5', '--per-length', '4', '--model', 'mapeRelative=true', '--out', out],
    ]);
    assert.equal(run.code, 0, run.stderr);
    const job = JSON.parse(await readFile(join(out, 'job.json'), 'utf8')) as { evaluation: unknown; model: unknown };
    assert.deepEqual(job.evaluation, { samples: 6, lengthRange: [2, 5], perLength: 4 });
    assert.equal((job.model as { mapeRelative?: boolean }).mapeRelative, true);
    const evaluation = JSON.parse(await readFile(join(out, 'evaluation.json'), 'utf8')) as Evaluation;
    const table = run.stderr.slice(run.stderr.indexOf('per-length exact match'));
    for (let length = 2; length <= 5; length++) {
      const b = evaluation.perLength[String(length)];
      assert.ok(b !== undefined && b.n >= 4, `length ${length} evaluated`);
      const exact = `${(100 * b.exactMatch).toFixed(1)}%`;
      assert.match(table, new RegExp(`^ +${length} +${exact.replace('.', '\\.')} `, 'm'), `length ${length} printed`);
    }
    const longest = evaluation.longestLength90;
    assert.match(
      table,
      new RegExp(`longest length with >= 90% exact match: ${longest == null ? 'none' : `${longest} digits`}`),
    );

    for (const [args, pattern] of [
      [['--length-range', '5-2'], /--length-range: need 1 <= min <= max, got '5-2'/],
      [['--length-range', 'x'], /--length-range must look like 3 or 1-3/],
      [['--length-range', '1-40'], /model\.maxLen is 64, too short for --length-range/],
      [['--per-length', '5'], /--per-length needs --length-range/],
      [['--length-range', '1-3', '--length-digits', '4'], /--length-range is a second .* beside --length-digits/],
      [['--length-range', '1-3', '--task', 'arithmetic'], /--length-range needs tasks with operand lengths/],
      [['--model', 'mapeRelative=2'], /model\.mapeRelative must be true or false/],
    ] as const) {
      const refused = await train(['--pe', 'mape', '--steps', '1', ...args, '--out', join(dir, 'refused')]);
      assert.notEqual(refused.code, 0, args.join(' '));
      assert.match(refused.stderr, pattern, args.join(' '));
      assert.doesNotMatch(refused.stderr, /^\s+at /m, 'a message, not a stack trace');
    }
  },
);
