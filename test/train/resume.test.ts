// Exact resume: N steps straight give the same losses as N/2 steps, a checkpoint, and N/2 more in a FRESH
// process (cpu backend). Also: restoring puts back the very same weights.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readTrainingCheckpoint } from '../../src/train/trainer.ts';

const run = promisify(execFile);
const child = join(import.meta.dirname, 'fixtures', 'resume-child.ts');

async function trainInChild(args: string[]): Promise<{ startStep: number; losses: number[]; gradNorms: number[] }> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', child, ...args], {
    timeout: 90_000,
    cwd: join(import.meta.dirname, '..', '..'),
  });
  const last = stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(last) as { startStep: number; losses: number[]; gradNorms: number[] };
}

void test(
  'N steps straight equal N/2 + checkpoint + N/2 in a fresh process, bit for bit',
  { timeout: 120_000 },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pe-arena-resume-'));
    try {
      const half = join(dir, 'half.ckpt');
      const straightEnd = join(dir, 'straight.ckpt');
      const resumedEnd = join(dir, 'resumed.ckpt');
      // The straight run and the first half run side by side (two cores); the second half needs the first.
      const [straight, first] = await Promise.all([
        trainInChild(['6', '-', straightEnd]),
        trainInChild(['3', '-', half]),
      ]);
      const second = await trainInChild(['3', half, resumedEnd]);
      assert.equal(straight.losses.length, 6);
      assert.equal(second.startStep, 3, 'the resumed run starts at the checkpoint step');
      assert.ok(straight.losses.every(Number.isFinite));
      assert.ok(new Set(straight.losses).size > 1, 'losses change from step to step (the test can tell steps apart)');
      assert.deepEqual([...first.losses, ...second.losses], straight.losses);
      assert.deepEqual([...first.gradNorms, ...second.gradNorms], straight.gradNorms);
      // Same final weights and optimizer moments, and the data position carried over.
      const a = readTrainingCheckpoint(new Uint8Array(await readFile(straightEnd)));
      const b = readTrainingCheckpoint(new Uint8Array(await readFile(resumedEnd)));
      assert.equal(a.meta.step, 6);
      assert.equal(b.meta.step, 6);
      assert.deepEqual(b.meta.source, a.meta.source);
      assert.equal(b.meta.optimizer.step, 6);
      for (const [name, t] of a.tensors) assert.deepEqual(b.tensors.get(name)?.data, t.data, name);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);
