// Learns which TensorFlow.js backend this node's workers will get, before hello, so the coordinator can place jobs
// that need one. It runs src/train/backend.ts selectBackend in a throw-away worker thread: the same choice a job's
// worker makes, without loading TensorFlow.js into the agent thread.
import { Worker } from 'node:worker_threads';
import { raceDeadline, TIMED_OUT } from '../protocol/deadline.ts';
import { codeUrl, COMPILED, TSX_API } from '../protocol/code-paths.ts';

const BACKEND_MODULE = codeUrl('src/train/backend.ts');

// tsx is registered only when running the sources.
const PROBE = `
const { parentPort } = await import('node:worker_threads');
${COMPILED ? '' : `(await import(${JSON.stringify(TSX_API)})).register();`}
try {
  const { selectBackend } = await import(${JSON.stringify(BACKEND_MODULE)});
  const choice = await selectBackend();
  parentPort.postMessage({ ok: true, name: choice.name, tried: choice.tried });
} catch (error) {
  parentPort.postMessage({ ok: false, reason: String(error && error.message || error) });
}
`;

export type ProbeResult = { ok: true; name: string; tried: unknown } | { ok: false; reason: string };

/** Bounded by timeoutMs; the worker is always terminated. */
export async function probeBackend(timeoutMs = 60_000): Promise<ProbeResult> {
  const worker = new Worker(`import('data:text/javascript,' + encodeURIComponent(${JSON.stringify(PROBE)}))`, {
    eval: true,
    execArgv: [],
    stdout: true,
    stderr: true,
  });
  worker.stdout.resume();
  worker.stderr.resume();
  const answer = new Promise<ProbeResult>((resolve) => {
    worker.once('message', (m: unknown) => {
      const r = m as { ok?: unknown; name?: unknown; reason?: unknown; tried?: unknown };
      resolve(
        r.ok === true && typeof r.name === 'string'
          ? { ok: true, name: r.name, tried: r.tried }
          : { ok: false, reason: String(r.reason) },
      );
    });
    worker.once('error', (error) => resolve({ ok: false, reason: error.message }));
    worker.once('exit', (code) => resolve({ ok: false, reason: `probe worker exited with code ${code}` }));
  });
  try {
    const result = await raceDeadline(answer, timeoutMs);
    return result === TIMED_OUT ? { ok: false, reason: `no answer within ${timeoutMs} ms` } : result;
  } finally {
    await worker.terminate();
  }
}
