// `npm run bench -- serve [--run runs/<runId>] [--requests N] [--concurrency C]`: /solve throughput and latency
// (p50/p99) for one model and for "all", and the time to build the report of a six-encoding run.
// Without --run it builds six untrained tiny-preset models; untrained models rarely emit EOS, so each answer
// decodes to the context limit: the worst case per request (a trained model stops after a few tokens).
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENCODINGS, type EncodingName, type Evaluation, type JobId, type MetricPoint } from '../protocol/messages.ts';
import { writeReport } from '../src/report/index.ts';
import { quantile } from '../src/report/stats.ts';
import { tfRegistry } from '../src/serve/registry.ts';
import { startServer } from '../src/serve/server.ts';

function arg(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function untrainedRun(dir: string): Promise<void> {
  const { buildJobSpec } = await import('../src/train/job.ts');
  const { createTfWorkload } = await import('../src/train/tf-workload.ts');
  const task = { name: 'addition', params: { minDigits: 1, maxDigits: 3 } };
  const specs = ENCODINGS.map((encoding) =>
    buildJobSpec({ encoding, task, seed: 1, preset: 'tiny', steps: 10, runId: 'bench' }),
  );
  await writeFile(
    join(dir, 'experiment.json'),
    JSON.stringify({
      name: 'bench-serve',
      encodings: ENCODINGS,
      tasks: [task],
      seeds: [1],
      preset: 'tiny',
      jobs: specs,
    }),
  );
  for (const spec of specs) {
    const w = await createTfWorkload(spec);
    try {
      await mkdir(join(dir, 'jobs', spec.jobId, 'final_model'), { recursive: true });
      await writeFile(join(dir, 'jobs', spec.jobId, 'final_model', 'model.bin'), await w.exportModel());
    } finally {
      w.dispose();
    }
  }
}

/** A six-encoding, three-seed run's evaluations and metrics (no models), sized like the quick experiment. */
async function syntheticRun(dir: string, problemsPerJob: number, steps: number): Promise<void> {
  const seeds = [1, 2, 3];
  const jobs: { jobId: string; encoding: EncodingName; seed: number }[] = ENCODINGS.flatMap((encoding) =>
    seeds.map((seed) => ({ jobId: `${encoding}-addition-s${seed}`, encoding, seed })),
  );
  await writeFile(
    join(dir, 'experiment.json'),
    JSON.stringify({
      name: 'bench-report',
      encodings: ENCODINGS,
      tasks: [{ name: 'addition', params: {} }],
      seeds,
      preset: 'tiny',
      jobs: jobs.map((j) => ({ ...j, task: { name: 'addition', params: {} }, training: { steps } })),
    }),
  );
  let state = 12345;
  const rand = (): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 2 ** 32;
  };
  for (const [k, j] of jobs.entries()) {
    const skill = 0.3 + 0.1 * (k % 6);
    const problems = Array.from({ length: problemsPerJob }, (_, i) => {
      const length = 1 + (i % 5);
      const correct = rand() < skill - 0.08 * length;
      return {
        id: `addition:${i >= problemsPerJob * 0.8 ? 'length' : 'test'}:${j.seed}:${i}`,
        split: i >= problemsPerJob * 0.8 ? 'length' : 'test',
        length,
        correct,
        symbolic: correct,
        prediction: correct ? '5' : '6',
        target: '5',
      };
    });
    const test = problems.filter((p) => p.split === 'test');
    const e: Evaluation = {
      jobId: j.jobId as JobId,
      encoding: j.encoding,
      task: 'addition',
      seed: j.seed,
      backend: 'wasm',
      steps,
      wallTimeS: 100,
      parameters: 112512,
      tokensPerSecond: 900,
      exactMatch: test.filter((p) => p.correct).length / test.length,
      symbolicAccuracy: test.filter((p) => p.symbolic).length / test.length,
      stepAccuracy: null,
      perLength: {},
      attentionEntropy: [
        [1, 1, 1, 1],
        [1, 1, 1, 1],
      ],
      errorTaxonomy: { format: 1, carry: 2, wrong_length: 3, single_digit: 4, other: 5 },
      problems,
    };
    const metrics: MetricPoint[] = Array.from({ length: steps }, (_, i) => ({
      step: i + 1,
      loss: 3 / Math.sqrt(i + 1),
      learningRate: 1e-3,
      gradNorm: 1,
      tokensPerSecond: 900,
      time: i,
    }));
    await mkdir(join(dir, 'jobs', j.jobId), { recursive: true });
    await writeFile(join(dir, 'jobs', j.jobId, 'evaluation.json'), JSON.stringify(e));
    await writeFile(
      join(dir, 'jobs', j.jobId, 'metrics.jsonl'),
      metrics.map((m) => JSON.stringify(m)).join('\n') + '\n',
    );
  }
}

