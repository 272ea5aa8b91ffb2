// `npm run bench -- parallel [--batch B] [--steps S] [--ranks N]`: tokens/s of one job trained by a gang of N
// processes (the real ZeroMQ communicator on 127.0.0.1) against the same job on one process (the single-agent
// Trainer), measured one after the other in the same call: the data-parallel step itself (src/train/data-parallel.ts).
// A third run of the gang puts a barrier before each allreduce, so the time a rank waits for the slower one and the
// allreduce itself (its transfer and copies: comm_share) are timed apart. A fourth run trains the ranks side by side
// with no exchange at all (ceiling: the speedup if the exchange cost nothing). `--only agents` measures the same job
// through real agents (parallel-agents.ts), `--only elastic` a kill and a growth (parallel-elastic.ts).
// Each process trains on the wasm backend; rank 0 binds port 0 and prints its address, the others join it.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Communicator } from '../protocol/communicator.ts';
import { agentsSpeedup } from './parallel-agents.ts';
import { median, numberFlag, round3 } from './stats.ts';
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
  /** Timed steps per round and configuration, after `warmup` untimed ones. */
  steps: number;
  warmup?: number;
  ranks?: number;
  /** Rounds: each trains every configuration once, in a rotated order. */
  rounds?: number;
}

/** One process's figures over one timed window. */
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

/** Each figure is the median over the rounds of that round's ratio (its windows trained minutes apart at most). */
export interface SpeedupResult {
  batchSize: number;
  steps: number;
  ranks: number;
  rounds: number;
  /** Median step time of the single process and of the gang (its slowest rank), over the rounds. */
  singleStepMs: number;
  gangStepMs: number;
  gangComputeMs: number;
  gangReduceMs: number;
  /** Tokens/s of the gang over the single process, per round. */
  speedups: number[];
  /** Rank 0's time in the allreduce itself (after the barrier that absorbs the wait) over its step time. */
  commShare: number;
  /** Rank 0's time waiting for the slower rank (the barrier) over its step time. */
  waitShare: number;
  /**
   * The single process's CPU time per step over the busiest rank's: the speedup with a free core per rank, which a
   * shared machine's wall clock cannot show (waiting is not counted, the communicator's CPU work is).
   */
  cpuSpeedup: number;
  /**
   * The speedup with an exchange that costs nothing: the single process's step time over the slowest of the ranks
   * trained side by side without a communicator. Below the core count when two trainings slow each other down.
   */
  ceilings: number[];
  /** Those ranks' time computing their gradients (the slowest rank's mean per step). */
  aloneComputeMs: number;
}

/**
 * The global batch of the speedup benches: 512 rows, a step of about 1.3 s on one agent here, so that the compute
 * dominates: the exchange (1.7 MB of gradients a step) and the ranks' step-to-step jitter weigh half what they do at
 * 256 rows. docs/benchmarks.md gives the figures at 256 rows beside these.
 */
export const BENCH_BATCH = 512;

