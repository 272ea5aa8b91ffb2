// The inference API over real HTTP on 127.0.0.1 (port 0) with real tiny models: answers, errors with the
// right status and reason, concurrent requests, server-sent progress, and that it keeps serving.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobSpec } from '../../protocol/messages.ts';
import { tfRegistry, type ModelRegistry } from '../../src/serve/registry.ts';
import { startServer, type RunningServer } from '../../src/serve/server.ts';
import { answerInOrder, extractAnswer, formatPrompt } from '../../src/serve/inference.ts';
import { tempRunDir } from '../report/fixtures.ts';
import { postJson, writeModelRun } from './helpers.ts';

let dir = '';
let registry: ModelRegistry;
let server: RunningServer;
let specs: JobSpec[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pe-arena-serve-'));
  specs = await writeModelRun(dir, ['rope', 'alibi'], { broken: ['t5'] });
  registry = tfRegistry(dir, 'cpu');
  registry.refresh();
  server = await startServer({
    registry,
    runDir: dir,
    maxProblemChars: 200,
    maxBodyBytes: 4096,
    progressIntervalMs: 50,
  });
});

after(async () => {
  await server?.close();
  registry?.dispose();
  await rm(dir, { recursive: true, force: true });
});

void test('prompt formatting follows the generators, answers read back in order', () => {
  const task = { name: 'addition', params: {} };
  assert.equal(formatPrompt(' 12 + 34 ', task), '12+34=');
  assert.equal(formatPrompt('12+34=', task), '12+34=');
  assert.equal(formatPrompt('Tom has 3 apples.\r\n', { name: 'word_problems', params: {} }), 'Tom has 3 apples.\n');
  assert.equal(extractAnswer('3+4=7\n#### 7\n', false), '7');
  assert.equal(extractAnswer('64', true), '46');
  const spaced = { name: 'addition', params: { reverse: true, spaced: true } };
  assert.equal(formatPrompt('12+34', spaced), '1 2 + 3 4 =');
  assert.equal(formatPrompt(' 1 2 + 3 4 = ', spaced), '1 2 + 3 4 =');
  assert.equal(extractAnswer('6 4', true, true), '46');
  const spaceDigits = { name: 'addition', params: { reverse: true, spaceDigits: true } };
  assert.equal(formatPrompt('12 + 345', spaceDigits), '1 2+3 4 5=');
  assert.equal(formatPrompt('1 2+3 4 5=', spaceDigits), '1 2+3 4 5=');
});

void test('a plain problem is written in the format the model trained on; the answer comes back in ordinary order', () => {
  const task = (params: Record<string, boolean>) => ({ name: 'addition', params: { maxDigits: 5, ...params } });
  // 48213 + 907 = 49120 in every format of the literature (data/arithmetic.ts formatBinary).
  const cases: [Record<string, boolean>, string, string][] = [
    [{}, '48213+907=', '49120'],
    [{ reverse: true }, '48213+907=', '02194'],
    [{ padOperands: true }, '48213+00907=', '49120'],
    [{ padAnswer: true, reverse: true }, '48213+907=', '021940'],
    [{ reverseAll: true }, '31284+709=', '02194'],
    [{ reverseAll: true, padOperands: true, padAnswer: true }, '31284+70900=', '021940'],
    [{ reverseAll: true, spaceDigits: true }, '3 1 2 8 4+7 0 9=', '02194'],
  ];
  for (const [params, prompt, written] of cases) {
    for (const typed of ['48213+907=', ' 48213 + 907', '48213+0907'])
      assert.equal(formatPrompt(typed, task(params)), prompt, `${typed} ${JSON.stringify(params)}`);
    assert.equal(answerInOrder(written, task(params)), '49120', `${written} ${JSON.stringify(params)}`);
  }
  assert.equal(
    formatPrompt('12*34', { name: 'multiplication', params: { reverseAll: true, padOperands: true } }),
    '21*43=',
  );
  assert.equal(answerInOrder('8040', { name: 'multiplication', params: { reverseAll: true, padAnswer: true } }), '408');
  // Not a plain two-operand problem: left as the generator writes it.
  assert.equal(formatPrompt('3*4+5', { name: 'arithmetic', params: {} }), '3*4+5=');
  assert.equal(formatPrompt('12+x', task({ reverseAll: true })), '12+x=');
});

void test('POST /solve formats a plain problem for a model trained on padded, reversed numbers', async (t) => {
  const formatted = await tempRunDir(t, 'pe-arena-serve-format-');
  const task = {
    name: 'addition',
    params: { minDigits: 1, maxDigits: 5, reverseAll: true, padOperands: true, padAnswer: true },
  };
  await writeModelRun(formatted, ['mape'], { task });
  const reg = tfRegistry(formatted, 'cpu');
  reg.refresh();
  const srv = await startServer({ registry: reg, runDir: formatted });
  t.after(async () => {
    await srv.close();
    reg.dispose();
  });
  const { status, json } = await postJson(`${srv.url}/solve`, { problem: '48213+907=', model_type: 'mape' });
  assert.equal(status, 200, JSON.stringify(json));
  const [r] = json['results'] as { prompt: string; prediction: string; answer: string; promptTokens: number }[];
  assert.ok(r);
  assert.equal(r.prompt, '31284+70900=');
  assert.equal(r.promptTokens, 1 + r.prompt.length);
  // An untrained model writes anything: the answer is its prediction read back in ordinary order.
  assert.equal(r.answer, answerInOrder(r.prediction, task));
});

