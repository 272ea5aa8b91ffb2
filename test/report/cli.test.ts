// `pe-arena report` and `pe-arena solve` as a user runs them: exit codes, output, and clear errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { answerInOrder, extractAnswer } from '../../src/serve/inference.ts';
import { doneJob, problems, tempRunDir, writeHandRun, type Problem } from './fixtures.ts';
import { writeModelRun } from '../serve/helpers.ts';

const ROOT = join(import.meta.dirname, '..', '..');

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), ...args],
      { cwd: ROOT, timeout: 90_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

void test('pe-arena report writes final_comparison/ and prints the findings; a bad directory exits 1', async (t) => {
  const dir = await tempRunDir(t, 'pe-arena-cli-');
  const oneLength = (right: number): Problem[] =>
    problems(
      8,
      'test',
      () => 1,
      (i) => i < right,
    );
  await writeHandRun(dir, [doneJob('rope', 1, oneLength(6)), doneJob('nope', 1, oneLength(2))]);
  const ok = await cli(['report', dir, '--no-attention', '--resamples', '50']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /report: .*final_comparison\/report\.html/);
  assert.match(ok.stdout, /On addition, rope has the highest exact match, 75\.0%/);
  assert.ok(existsSync(join(dir, 'final_comparison', 'statistical_analysis.json')));
  const bad = await cli(['report', join(dir, 'missing')]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /pe-arena report: .*missing is not a directory/);
});

void test("pe-arena solve prints each model's answer; an unknown model exits 1 naming the known ones", async (t) => {
  const dir = await tempRunDir(t, 'pe-arena-cli-');
  await writeModelRun(dir, ['rope']);
  const ok = await cli(['solve', '12+34', '--run', dir, '--pe', 'rope', '--backend', 'cpu', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const out = JSON.parse(ok.stdout) as { model: string; answer: string; latencyMs: number; prediction: string }[];
  assert.equal(out.length, 1);
  assert.equal(out[0]?.model, 'rope');
  // The answer is the one read off the model's own prediction (an untrained model: any text, even none).
  assert.equal(out[0]?.answer, extractAnswer(out[0]?.prediction ?? '', false));
  assert.ok((out[0]?.latencyMs ?? 0) > 0);
  const bad = await cli(['solve', '1+1', '--run', dir, '--pe', 'bogus', '--backend', 'cpu']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /unknown model 'bogus': known models are rope/);
});

void test('pe-arena solve takes a plain problem and formats it as the model was trained', async (t) => {
  const dir = await tempRunDir(t, 'pe-arena-cli-');
  const task = { name: 'addition', params: { minDigits: 1, maxDigits: 5, reverseAll: true, padOperands: true } };
  await writeModelRun(dir, ['mape'], { task });
  const ok = await cli(['solve', '48213+907=', '--run', dir, '--pe', 'mape', '--backend', 'cpu', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const [out] = JSON.parse(ok.stdout) as { prompt: string; prediction: string; answer: string }[];
  assert.equal(out?.prompt, '31284+70900=');
  assert.equal(out?.answer, answerInOrder(out?.prediction ?? '', task));
  const text = await cli(['solve', '48213+907', '--run', dir, '--pe', 'mape', '--backend', 'cpu']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /as trained: 31284\+70900=/);
});
