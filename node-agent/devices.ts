// What hello reports under `devices`: the CPUs always, and the GPUs when the backend is CUDA. GPUs are listed
// with nvidia-smi when it is there (names and memory, for placement and the progress view); bounded and optional.
import { execFile } from 'node:child_process';
import os from 'node:os';
import type { DeviceInfo } from '../protocol/messages.ts';

export function cpuDevice(): DeviceInfo {
  const cpus = os.cpus();
  return { kind: 'cpu', name: `${cpus.length} x ${cpus[0]?.model ?? 'cpu'}`, memoryBytes: os.totalmem() };
}

/** Parses `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` (MiB). */
export function parseNvidiaSmi(text: string): DeviceInfo[] {
  const out: DeviceInfo[] = [];
  for (const line of text.split('\n')) {
    const cut = line.lastIndexOf(',');
    if (cut <= 0) continue;
    const name = line.slice(0, cut).trim();
    const mib = Number(line.slice(cut + 1).trim());
    if (name === '') continue;
    out.push(
      Number.isFinite(mib) && mib > 0 ? { kind: 'gpu', name, memoryBytes: mib * 1024 * 1024 } : { kind: 'gpu', name },
    );
  }
  return out;
}

export function listGpus(timeoutMs = 3_000): Promise<DeviceInfo[]> {
  return new Promise((resolve) => {
    execFile(
      'nvidia-smi',
      ['--query-gpu=name,memory.total', '--format=csv,noheader,nounits'],
      { timeout: timeoutMs },
      (error, stdout) => {
        resolve(error ? [] : parseNvidiaSmi(stdout));
      },
    );
  });
}

/** The devices for hello, given the backend the workers will use. */
export async function detectDevices(backend: string): Promise<DeviceInfo[]> {
  if (backend !== 'tensorflow-gpu') return [cpuDevice()];
  const gpus = await listGpus();
  return [...(gpus.length > 0 ? gpus : [{ kind: 'gpu' as const, name: 'cuda' }]), cpuDevice()];
}
