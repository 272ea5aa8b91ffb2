// `npm run bench -- parallel --only agents [--batch B] [--steps S] [--rounds R]` (default 512 rows, 20 timed steps,
// 8 rounds: about 12 minutes here): the same job (tiny preset, wasm backend) trained by a real `pe-arena run` on one
// agent, then as a data-parallel job on 2 and on 3 agents, one after the other. Steps/s comes from the job's own
// metrics (the time each step was applied), after 10 warm-up steps; the global batch is the same in every run, so the
// ratio of steps/s is the ratio of tokens/s.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median, round3 } from './stats.ts';

const CLI = join(import.meta.dirname, '..', 'src', 'bin.mjs');
const WARMUP = 10;

async function stepsPerSecond(ranks: number, batchSize: number, steps: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'pe-arena-speedup-'));
  try {
    const training: Record<string, unknown> = { steps: WARMUP + steps, batchSize, learningRate: 0.003 };
    if (ranks > 1) training['dataParallel'] = { ranks, minRanks: ranks };
    const experiment = {
      name: `bench-speedup-${ranks}r`,
      encodings: ['rope'],
      tasks: [{ name: 'addition', params: { minDigits: 1, maxDigits: 3, reverse: true } }],
      seeds: [5],
      preset: 'tiny',
      training,
      evaluation: { samples: 4 },
      cluster: { heartbeatIntervalMs: 1000, checkpointEvery: 100_000 },
    };
    const file = join(dir, 'experiment.json');
    writeFileSync(file, JSON.stringify(experiment));
    const runsDir = join(dir, 'runs');
    const args = [CLI, 'run', file, '--agents', String(ranks), '--backend', 'wasm', '--view', 'off', '--no-report'];
    const child = spawn(process.execPath, [...args, '--runs-dir', runsDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    if (code !== 0) throw new Error(`bench speedup: the ${ranks}-agent run exited ${code}\n${output.slice(-2000)}`);
    const runDir = join(runsDir, readdirSync(runsDir)[0] as string);
    const jobs = join(runDir, 'jobs');
    const job = readdirSync(jobs).find((d) => existsSync(join(jobs, d, 'metrics.jsonl'))) as string;
    const points = readFileSync(join(jobs, job, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as { step: number; time: number });
    const at = (s: number): number => points.find((p) => p.step === s)?.time ?? Number.NaN;
    return (steps * 1000) / (at(WARMUP + steps) - at(WARMUP));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `rounds` rounds of (1 agent, 2 ranks, 3 ranks) back to back, every other round in the reverse order, so that a
 * machine speeding up or slowing down over a round favours neither side: on a shared machine one run can land in a
 * noisy minute, so each speedup is the median of its rounds' ratios (each ratio from runs side by side).
 */
export async function agentsSpeedup(batchSize: number, steps: number, rounds = 3): Promise<Record<string, unknown>> {
  const per: { one: number; two: number; three: number }[] = [];
  for (let i = 0; i < rounds; i++) {
    const rates = new Map<number, number>();
    for (const ranks of i % 2 === 0 ? [1, 2, 3] : [3, 2, 1])
      rates.set(ranks, await stepsPerSecond(ranks, batchSize, steps));
    per.push({ one: rates.get(1) as number, two: rates.get(2) as number, three: rates.get(3) as number });
  }
  return {
    batch_size: batchSize,
    timed_steps: steps,
    rounds,
    steps_per_s_1_agent: round3(median(per.map((p) => p.one))),
    steps_per_s_2r: round3(median(per.map((p) => p.two))),
    steps_per_s_3r: round3(median(per.map((p) => p.three))),
    speedup_2r: round3(median(per.map((p) => p.two / p.one))),
    speedup_3r: round3(median(per.map((p) => p.three / p.one))),
    // 3 ranks on 2 cores against 2 ranks, per round (the bound is 0.9: a third rank must not cost much).
    speedup_3r_over_2r: round3(median(per.map((p) => p.three / p.two))),
    speedup_2r_rounds: per.map((p) => round3(p.two / p.one)),
    speedup_3r_rounds: per.map((p) => round3(p.three / p.one)),
  };
}
