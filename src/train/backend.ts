// Picks the TensorFlow.js backend: the best one that loads, in the order tensorflow-gpu (CUDA), tensorflow
// (native CPU), wasm, cpu, or only the one asked for. Logs what runs and why each other one did not.
// Every part of pe-arena imports '@tensorflow/tfjs' itself, so they all share this one engine and registry.
import * as tf from '@tensorflow/tfjs';
import type { BackendName } from './workload.ts';
import { TrainError } from './errors.ts';
import { useWasmKernels } from './wasm-kernels.ts';

export const BACKEND_ORDER = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const satisfies readonly BackendName[];

export interface BackendChoice {
  name: BackendName;
  tried: { name: BackendName; ok: boolean; reason?: string }[];
}

// The package that registers each backend, and the name it registers under in the tfjs engine
// (tfjs-node-gpu registers as 'tensorflow' too, so the engine cannot tell the two apart).
const PACKAGES: Record<BackendName, { module: string | null; engineName: string }> = {
  'tensorflow-gpu': { module: '@tensorflow/tfjs-node-gpu', engineName: 'tensorflow' },
  tensorflow: { module: '@tensorflow/tfjs-node', engineName: 'tensorflow' },
  wasm: { module: '@tensorflow/tfjs-backend-wasm', engineName: 'wasm' },
  cpu: { module: null, engineName: 'cpu' },
};

const loaded = new Map<BackendName, Promise<{ ok: boolean; reason?: string }>>();
const choices = new Map<BackendName | 'auto', BackendChoice>();

export function isBackendName(value: unknown): value is BackendName {
  return typeof value === 'string' && (BACKEND_ORDER as readonly string[]).includes(value);
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0]?.slice(0, 300) ?? 'unknown error';
}

async function tryLoad(name: BackendName): Promise<{ ok: boolean; reason?: string }> {
  const { module, engineName } = PACKAGES[name];
  try {
    // A non-literal specifier: the native packages are optional and may be absent at type-check time.
    if (module !== null) await import(module);
    if (name === 'wasm') useWasmKernels('fast');
    if (tf.findBackendFactory(engineName) === null)
      return { ok: false, reason: `${module ?? name} loaded but registered no '${engineName}' backend` };
    // The native CPU package cannot tell us whether it is the GPU build; the GPU package can be asked for devices
    // only through its own API, so a loaded tfjs-node-gpu is taken at its word.
    const ok = await tf.setBackend(engineName);
    if (!ok) return { ok: false, reason: `tf.setBackend('${engineName}') failed to initialize` };
    await tf.ready();
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: firstLine(error) };
  }
}

function load(name: BackendName): Promise<{ ok: boolean; reason?: string }> {
  let pending = loaded.get(name);
  if (pending === undefined) {
    pending = tryLoad(name);
    loaded.set(name, pending);
  }
  return pending;
}

/**
 * Selects and activates a backend. With `preferred`, only that one is tried and a failure throws (retryable:
 * another node may have it). Idempotent: calling again with the same argument returns the same choice and
 * re-activates it if something switched the engine in between.
 */
export async function selectBackend(
  preferred?: BackendName,
  log: (line: string) => void = () => {},
): Promise<BackendChoice> {
  const key = preferred ?? 'auto';
  const known = choices.get(key);
  if (known !== undefined) {
    const engineName = PACKAGES[known.name].engineName;
    if (tf.getBackend() !== engineName) {
      await tf.setBackend(engineName);
      await tf.ready();
    }
    return known;
  }
  if (preferred !== undefined && !isBackendName(preferred)) {
    throw new TrainError(`unknown backend '${String(preferred)}': use one of ${BACKEND_ORDER.join(', ')}`, {
      retryable: false,
    });
  }
  const tried: BackendChoice['tried'] = [];
  const candidates: readonly BackendName[] = preferred === undefined ? BACKEND_ORDER : [preferred];
  for (const name of candidates) {
    const result = await load(name);
    tried.push(result.reason === undefined ? { name, ok: result.ok } : { name, ok: result.ok, reason: result.reason });
    if (!result.ok) {
      log(`backend ${name} skipped: ${result.reason ?? 'did not load'}`);
      continue;
    }
    // The engine may have been switched by a later load attempt; make the winner active.
    if (tf.getBackend() !== PACKAGES[name].engineName) await tf.setBackend(PACKAGES[name].engineName);
    await tf.ready();
    const rest = BACKEND_ORDER.filter(
      (other) => preferred === undefined && BACKEND_ORDER.indexOf(other) > BACKEND_ORDER.indexOf(name),
    );
    for (const other of rest) log(`backend ${other} not tried: ${name} loaded first`);
    log(
      preferred === undefined ? `backend ${name} selected (best that loads)` : `backend ${name} selected (asked for)`,
    );
    const choice: BackendChoice = { name, tried };
    choices.set(key, choice);
    return choice;
  }
  if (preferred !== undefined) {
    throw new TrainError(
      `backend '${preferred}' was asked for but does not load here: ${tried[0]?.reason ?? 'unknown reason'}`,
      { retryable: true },
    );
  }
  throw new TrainError(
    `no TensorFlow.js backend loads: ${tried.map((t) => `${t.name}: ${t.reason ?? '?'}`).join('; ')}`,
    { retryable: true },
  );
}
