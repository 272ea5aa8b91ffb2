// Runs a job's training loop somewhere the agent's heartbeats cannot be starved: a worker thread (the real
// thing), or in process for logic tests. Both speak worker-protocol.ts.
import { Worker } from 'node:worker_threads';
import { runTraining } from './training-loop.ts';
import { isFromWorker, type FromWorker, type ToWorker, type WorkerStart } from './worker-protocol.ts';
import { WorkerCrashedError } from './errors.ts';

export interface JobHandle {
  /** Ask for a checkpoint at the next slice boundary; it arrives as a 'checkpoint' event with this requestId. */
  requestCheckpoint(requestId: number): void;
  /** Stop the job now and release its thread; resolves when it is gone. Idempotent. */
  terminate(): Promise<void>;
}

export interface JobEvents {
  onEvent(event: FromWorker): void;
  /** The runner ended without being terminated: error is set when it crashed rather than finished. */
  onExit(error?: Error): void;
}

export interface JobRunner {
  start(start: WorkerStart, events: JobEvents): JobHandle;
}

const TSX_API = import.meta.resolve('tsx/esm/api');
const WORKER_ENTRY = new URL('./training-worker.ts', import.meta.url).href;

// A worker's entry module is loaded before `--import tsx` hooks are active in that thread (Node 20), so a .ts
// entry fails with ERR_UNKNOWN_FILE_EXTENSION; registering tsx explicitly, then importing the entry, works.
const BOOTSTRAP = `import(${JSON.stringify(TSX_API)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER_ENTRY)}); });`;

function startMessage(start: WorkerStart): { data: WorkerStart; transfer: ArrayBuffer[] } {
  const r = start.resumeFrom;
  // Copy the resume blob rather than transfer it, so the caller's bytes stay usable (e.g. for a retry).
  return { data: r === undefined ? start : { ...start, resumeFrom: r.slice() }, transfer: [] };
}

export interface WorkerRunnerOptions {
  /** Where the worker's stdout/stderr lines go (TensorFlow.js prints there). */
  log?: (line: string) => void;
  resourceLimits?: { maxOldGenerationSizeMb?: number };
}

/** One worker thread per job. */
export function createWorkerRunner(options: WorkerRunnerOptions = {}): JobRunner {
  return {
    start(start: WorkerStart, events: JobEvents): JobHandle {
      const { data, transfer } = startMessage(start);
      const worker = new Worker(BOOTSTRAP, {
        eval: true,
        execArgv: [],
        workerData: data,
        transferList: transfer,
        stdout: true,
        stderr: true,
        ...(options.resourceLimits === undefined ? {} : { resourceLimits: options.resourceLimits }),
      });
      const forward = (stream: NodeJS.ReadableStream, name: string): void => {
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => {
          for (const line of chunk.split('\n')) if (line.trim() !== '') options.log?.(`[worker ${name}] ${line}`);
        });
      };
      forward(worker.stdout, 'stdout');
      forward(worker.stderr, 'stderr');

      let terminated = false;
      let exited = false;
      let crash: Error | undefined;
      const exitPromise = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.on('message', (message: unknown) => {
        if (terminated) return;
        if (isFromWorker(message)) events.onEvent(message);
        else
          events.onEvent({
            type: 'log',
            line: `worker sent an unknown message: ${JSON.stringify(message)?.slice(0, 200)}`,
          });
      });
      worker.on('error', (error) => {
        crash = new WorkerCrashedError(`training worker crashed: ${error.message}`, { cause: error });
      });
      worker.on('exit', (code) => {
        exited = true;
        if (terminated) return;
        if (crash === undefined && code !== 0)
          crash = new WorkerCrashedError(`training worker exited with code ${code}`);
        events.onExit(crash);
      });
      return {
        requestCheckpoint(requestId: number): void {
          if (!exited && !terminated) worker.postMessage({ type: 'checkpoint', requestId } satisfies ToWorker);
        },
        async terminate(): Promise<void> {
          if (terminated) return exitPromise;
          terminated = true;
          if (!exited) await worker.terminate();
          await exitPromise;
        },
      };
    },
  };
}

/** The same loop in this thread, for logic tests: deterministic and quick to start. */
export function createInProcessRunner(): JobRunner {
  return {
    start(start: WorkerStart, events: JobEvents): JobHandle {
      let handler: ((message: ToWorker) => void) | undefined;
      let terminated = false;
      // Deliver asynchronously, as a real worker would, so the agent never re-enters itself.
      const deliver = (message: FromWorker): void => {
        setImmediate(() => {
          if (!terminated) events.onEvent(message);
        });
      };
      const done = runTraining(start, {
        post: (message) => deliver(message),
        onMessage: (h) => {
          handler = h;
        },
      }).then(
        () => setImmediate(() => terminated || events.onExit()),
        (error: unknown) =>
          setImmediate(() => terminated || events.onExit(new WorkerCrashedError(String(error), { cause: error }))),
      );
      return {
        requestCheckpoint(requestId: number): void {
          setImmediate(() => handler?.({ type: 'checkpoint', requestId }));
        },
        async terminate(): Promise<void> {
          terminated = true;
          handler?.({ type: 'stop' });
          await done;
        },
      };
    },
  };
}
