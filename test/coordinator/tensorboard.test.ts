// TensorBoard event files, checked against what does not share our code: protoc's raw decoder for the Event bytes,
// a bitwise CRC-32C for the record checksums, and the published test vector.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@aws-crypto/crc32c';
import { encodeEvent, maskedCrc32c, readEventFile, FILE_VERSION } from '../../coordinator/tensorboard/event-file.ts';
import { exportTensorBoard, TensorBoardSink } from '../../coordinator/tensorboard/sink.ts';
import type { Evaluation, MetricPoint } from '../../protocol/messages.ts';

const hasProtoc = spawnSync('protoc', ['--version']).status === 0;

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one bit at a time: slow and obviously right. */
function bitwiseCrc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord as TensorFlow's record_reader reads it, with the checksums recomputed bitwise. */
function records(file: string): Buffer[] {
  const bytes = readFileSync(file);
  const out: Buffer[] = [];
  const mask = (crc: number): number => (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
  for (let at = 0; at < bytes.length;) {
    const length = Number(bytes.readBigUInt64LE(at));
    assert.equal(bytes.readUInt32LE(at + 8), mask(bitwiseCrc32c(bytes.subarray(at, at + 8))), `length crc at ${at}`);
    const payload = bytes.subarray(at + 12, at + 12 + length);
    assert.equal(bytes.readUInt32LE(at + 12 + length), mask(bitwiseCrc32c(payload)), `payload crc at ${at}`);
    out.push(payload);
    at += 12 + length + 4;
  }
  return out;
}

function point(step: number, loss = 2 / step): MetricPoint {
  return {
    step,
    loss,
    learningRate: 0.001,
    gradNorm: 0.5,
    tokensPerSecond: 4000,
    time: 1_765_000_000_000 + step,
    accuracy: 0.5,
  };
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pe-arena-tb-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

void test('CRC-32C: the published test vector, and the library agrees with a bitwise implementation', () => {
  const nine = new TextEncoder().encode('123456789');
  assert.equal(crc32c(nine) >>> 0, 0xe3069283);
  assert.equal(bitwiseCrc32c(nine), 0xe3069283);
  const random = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7919) & 0xff);
  assert.equal(crc32c(random) >>> 0, bitwiseCrc32c(random));
  assert.notEqual(maskedCrc32c(nine), 0xe3069283);
});

void test(
  'an Event decodes with protoc --decode_raw as TensorBoard reads it',
  { skip: !hasProtoc && 'protoc is not installed (apt-get install protobuf-compiler)' },
  () => {
    const decode = (bytes: Uint8Array): string => execFileSync('protoc', ['--decode_raw'], { input: bytes }).toString();
    const header = decode(encodeEvent({ wallTime: 1.5, step: 0, fileVersion: FILE_VERSION }));
    assert.equal(header, '1: 0x3ff8000000000000\n3: "brain.Event:2"\n');
    const scalars = decode(
      encodeEvent({
        wallTime: 2,
        step: 300,
        scalars: [
          { tag: 'train/loss', value: 1 },
          { tag: 'eval/exact_match', value: 0.25 },
        ],
      }),
    );
    assert.equal(
      scalars,
      '1: 0x4000000000000000\n2: 300\n5 {\n  1 {\n    1: "train/loss"\n    2: 0x3f800000\n  }\n  1 {\n    1: "eval/exact_match"\n    2: 0x3e800000\n  }\n}\n',
    );
  },
);

void test('the live sink writes one directory per job, a file_version record first, then one event per step', (t) => {
  const run = tempDir(t);
  const sink = new TensorBoardSink(run, () => 1_765_000_000_000);
  sink.writeMetrics('rope-addition-s1', [point(1), point(2), point(3)]);
  sink.flush();
  sink.close();
  const dir = join(run, 'tensorboard', 'rope-addition-s1');
  const files = readdirSync(dir);
  assert.equal(files.length, 1);
  assert.match(files[0] ?? '', /^events\.out\.tfevents\.1765000000\./);
  const payloads = records(join(dir, files[0] ?? ''));
  assert.equal(payloads.length, 4);
  const events = readEventFile(join(dir, files[0] ?? ''));
  assert.equal(events[0]?.fileVersion, 'brain.Event:2');
  assert.deepEqual(
    events.slice(1).map((e) => e.step),
    [1, 2, 3],
  );
  assert.deepEqual(
    events[1]?.scalars?.map((s) => s.tag),
    ['train/loss', 'train/learning_rate', 'train/grad_norm', 'train/tokens_per_second', 'train/answer_accuracy'],
  );
  assert.equal(events[2]?.scalars?.[0]?.value, Math.fround(1));
});

