// A run directory with real (untrained) models, quick to make: each job's final_model/model.bin is the
// exported blob of a freshly built tiny transformer, in the layout the coordinator writes.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { EncodingName, JobSpec, TaskSpec } from '../../protocol/messages.ts';
import { runStarted, writeExperiment } from '../report/fixtures.ts';

export async function writeModelRun(
  dir: string,
  encodings: EncodingName[],
  options: { broken?: EncodingName[]; task?: TaskSpec } = {},
): Promise<JobSpec[]> {
  const { buildJobSpec } = await import('../../src/train/job.ts');
  const { createTfWorkload } = await import('../../src/train/tf-workload.ts');
  const task = options.task ?? { name: 'addition', params: { minDigits: 1, maxDigits: 2 } };
  const all = [...encodings, ...(options.broken ?? [])];
  const specs = all.map((encoding) =>
    buildJobSpec({ encoding, task, seed: 1, preset: 'tiny', steps: 10, runId: 'serve-run', evalSamples: 4 }),
  );
  await mkdir(join(dir, 'jobs'), { recursive: true });
  await writeExperiment(dir, 'serve-test', [task], specs);
  for (const spec of specs) {
    const modelDir = join(dir, 'jobs', spec.jobId, 'final_model');
    await mkdir(modelDir, { recursive: true });
    if (options.broken?.includes(spec.encoding)) {
      await writeFile(join(modelDir, 'model.bin'), 'this is not a checkpoint');
      continue;
    }
    const w = await createTfWorkload(spec, { backend: 'cpu' });
    try {
      await writeFile(join(modelDir, 'model.bin'), await w.exportModel());
    } finally {
      w.dispose();
    }
  }
  const jobIds = specs.map((s) => s.jobId);
  await writeFile(join(dir, 'journal.jsonl'), runStarted('serve-run', 'serve-test', jobIds) + '\n');
  return specs;
}

export async function postJson(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}
