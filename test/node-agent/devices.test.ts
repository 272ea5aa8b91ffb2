import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpuDevice, detectDevices, parseNvidiaSmi } from '../../node-agent/devices.ts';

void test('nvidia-smi lines become gpu devices with their memory; junk lines are skipped', () => {
  const gpus = parseNvidiaSmi('NVIDIA H100 80GB HBM3, 81559\nTesla V100-SXM2-16GB, 16160\n\ngarbage\n');
  assert.deepEqual(gpus, [
    { kind: 'gpu', name: 'NVIDIA H100 80GB HBM3', memoryBytes: 81559 * 1024 * 1024 },
    { kind: 'gpu', name: 'Tesla V100-SXM2-16GB', memoryBytes: 16160 * 1024 * 1024 },
  ]);
  assert.deepEqual(parseNvidiaSmi('Some GPU, [N/A]'), [{ kind: 'gpu', name: 'Some GPU' }]);
});

void test('devices: the cpu always, a gpu entry only for the CUDA backend', { timeout: 30_000 }, async () => {
  assert.deepEqual(await detectDevices('wasm'), [cpuDevice()]);
  const cuda = await detectDevices('tensorflow-gpu');
  assert.ok(cuda.some((d) => d.kind === 'gpu'));
  assert.equal(cuda.at(-1)?.kind, 'cpu');
});