void test('a resumed job appends a new file and repeats no step; the evaluation lands at the last step', (t) => {
  const run = tempDir(t);
  const first = new TensorBoardSink(run, () => 1_765_000_000_000);
  first.writeMetrics(
    't5-addition-s2',
    [1, 2, 3, 4, 5, 6].map((s) => point(s)),
  );
  first.close();
  // The agent died after step 6; the job resumes from its checkpoint at step 4 under a new coordinator.
  const second = new TensorBoardSink(run, () => 1_765_000_100_000);
  second.writeMetrics(
    't5-addition-s2',
    [5, 6, 7, 8].map((s) => point(s)),
  );
  const evaluation = {
    steps: 8,
    exactMatch: 0.75,
    symbolicAccuracy: 0.8,
    stepAccuracy: null,
    perLength: { '1': { n: 10, exactMatch: 1 }, '3': { n: 10, exactMatch: 0.5 } },
  };
  second.writeEvaluation('t5-addition-s2', evaluation as unknown as Evaluation);
  second.close();
  const dir = join(run, 'tensorboard', 't5-addition-s2');
  const steps: number[] = [];
  const tags: string[] = [];
  for (const file of readdirSync(dir).sort()) {
    records(join(dir, file));
    for (const event of readEventFile(join(dir, file))) {
      for (const scalar of event.scalars ?? []) {
        if (scalar.tag === 'train/loss') steps.push(event.step);
        if (scalar.tag.startsWith('eval/')) tags.push(`${event.step}:${scalar.tag}`);
      }
    }
  }
  assert.deepEqual(steps, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(tags, [
    '8:eval/exact_match',
    '8:eval/symbolic_accuracy',
    '8:eval/exact_match_length_1',
    '8:eval/exact_match_length_3',
  ]);
});

void test('export writes an older run from metrics.jsonl once; a second export adds nothing; a torn line is skipped', (t) => {
  const run = tempDir(t);
  const job = join(run, 'jobs', 'nope-addition-s1');
  mkdirSync(job, { recursive: true });
  const lines = [1, 2, 3].map((s) => JSON.stringify({ epoch: 1, ...point(s) }));
  // A retried attempt re-sent step 3; the crash tore the last line.
  writeFileSync(
    join(job, 'metrics.jsonl'),
    [...lines, JSON.stringify({ epoch: 2, ...point(3, 9) }), '{"step": 4, "lo'].join('\n'),
  );
  writeFileSync(
    join(job, 'evaluation.json'),
    JSON.stringify({ steps: 3, exactMatch: 1, symbolicAccuracy: 1, stepAccuracy: 0.5, perLength: {} }),
  );
  assert.deepEqual(exportTensorBoard(run), { jobs: 1, steps: 3, evaluations: 1 });
  assert.deepEqual(exportTensorBoard(run), { jobs: 0, steps: 0, evaluations: 0 });
  const dir = join(run, 'tensorboard', 'nope-addition-s1');
  const events = readdirSync(dir).flatMap((f) => readEventFile(join(dir, f)));
  const losses = events.flatMap((e) =>
    (e.scalars ?? []).filter((s) => s.tag === 'train/loss').map((s) => [e.step, s.value]),
  );
  assert.deepEqual(losses, [
    [1, Math.fround(2)],
    [2, Math.fround(1)],
    [3, Math.fround(9)],
  ]);
  assert.throws(() => exportTensorBoard(join(run, 'jobs')), /no jobs\/ directory/);
});

void test('pe-arena export tensorboard: writes an older run, then says there was nothing new; a wrong directory exits 1', async (t) => {
  const run = tempDir(t);
  const job = join(run, 'jobs', 'diet-addition-s1');
  mkdirSync(job, { recursive: true });
  writeFileSync(
    join(job, 'metrics.jsonl'),
    [1, 2].map((s) => JSON.stringify({ epoch: 1, ...point(s) })).join('\n') + '\n',
  );
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'export', 'tensorboard', ...args], {
      encoding: 'utf8',
    });
  const first = cli(run);
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /1 job\(s\), 2 step\(s\), 0 evaluation\(s\) written/);
  assert.match(first.stdout, /tensorboard --logdir .*tensorboard/);
  assert.match(cli(run).stdout, /0 job\(s\), 0 step\(s\)/);
  const wrong = cli(join(run, 'nowhere'));
  assert.equal(wrong.status, 1);
  assert.match(wrong.stderr, /pe-arena export tensorboard: .*nowhere: no jobs\/ directory/);
});
