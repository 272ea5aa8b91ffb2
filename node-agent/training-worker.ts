// Worker-thread entry: runs one job's training loop, talking to the agent thread over parentPort.
// Started by job-runner.ts through a tiny bootstrap that registers tsx first (see there for why).
import { parentPort, workerData } from 'node:worker_threads';
import { runTraining } from './training-loop.ts';
import { isToWorker, type WorkerStart } from './worker-protocol.ts';

const port = parentPort;
if (port === null) throw new Error('training-worker.ts must run in a worker thread');

await runTraining(workerData as WorkerStart, {
  post: (message, transfer) => port.postMessage(message, transfer ?? []),
  onMessage: (handler) =>
    port.on('message', (message: unknown) => {
      if (isToWorker(message)) handler(message);
    }),
});
// The message listener would keep the thread alive; unref (not close, which could drop the last messages)
// lets the thread end once they are flushed. The agent terminates it too, whichever comes first.
port.unref();
