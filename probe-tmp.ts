import { createSource } from './src/data/tasks.ts';
import { tokenizer } from './src/data/tokenizer.ts';
import { selectBackend } from './src/train/backend.ts';
import { createReplica } from './src/train/data-parallel-setup.ts';
import { buildJobSpec } from './src/train/job.ts';
import { buildModel } from './src/train/tf-workload.ts';
import { Trainer } from './src/train/trainer.ts';
await selectBackend('wasm');
const spec = buildJobSpec({ encoding: 'rope', task: { name: 'addition', params: { minDigits: 1, maxDigits: 3, reverse: true } }, preset: 'tiny', seed: 5, steps: 100, batchSize: 64, evalSamples: 0 });
const single = new Trainer({ model: buildModel(spec), source: createSource(spec.task, spec.seed, 'train'), tokenizer, job: spec });
const dp1 = createReplica(spec, { membership: { rank: 0, ranks: 1, reduce: async (x) => x }, hashEvery: 0 });
const spec32 = { ...spec, training: { ...spec.training } };
const half = createReplica(spec, { membership: { rank: 0, ranks: 2, reduce: async (x) => x }, hashEvery: 0 });
await single.trainSteps(2); await dp1.trainSteps(2); await half.trainSteps(2);
for (let round = 0; round < 5; round++) {
  for (const [name, t] of [['single', single], ['dp1', dp1], ['dp-half', half]] as const) {
    const c = process.cpuUsage(); const s = performance.now(); await t.trainSteps(3); const u = process.cpuUsage(c); console.log(name, 'wall', ((performance.now() - s) / 3).toFixed(0), 'cpu', ((u.user + u.system) / 3000).toFixed(0));
  }
}
