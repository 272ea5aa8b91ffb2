// Worker-thread entry: runs one job's training loop, talking to the agent thread over parentPort.
// Started by job-runner.ts through a tiny bootstrap that registers tsx first (see there for why).
// A spare worker (workerData.warm) loads the workload module and its backend first, then waits for its job.
import { parentPort, workerData } from 'node:worker_threads';
import { runGangTraining } from './gang-training-loop.ts';
import { runTraining } from './training-loop.ts';
import { isToWorker, type ToWorker, type WarmSpec, type WorkerData, type WorkerStart } from './worker-protocol.ts';
import type { PrepareWorkload } from '../src/train/workload.ts';

const port = parentPort;
if (port === null) throw new Error('training-worker.ts must run in a worker thread');
const data = workerData as WorkerData;

// One listener for the thread's life: the job (for a spare), then requests for the training loop. Requests that
// come before the loop listens wait in `early`.
let handler: ((message: ToWorker) => void) | undefined;
const early: ToWorker[] = [];
let gotStart: ((start: WorkerStart) => void) | undefined;
const job = 'start' in data ? Promise.resolve(data.start) : new Promise<WorkerStart>((resolve) => (gotStart = resolve));
port.on('message', (message: unknown) => {
  if (!isToWorker(message)) return;
  if (message.type === 'start') gotStart?.(message.start);
  else if (handler === undefined) early.push(message);
  else handler(message);
});

/** Best effort: a failure here shows up again, with the job's own error report, when the job creates its workload. */
async function warmUp(warm: WarmSpec): Promise<void> {
  const started = performance.now();
  try {
    const mod = (await import(warm.workloadModule)) as { prepareWorkload?: PrepareWorkload };
    await mod.prepareWorkload?.(warm.backend === undefined ? {} : { backend: warm.backend });
    console.log(`spare worker ready in ${Math.round(performance.now() - started)} ms`);
  } catch (error) {
    console.log(`spare worker warm-up failed: ${(error as Error).message}`);
  }
}

if ('warm' in data) await warmUp(data.warm);
const start = await job;
await (start.gang === true ? runGangTraining : runTraining)(start, {
  post: (message, transfer) => port.postMessage(message, transfer ?? []),
  onMessage: (h) => {
    handler = h;
    for (const message of early.splice(0)) h(message);
  },
});
// The message listener would keep the thread alive; unref (not close, which could drop the last messages)
// lets the thread end once they are flushed. The agent terminates it too, whichever comes first.
port.unref();