/** The job every parallel and kernel bench trains: tiny preset, RoPE, 1-3 digit addition with reversed answers. */
export function benchJob(batchSize: number, steps: number): JobSpec {
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

type Mode = 'single' | 'gang' | 'split' | 'alone';

interface RankArgs {
  mode: Mode;
  rank: number;
  size: number;
  rootAddress: string;
  batchSize: number;
  warmup: number;
}

/**
 * The child's part: build the replica, train `warmup` steps, print READY, then for each `TRAIN n` line on stdin train
 * n steps and print RESULT <json> (the gang's ranks meet at a barrier first, so the window starts together). Modes:
 * single (the single-agent Trainer), gang (the real ZeroMQ communicator), split (the same with a barrier before each
 * allreduce, so waiting for the slower rank and the allreduce are timed apart), alone (no communicator: each rank
 * trains its own shard as if the sum were its own gradient, side by side with the others on the same cores).
 */
async function runRank(a: RankArgs): Promise<void> {
  await selectBackend('wasm');
  const spec = benchJob(a.batchSize, 1_000_000);
  let reduceMs = 0;
  let waitMs = 0;
  let reduceCpuMs = 0;
  let comm: Communicator | undefined;
  let trainer: Trainer;
  if (a.mode === 'alone') {
    trainer = createReplica(spec, {
      membership: { rank: a.rank, ranks: a.size, reduce: (flat) => Promise.resolve(flat) },
      hashEvery: 0,
    });
  } else if (a.mode === 'single') {
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
      timeoutMs: 600_000,
      onListening: (address) => {
        if (a.rank === 0) process.stdout.write(`ADDRESS ${address}\n`);
      },
    });
    const allreduce = allreduceReducer(comm);
    const reduce: Reducer = async (flat) => {
      if (a.mode === 'split') {
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
  process.stdout.write('READY\n');
  for await (const line of createInterface({ input: process.stdin })) {
    const steps = Number(/^TRAIN (\d+)$/.exec(line)?.[1]);
    if (!Number.isInteger(steps)) break;
    await comm?.barrier();
    reduceMs = 0;
    waitMs = 0;
    reduceCpuMs = 0;
    if (trainer instanceof DataParallelTrainer) trainer.takeTiming();
    const tokensBefore = trainer.tokensProcessed;
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    await trainer.trainSteps(steps);
    const elapsed = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    const figures: RankFigures = {
      tokensPerSecond: ((trainer.tokensProcessed - tokensBefore) * 1000) / elapsed,
      stepMs: elapsed / steps,
      reduceMs: reduceMs / steps,
      waitMs: waitMs / steps,
      computeMs: trainer instanceof DataParallelTrainer ? trainer.takeTiming().computeMs / steps : 0,
      cpuMs: (cpu.user + cpu.system) / 1000 / steps,
      reduceCpuMs: reduceCpuMs / steps,
    };
    process.stdout.write(`RESULT ${JSON.stringify(figures)}\n`);
  }
  await comm?.close();
  trainer.dispose();
  trainer.model.dispose();
}

interface Child {
  next(prefix: string): Promise<string>;
  send(line: string): void;
  exited: Promise<number | null>;
  kill(): void;
}

function startRank(args: RankArgs): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--rank', JSON.stringify(args)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return {
    exited,
    send: (line) => child.stdin.write(`${line}\n`),
    kill: () => child.kill('SIGKILL'),
    async next(prefix) {
      for (;;) {
        const line = await lines.next();
        if (line.done === true) throw new Error(`rank ${args.rank} (${args.mode}) exited before printing ${prefix}`);
        if (line.value === prefix || line.value.startsWith(`${prefix} `)) return line.value.slice(prefix.length + 1);
      }
    },
  };
}

/** The processes of one configuration, started and warmed up; `window` trains them all for a number of steps. */
async function startGroup(mode: Mode, size: number, batchSize: number, warmup: number): Promise<Child[]> {
  const base = { mode, size, batchSize, warmup };
  if (mode === 'single' || mode === 'alone') {
    const children = Array.from({ length: size }, (_, rank) => startRank({ ...base, rank, rootAddress: '' }));
    await Promise.all(children.map((c) => c.next('READY')));
    return children;
  }
  const root = startRank({ ...base, rank: 0, rootAddress: 'tcp://127.0.0.1:0' });
  const children = [root];
  const address = await root.next('ADDRESS');
  for (let r = 1; r < size; r++) children.push(startRank({ ...base, rank: r, rootAddress: address }));
  await Promise.all(children.map((c) => c.next('READY')));
  return children;
}

async function window(group: Child[], steps: number): Promise<RankFigures[]> {
  for (const c of group) c.send(`TRAIN ${steps}`);
  return Promise.all(group.map(async (c) => JSON.parse(await c.next('RESULT')) as RankFigures));
}

/**
 * Tokens/s of one job on `ranks` processes against the same job on one. All four configurations (single, gang,
 * split, alone) stay loaded and take turns, one window each per round in a rotated order, so that every ratio is
 * taken from windows seconds apart: this VM's speed drifts by a third over minutes.
 */