void test('GET /health and /models', async () => {
  const health = (await (await fetch(`${server.url}/health`)).json()) as Record<string, unknown>;
  assert.equal(health['status'], 'ok');
  assert.equal(health['models'], 3);
  const { models } = (await (await fetch(`${server.url}/models`)).json()) as {
    models: { name: string; task: string }[];
  };
  assert.deepEqual(models.map((m) => m.name).sort(), ['alibi', 'rope', 't5']);
  assert.ok(models.every((m) => m.task === 'addition'));
});

void test('POST /solve with one model: the answer the model decodes, with latency', async () => {
  const { status, json } = await postJson(`${server.url}/solve`, { problem: '12 + 34', model_type: 'rope' });
  assert.equal(status, 200, JSON.stringify(json));
  const results = json['results'] as {
    model: string;
    answer: string;
    prediction: string;
    latencyMs: number;
    promptTokens: number;
  }[];
  assert.equal(results.length, 1);
  const r = results[0];
  assert.ok(r);
  assert.equal(r.model, 'rope');
  assert.equal(r.promptTokens, 1 + '12+34='.length);
  assert.ok(r.latencyMs > 0);
  // The server's answer is exactly what the evaluation's decoder predicts for the same prompt.
  const { predict } = await import('../../src/train/tf-workload.ts');
  const loaded = await registry.get('rope');
  const [expected] = predict(
    loaded.model,
    [{ id: 'x', task: 'addition', prompt: '12+34=', target: '46', answer: '46', length: 2 }],
    loaded.job.model.maxLen,
  );
  // The evaluation stops a few tokens past the target's length; the server lets the model write until EOS.
  assert.ok((expected ?? '').length > 0);
  assert.equal(r.prediction.slice(0, (expected ?? '').length), expected);
  const again = await postJson(`${server.url}/solve`, { problem: '12+34', model_type: 'rope' });
  assert.equal((again.json['results'] as { prediction: string }[])[0]?.prediction, r.prediction);
});

void test('POST /solve with "all": every model answers, a broken model file is reported, not fatal', async () => {
  const { status, json } = await postJson(`${server.url}/solve`, { problem: '7+8', model_type: 'all' });
  assert.equal(status, 200);
  assert.deepEqual((json['results'] as { model: string }[]).map((r) => r.model).sort(), ['alibi', 'rope']);
  const errors = json['errors'] as { model: string; error: { name: string; message: string } }[];
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.model, 't5');
  assert.equal(errors[0]?.error.name, 'ModelLoadError');
  assert.match(errors[0]?.error.message ?? '', /model\.bin/);
  const single = await postJson(`${server.url}/solve`, { problem: '7+8', model_type: 't5' });
  assert.equal(single.status, 500);
  assert.equal((single.json['error'] as { name: string }).name, 'ModelLoadError');
});

void test('bad input: 400 malformed, 404 unknown model listing the known ones, 413 too long, 405, 404 route', async () => {
  const bad = await postJson(`${server.url}/solve`, '{"problem": "1+1"');
  assert.equal(bad.status, 400);
  assert.match((bad.json['error'] as { message: string }).message, /not valid JSON/);
  const notObject = await postJson(`${server.url}/solve`, '[1,2]');
  assert.equal(notObject.status, 400);
  const noProblem = await postJson(`${server.url}/solve`, { model_type: 'rope' });
  assert.equal(noProblem.status, 400);
  assert.match((noProblem.json['error'] as { message: string }).message, /"problem" must be a string/);
  const unknown = await postJson(`${server.url}/solve`, { problem: '1+1', model_type: 'bogus' });
  assert.equal(unknown.status, 404);
  assert.deepEqual((unknown.json['error'] as { known: string[] }).known.sort(), ['alibi', 'rope', 't5']);
  assert.match((unknown.json['error'] as { message: string }).message, /unknown model 'bogus'.*rope/);
  const longChars = await postJson(`${server.url}/solve`, { problem: '1'.repeat(201), model_type: 'rope' });
  assert.equal(longChars.status, 413);
  // Fits the character limit but not the model's context (tiny preset: maxLen 64).
  const longTokens = await postJson(`${server.url}/solve`, { problem: '1'.repeat(150), model_type: 'all' });
  assert.equal(longTokens.status, 413);
  assert.match((longTokens.json['error'] as { message: string }).message, /tokens/);
  const bigBody = await postJson(`${server.url}/solve`, { problem: '1+1', pad: 'x'.repeat(5000) });
  assert.equal(bigBody.status, 413);
  const wrongMethod = await fetch(`${server.url}/solve`);
  assert.equal(wrongMethod.status, 405);
  assert.equal(wrongMethod.headers.get('allow'), 'POST');
  await wrongMethod.arrayBuffer();
  assert.equal((await fetch(`${server.url}/health`, { method: 'HEAD' })).status, 200); // HEAD goes where GET does
  assert.equal((await fetch(`${server.url}/nope`)).status, 404);
  assert.equal(((await (await fetch(`${server.url}/health`)).json()) as { status: string }).status, 'ok');
});

