import { createSource } from './src/data/tasks.ts';
import { tokenizer } from './src/data/tokenizer.ts';
import { buildJobSpec } from './src/train/job.ts';
import { makeShardBatch, shardRows } from './src/train/shard-batch.ts';
const spec = buildJobSpec({ encoding: 'rope', task: { name: 'addition', params: { minDigits: 1, maxDigits: 3, reverse: true } }, preset: 'tiny', seed: 5, steps: 10, batchSize: 256, evalSamples: 0 });
const src = createSource(spec.task, spec.seed, 'train');
for (let r = 0; r < 3; r++) {
  const t0 = performance.now();
  let ex: unknown[] = [];
  for (let i = 0; i < 20; i++) ex = Array.from({ length: 256 }, () => src.next());
  const t1 = performance.now();
  for (let i = 0; i < 20; i++) makeShardBatch(ex as any, tokenizer, spec.model.maxLen, shardRows(256, 2, 0));
  const t2 = performance.now();
  for (let i = 0; i < 20; i++) makeShardBatch(ex as any, tokenizer, spec.model.maxLen, shardRows(256, 1, 0));
  const t3 = performance.now();
  console.log('draw 256', ((t1 - t0) / 20).toFixed(2), 'shard 128', ((t2 - t1) / 20).toFixed(2), 'batch 256', ((t3 - t2) / 20).toFixed(2), 'maxLen', spec.model.maxLen);
}