export async function speedup(options: SpeedupOptions): Promise<SpeedupResult> {
  const ranks = options.ranks ?? 2;
  const warmup = options.warmup ?? 3;
  const rounds = options.rounds ?? 5;
  const modes: Mode[] = ['single', 'gang', 'split', 'alone'];
  const groups = new Map<Mode, Child[]>();
  try {
    // One at a time, so that loading one does not slow the warm-up of another.
    for (const mode of modes)
      groups.set(mode, await startGroup(mode, mode === 'single' ? 1 : ranks, options.batchSize, warmup));
    const per: Record<Mode, RankFigures[]>[] = [];
    for (let round = 0; round < rounds; round++) {
      const result = {} as Record<Mode, RankFigures[]>;
      for (let i = 0; i < modes.length; i++) {
        const mode = modes[(i + round) % modes.length] as Mode;
        result[mode] = await window(groups.get(mode) as Child[], options.steps);
      }
      per.push(result);
    }
    const slowest = (figures: RankFigures[]): RankFigures =>
      figures.reduce((a, b) => (b.stepMs > a.stepMs ? b : a), figures[0] as RankFigures);
    const single = (r: Record<Mode, RankFigures[]>): RankFigures => r.single[0] as RankFigures;
    const rank0 = (r: Record<Mode, RankFigures[]>, mode: Mode): RankFigures => r[mode][0] as RankFigures;
    return {
      batchSize: options.batchSize,
      steps: options.steps,
      ranks,
      rounds,
      singleStepMs: median(per.map((r) => single(r).stepMs)),
      gangStepMs: median(per.map((r) => slowest(r.gang).stepMs)),
      gangComputeMs: median(per.map((r) => rank0(r, 'gang').computeMs)),
      gangReduceMs: median(per.map((r) => rank0(r, 'gang').reduceMs)),
      speedups: per.map((r) => single(r).stepMs / slowest(r.gang).stepMs),
      commShare: median(per.map((r) => rank0(r, 'split').reduceMs / rank0(r, 'split').stepMs)),
      waitShare: median(per.map((r) => rank0(r, 'split').waitMs / rank0(r, 'split').stepMs)),
      cpuSpeedup: median(per.map((r) => single(r).cpuMs / Math.max(...r.gang.map((g) => g.cpuMs)))),
      ceilings: per.map((r) => single(r).stepMs / slowest(r.alone).stepMs),
      aloneComputeMs: median(per.map((r) => Math.max(...r.alone.map((g) => g.computeMs)))),
    };
  } finally {
    for (const group of groups.values()) for (const c of group) c.kill();
  }
}

if (process.argv[1] === SELF) {
  const at = process.argv.indexOf('--rank');
  if (at >= 0) {
    await runRank(JSON.parse(process.argv[at + 1] ?? '{}') as RankArgs);
  }
}

/** The bench suite: flat figures for bench/results/parallel.json. */
export async function run(args: string[]): Promise<Record<string, unknown>> {
  const flag = (name: string, fallback: number): number => numberFlag(args, name, fallback);
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
  if (only === 'elastic') return { ...(await elastic()) };
  if (only === 'agents') return agentsSpeedup(flag('--batch', BENCH_BATCH), flag('--steps', 20), flag('--rounds', 8));
  const ranks = flag('--ranks', 2);
  const result = await speedup({
    batchSize: flag('--batch', BENCH_BATCH),
    steps: flag('--steps', 8),
    ranks,
    rounds: flag('--rounds', 7),
  });
  return {
    batch_size: result.batchSize,
    timed_steps: result.steps,
    rounds: result.rounds,
    ranks,
    [`speedup_${ranks}r`]: round3(median(result.speedups)),
    [`speedup_${ranks}r_rounds`]: result.speedups.map(round3),
    [`ceiling_${ranks}r`]: round3(median(result.ceilings)),
    [`ceiling_${ranks}r_rounds`]: result.ceilings.map(round3),
    [`cpu_speedup_${ranks}r`]: round3(result.cpuSpeedup),
    [`comm_share_${ranks}r`]: round3(result.commShare),
    [`wait_share_${ranks}r`]: round3(result.waitShare),
    single_step_ms: round3(result.singleStepMs),
    gang_step_ms: round3(result.gangStepMs),
    gang_compute_ms: round3(result.gangComputeMs),
    gang_reduce_ms: round3(result.gangReduceMs),
    alone_compute_ms: round3(result.aloneComputeMs),
  };
}
