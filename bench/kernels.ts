// `npm run bench -- kernels [--batch B] [--steps S] [--rounds R]`: one training run (tiny preset, wasm backend) that
// switches between the wasm backend's stock Identity, Cast, Slice and SplitV kernels and pe-arena's replacements
// (src/train/wasm-kernels.ts) every window of S steps, R rounds each, so both sets are timed seconds apart in the same
// process. Wall time and CPU time (all threads) per step; the ratios are stock / fast, each the median of its rounds.
import * as tf from '@tensorflow/tfjs';
import { createSource } from '../src/data/tasks.ts';
import { tokenizer } from '../src/data/tokenizer.ts';
import { selectBackend } from '../src/train/backend.ts';
import { buildModel } from '../src/train/tf-workload.ts';
import { Trainer } from '../src/train/trainer.ts';
import { useWasmKernels } from '../src/train/wasm-kernels.ts';
import { benchJob } from './parallel.ts';
import { median, numberFlag, round3 } from './stats.ts';

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const flag = (name: string, fallback: number): number => numberFlag(args, name, fallback);
  const batchSize = flag('--batch', 128);
  const steps = flag('--steps', 6);
  const rounds = flag('--rounds', 7);
  await selectBackend('wasm');
  const spec = benchJob(batchSize, 1_000_000);
  const trainer = new Trainer({
    model: buildModel(spec),
    source: createSource(spec.task, spec.seed, 'train'),
    tokenizer,
    job: spec,
  });
  await trainer.trainSteps(4);
  const timed = {
    stock: { wall: [] as number[], cpu: [] as number[] },
    fast: { wall: [] as number[], cpu: [] as number[] },
  };
  for (let r = 0; r < rounds; r++) {
    for (const which of r % 2 === 0 ? (['stock', 'fast'] as const) : (['fast', 'stock'] as const)) {
      useWasmKernels(which);
      await trainer.trainStep();
      const cpu = process.cpuUsage();
      const started = performance.now();
      await trainer.trainSteps(steps);
      const used = process.cpuUsage(cpu);
      timed[which].wall.push((performance.now() - started) / steps);
      timed[which].cpu.push((used.user + used.system) / 1000 / steps);
    }
  }
  useWasmKernels('fast');
  trainer.dispose();
  const ratios = (key: 'wall' | 'cpu'): number[] => timed.stock[key].map((s, i) => s / (timed.fast[key][i] as number));
  return {
    batch_size: batchSize,
    steps_per_window: steps,
    rounds,
    backend: tf.getBackend(),
    stock_step_ms: round3(median(timed.stock.wall)),
    fast_step_ms: round3(median(timed.fast.wall)),
    stock_cpu_ms_per_step: round3(median(timed.stock.cpu)),
    fast_cpu_ms_per_step: round3(median(timed.fast.cpu)),
    wall_ratio: round3(median(ratios('wall'))),
    cpu_ratio: round3(median(ratios('cpu'))),
  };
}