async function load(
  url: string,
  body: unknown,
  requests: number,
  concurrency: number,
): Promise<{ rps: number; p50: number; p99: number; errors: number }> {
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < requests) {
      next++;
      const s = performance.now();
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(60_000),
        });
        await res.arrayBuffer();
        if (res.status !== 200) errors++;
      } catch {
        errors++;
      }
      latencies.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return { rps: requests / seconds, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), errors };
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const requests = Number(arg(args, '--requests') ?? 40);
  const concurrency = Number(arg(args, '--concurrency') ?? 4);
  const given = arg(args, '--run');
  const scratch = await mkdtemp(join(tmpdir(), 'pe-arena-bench-serve-'));
  try {
    const runDir = given ?? join(scratch, 'models');
    if (given === undefined) {
      await mkdir(runDir, { recursive: true });
      await untrainedRun(runDir);
    }
    const registry = tfRegistry(runDir);
    registry.refresh();
    const server = await startServer({ registry, runDir });
    let one: Awaited<ReturnType<typeof load>>;
    let all: Awaited<ReturnType<typeof load>>;
    const model = registry.names()[0] ?? 'rope';
    try {
      // Warm-up: load every model and compile the kernels once.
      await load(`${server.url}/solve`, { problem: '12+34', model_type: 'all' }, 1, 1);
      one = await load(`${server.url}/solve`, { problem: '123+456', model_type: model }, requests, concurrency);
      all = await load(
        `${server.url}/solve`,
        { problem: '123+456', model_type: 'all' },
        Math.max(4, Math.round(requests / 4)),
        concurrency,
      );
    } finally {
      await server.close();
      registry.dispose();
    }
    const reportDir = join(scratch, 'report-run');
    await mkdir(reportDir, { recursive: true });
    await syntheticRun(reportDir, 200, 300);
    let t = performance.now();
    await writeReport(reportDir, { attention: false });
    const reportS = (performance.now() - t) / 1000;
    let reportWithAttentionS: number | null = null;
    if (given === undefined) {
      t = performance.now();
      await writeReport(runDir, { attention: true });
      reportWithAttentionS = (performance.now() - t) / 1000;
    }
    return {
      models: registry.names().length,
      trained: given !== undefined,
      requests,
      concurrency,
      solve_one_model: model,
      solve_one_rps: Number(one.rps.toFixed(2)),
      solve_one_p50_ms: Number(one.p50.toFixed(1)),
      solve_one_p99_ms: Number(one.p99.toFixed(1)),
      solve_one_errors: one.errors,
      solve_all_rps: Number(all.rps.toFixed(2)),
      solve_all_p50_ms: Number(all.p50.toFixed(1)),
      solve_all_p99_ms: Number(all.p99.toFixed(1)),
      solve_all_errors: all.errors,
      report_six_encodings_3_seeds_s: Number(reportS.toFixed(2)),
      report_six_heatmaps_s: reportWithAttentionS === null ? null : Number(reportWithAttentionS.toFixed(2)),
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
