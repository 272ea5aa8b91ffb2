// `npm run bench -- parallel [--batch B] [--steps S] [--ranks N]`: tokens/s of one job trained by a gang of N
// processes (the real ZeroMQ communicator on 127.0.0.1) against the same job on one process (the single-agent
// Trainer), measured one after the other in the same call: the data-parallel step itself (src/train/data-parallel.ts).
// A third run of the gang puts a barrier before each allreduce, so the time a rank waits for the slower one and the
// allreduce itself (its transfer and copies: comm_share) are timed apart. `--only agents` measures the same job
// through real agents (parallel-agents.ts), `--only elastic` a kill and a growth (parallel-elastic.ts).
// Each process trains on the wasm backend; rank 0 binds port 0 and prints its address, the others join it.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Communicator } from '../protocol/communicator.ts';
import { agentsSpeedup } from './parallel-agents.ts';
import { elastic } from './parallel-elastic.ts';
import type { JobSpec } from '../protocol/messages.ts';
import { createSource } from '../src/data/tasks.ts';
import { tokenizer } from '../src/data/tokenizer.ts';
import { selectBackend } from '../src/train/backend.ts';
import { allreduceReducer, createReplica } from '../src/train/data-parallel-setup.ts';
import { DataParallelTrainer, type Reducer } from '../src/train/data-parallel.ts';
import { buildJobSpec } from '../src/train/job.ts';
import { buildModel } from '../src/train/tf-workload.ts';
import { Trainer } from '../src/train/trainer.ts';

const SELF = fileURLToPath(import.meta.url);

export interface SpeedupOptions {
  batchSize: number;
  /** Timed steps, after `warmup` untimed ones. */
  steps: number;
  warmup?: number;
  ranks?: number;
}

/** One process's figures: tokens/s of the whole job, and where a step's time went. */
export interface RankFigures {
  tokensPerSecond: number;
  stepMs: number;
  /** Mean time per step inside the reducer (allreduce, its copies, and waiting for the slower rank). */
  reduceMs: number;
  /** Of which waiting for the slower rank: a barrier before each allreduce (measured only with `split`). */
  waitMs: number;
  /** Mean time per step computing this rank's gradients (forward, backward, read-back); 0 for the single process. */
  computeMs: number;
  /** CPU time of the whole process per step (all its threads, ZeroMQ's included). */
  cpuMs: number;
  /** Of which inside the reducer. */
  reduceCpuMs: number;
}

export interface SpeedupResult {
  batchSize: number;
  steps: number;
  ranks: number;
  single: RankFigures;
  gang: RankFigures[];
  /** Tokens/s of the gang (rank 0) over the single process. */
  speedup: number;
  /** Rank 0's time in the allreduce itself (after the barrier that absorbs the wait) over its step time. */
  commShare: number;
  /** Rank 0's time waiting for the slower rank (the barrier) over its step time. */
  waitShare: number;
  /**
   * The single process's CPU time per step over the busiest rank's: the speedup with a free core per rank, which a
   * shared machine's wall clock cannot show (waiting is not counted, the communicator's CPU work is).
   */
  cpuSpeedup: number;
}

function benchJob(batchSize: number, steps: number): JobSpec {
  return buildJobSpec({
    encoding: 'rope',
    task: { name: 'addition', params: { minDigits: 1, maxDigits: 3, reverse: true } },
    preset: 'tiny',
    seed: 5,
    steps,
    batchSize,
    evalSamples: 0,
  });
}

interface RankArgs {
  rank: number;
  size: number;
  rootAddress: string;
  batchSize: number;
  steps: number;
  warmup: number;
  /** Put a barrier before each allreduce, so that waiting for the slower rank and the allreduce are timed apart. */
  split: boolean;
}

/** The child's part: train warmup + steps, time the last `steps`, print RESULT <json>. */
async function runRank(a: RankArgs): Promise<void> {
  await selectBackend('wasm');
  const spec = benchJob(a.batchSize, a.warmup + a.steps);
  let reduceMs = 0;
  let waitMs = 0;
  let reduceCpuMs = 0;
  let comm: Communicator | undefined;
  let trainer: Trainer;
  if (a.size === 1) {
    trainer = new Trainer({
      model: buildModel(spec),
      source: createSource(spec.task, spec.seed, 'train'),
      tokenizer,
      job: spec,
    });
  } else {
    comm = await Communicator.create({
      rank: a.rank,
      size: a.size,
      rootAddress: a.rootAddress,
      timeoutMs: 120_000,
      onListening: (address) => {
        if (a.rank === 0) process.stdout.write(`ADDRESS ${address}\n`);
      },
    });
    const allreduce = allreduceReducer(comm);
    const reduce: Reducer = async (flat) => {
      if (a.split) {
        const waiting = performance.now();
        await comm?.barrier();
        waitMs += performance.now() - waiting;
      }
      const started = performance.now();
      const cpuAtStart = process.cpuUsage();
      const sum = await allreduce(flat);
      const cpuUsed = process.cpuUsage(cpuAtStart);
      reduceCpuMs += (cpuUsed.user + cpuUsed.system) / 1000;
      reduceMs += performance.now() - started;
      return sum;
    };
    trainer = createReplica(spec, { membership: { rank: a.rank, ranks: a.size, reduce }, hashEvery: 0 });
  }
  await trainer.trainSteps(a.warmup);
  await comm?.barrier();
  reduceMs = 0;
  waitMs = 0;
  reduceCpuMs = 0;
  if (trainer instanceof DataParallelTrainer) trainer.takeTiming();
  const tokensBefore = trainer.tokensProcessed;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await trainer.trainSteps(a.steps);
  const elapsed = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const figures: RankFigures = {
    tokensPerSecond: ((trainer.tokensProcessed - tokensBefore) * 1000) / elapsed,
    stepMs: elapsed / a.steps,
    reduceMs: reduceMs / a.steps,
    waitMs: waitMs / a.steps,
    computeMs: trainer instanceof DataParallelTrainer ? trainer.takeTiming().computeMs / a.steps : 0,
    cpuMs: (cpu.user + cpu.system) / 1000 / a.steps,
    reduceCpuMs: reduceCpuMs / a.steps,
  };
  process.stdout.write(`RESULT ${JSON.stringify(figures)}\n`);
  await comm?.close();
  trainer.dispose();
  trainer.model.dispose();
}