void test('concurrent good and bad requests all get their answer; the server keeps serving', async () => {
  const bodies: [unknown, number][] = [];
  for (let i = 0; i < 24; i++) {
    const kind = i % 4;
    if (kind === 0) bodies.push([{ problem: `${i}+${i}`, model_type: i % 8 === 0 ? 'rope' : 'alibi' }, 200]);
    if (kind === 1) bodies.push(['{nope', 400]);
    if (kind === 2) bodies.push([{ problem: '1+1', model_type: `m${i}` }, 404]);
    if (kind === 3) bodies.push([{ problem: '9'.repeat(300) }, 413]);
  }
  const answers = await Promise.all(bodies.map(([b]) => postJson(`${server.url}/solve`, b)));
  answers.forEach((a, i) => assert.equal(a.status, bodies[i]?.[1], `request ${i}: ${JSON.stringify(a.json)}`));
  const ok = await postJson(`${server.url}/solve`, { problem: '2+2', model_type: 'rope' });
  assert.equal(ok.status, 200);
});

void test('GET /events streams run progress; GET /report serves the report once written', async () => {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 10_000);
  try {
    const res = await fetch(`${server.url}/events`, { signal: controller.signal });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    while (!text.includes('\n\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    await reader.cancel();
    const data = /^data: (.*)$/m.exec(text)?.[1];
    assert.ok(data, text);
    const progress = JSON.parse(data) as { runId: string; jobs: { jobId: string; state: string }[] };
    assert.equal(progress.runId, 'serve-run');
    assert.deepEqual(progress.jobs.map((j) => j.jobId).sort(), specs.map((s) => s.jobId).sort());
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  const missing = await fetch(`${server.url}/report`);
  assert.equal(missing.status, 404);
  await missing.arrayBuffer();
  await mkdir(join(dir, 'final_comparison'), { recursive: true });
  await writeFile(join(dir, 'final_comparison', 'report.html'), '<!doctype html><title>r</title>');
  const found = await fetch(`${server.url}/report`);
  assert.equal(found.status, 200);
  assert.match(await found.text(), /<title>r<\/title>/);
  const page = await fetch(`${server.url}/`);
  assert.match(await page.text(), /<form id="solve-form">/);
});

void test('POST /attention: a causal map over the prompt and the answer', async () => {
  const { status, json } = await postJson(`${server.url}/attention`, { problem: '3+4', model_type: 'alibi' });
  assert.equal(status, 200);
  const tokens = json['tokens'] as string[];
  const weights = json['weights'] as number[][];
  assert.deepEqual(tokens.slice(0, 5), ['<s>', '3', '+', '4', '=']);
  assert.equal(weights.length, tokens.length);
  weights.forEach((row, q) => {
    const sum = row.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-3, `row ${q} sums to ${sum}`);
    row.forEach((w, k) => {
      if (k > q) assert.ok(w < 1e-6, `future key ${k} of query ${q} has weight ${w}`);
    });
  });
});

void test('a run with no models yet: /solve answers 404 with the reason, progress still streams', async (t) => {
  const empty = await tempRunDir(t, 'pe-arena-serve-empty-');
  const { ModelRegistry } = await import('../../src/serve/registry.ts');
  const reg = new ModelRegistry(empty, () => Promise.reject(new Error('no loads expected')));
  // Injected model calls: this server must never need TensorFlow.js.
  const srv = await startServer({
    registry: reg,
    runDir: empty,
    solve: () => assert.fail('solve called'),
    attention: () => assert.fail('attention called'),
  });
  t.after(() => srv.close());
  await writeFile(
    join(empty, 'experiment.json'),
    JSON.stringify({
      name: 'empty',
      jobs: [
        { jobId: 'rope-addition-s1', encoding: 'rope', seed: 1, task: { name: 'addition' }, training: { steps: 50 } },
      ],
    }),
  );
  reg.refresh();
  const r = await postJson(`${srv.url}/solve`, { problem: '1+1' });
  assert.equal(r.status, 404);
  assert.match((r.json['error'] as { message: string }).message, /no trained models/);
  const progress = (await (await fetch(`${srv.url}/progress`)).json()) as {
    jobs: { jobId: string; state: string; totalSteps: number }[];
  };
  assert.deepEqual(
    progress.jobs.map((j) => [j.jobId, j.state, j.totalSteps]),
    [['rope-addition-s1', 'pending', 50]],
  );
});
