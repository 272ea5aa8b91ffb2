// The node agent runs the workload in a worker thread: it must work there (no main-thread-only globals).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

void test('a workload trains, checkpoints and evaluates inside a worker thread', { timeout: 60_000 }, async () => {
  // Node 20 loads a worker's entry before `--import tsx` hooks apply there: register tsx, then import the .ts.
  const entry = pathToFileURL(join(import.meta.dirname, 'fixtures', 'worker-job.ts')).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); });`;
  const worker = new Worker(bootstrap, { eval: true, execArgv: [] });
  try {
    const result = await new Promise<{ losses: number[]; bytes: number; problems: number; steps: number }>(
      (resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('worker gave no result in 50 s')), 50_000);
        worker.once('message', (m) => {
          clearTimeout(timer);
          resolve(m as { losses: number[]; bytes: number; problems: number; steps: number });
        });
        worker.once('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
        worker.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`worker exited with ${code} before reporting`));
        });
      },
    );
    assert.equal(result.losses.length, 2);
    assert.ok(result.losses.every(Number.isFinite));
    assert.ok(result.bytes > 1000);
    assert.equal(result.steps, 2);
    assert.equal(result.problems, 8);
  } finally {
    await worker.terminate();
  }
});