interface Child {
  next(prefix: string): Promise<string>;
  exited: Promise<number | null>;
  kill(): void;
}

function startRank(args: RankArgs): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--rank', JSON.stringify(args)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return {
    exited,
    kill: () => child.kill('SIGKILL'),
    async next(prefix) {
      for (;;) {
        const line = await lines.next();
        if (line.done === true) throw new Error(`rank ${args.rank} exited before printing ${prefix}`);
        if (line.value.startsWith(`${prefix} `)) return line.value.slice(prefix.length + 1);
      }
    },
  };
}

async function runGang(
  size: number,
  batchSize: number,
  steps: number,
  warmup: number,
  split = false,
): Promise<RankFigures[]> {
  const base = { size, batchSize, steps, warmup, split };
  const root = startRank({ ...base, rank: 0, rootAddress: 'tcp://127.0.0.1:0' });
  const children = [root];
  try {
    const address = size > 1 ? await root.next('ADDRESS') : '';
    for (let r = 1; r < size; r++) children.push(startRank({ ...base, rank: r, rootAddress: address }));
    const results = await Promise.all(children.map(async (c) => JSON.parse(await c.next('RESULT')) as RankFigures));
    await Promise.all(children.map((c) => c.exited));
    return results;
  } finally {
    for (const c of children) c.kill();
  }
}

/** Tokens/s of one job on `ranks` processes against the same job on one, measured back to back. */
export async function speedup(options: SpeedupOptions): Promise<SpeedupResult> {
  const ranks = options.ranks ?? 2;
  const warmup = options.warmup ?? 3;
  const [single] = await runGang(1, options.batchSize, options.steps, warmup);
  const gang = await runGang(ranks, options.batchSize, options.steps, warmup);
  // The same gang again with a barrier before each allreduce: the wait for the slower rank (imbalance on a shared
  // machine) and the allreduce itself, timed apart. Its step time is not the speedup's (the barrier adds a round trip).
  const split = (await runGang(ranks, options.batchSize, options.steps, warmup, true))[0] as RankFigures;
  const first = gang[0] as RankFigures;
  return {
    batchSize: options.batchSize,
    steps: options.steps,
    ranks,
    single: single as RankFigures,
    gang,
    speedup: first.tokensPerSecond / (single as RankFigures).tokensPerSecond,
    commShare: split.reduceMs / split.stepMs,
    waitShare: split.waitMs / split.stepMs,
    cpuSpeedup: (single as RankFigures).cpuMs / Math.max(...gang.map((g) => g.cpuMs)),
  };
}

if (process.argv[1] === SELF) {
  const at = process.argv.indexOf('--rank');
  if (at >= 0) {
    await runRank(JSON.parse(process.argv[at + 1] ?? '{}') as RankArgs);
  }
}

/** The bench suite: flat figures for bench/results/parallel.json. */
export async function run(args: string[]): Promise<Record<string, unknown>> {
  const flag = (name: string, fallback: number): number => {
    const i = args.indexOf(name);
    const v = i < 0 ? Number.NaN : Number(args[i + 1]);
    return Number.isFinite(v) ? v : fallback;
  };
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
  if (only === 'elastic') return { ...(await elastic()) };
  if (only === 'agents') return agentsSpeedup(flag('--batch', 256), flag('--steps', 30), flag('--rounds', 3));
  const ranks = flag('--ranks', 2);
  const result = await speedup({ batchSize: flag('--batch', 256), steps: flag('--steps', 10), ranks });
  const first = result.gang[0];
  return {
    batch_size: result.batchSize,
    timed_steps: result.steps,
    ranks,
    [`speedup_${ranks}r`]: round(result.speedup),
    [`cpu_speedup_${ranks}r`]: round(result.cpuSpeedup),
    [`comm_share_${ranks}r`]: round(result.commShare),
    [`wait_share_${ranks}r`]: round(result.waitShare),
    [`reducer_share_${ranks}r`]: round((first?.reduceMs ?? Number.NaN) / (first?.stepMs ?? Number.NaN)),
    single_step_ms: round(result.single.stepMs),
    gang_step_ms: round(first?.stepMs ?? Number.NaN),
    gang_compute_ms: round(first?.computeMs ?? Number.NaN),
    gang_reduce_ms: round(first?.reduceMs ?? Number.NaN),
    single_tokens_per_s: Math.round(result.single.tokensPerSecond),
    gang_tokens_per_s: Math.round(first?.tokensPerSecond ?? Number.NaN),
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
