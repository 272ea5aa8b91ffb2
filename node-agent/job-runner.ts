// Runs a job's training loop somewhere the agent's heartbeats cannot be starved: a worker thread (the real
// thing), or in process for logic tests. Both speak worker-protocol.ts.
import { Worker } from 'node:worker_threads';
import { codeUrl, workerBootstrap } from '../protocol/code-paths.ts';
import { runTraining } from './training-loop.ts';
import {
  isFromWorker,
  type FromWorker,
  type ToWorker,
  type WarmSpec,
  type WorkerData,
  type WorkerStart,
} from './worker-protocol.ts';
import { WorkerCrashedError } from './errors.ts';

export interface JobHandle {
  /**
   * Ask for a checkpoint at the next slice boundary; it arrives as a 'checkpoint' event with this requestId. With
   * `stop`, the job trains no further after it and reports 'stopped' (a drain).
   */
  requestCheckpoint(requestId: number, stop?: boolean): void;
  /** Anything else for the worker (a gang's sums and seats), with the buffers to hand over rather than copy. */
  send(message: ToWorker, transfer?: ArrayBuffer[]): void;
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
  /** Get a worker ready for the next job ahead of time, where the runner keeps one; a no-op otherwise. */
  prewarm?(): void;
  /** Ends the spare worker, if any. */
  close?(): Promise<void>;
}

const WORKER_ENTRY = codeUrl('node-agent/training-worker.ts');

/** The worker's bootstrap: tsx is registered when running the sources or when the job's workload module is .ts. */
const bootstrapFor = (data: WorkerData): string => {
  const workload = 'start' in data ? data.start.workloadModule : data.warm.workloadModule;
  return workerBootstrap(WORKER_ENTRY, workload.endsWith('.ts'));
};

function startMessage(start: WorkerStart): WorkerStart {
  const r = start.resumeFrom;
  // Copy the resume blob rather than transfer it, so the caller's bytes stay usable (e.g. for a retry).
  return r === undefined ? start : { ...start, resumeFrom: r.slice() };
}

const warmKey = (w: WarmSpec): string => `${w.workloadModule}\n${w.backend ?? ''}`;

export interface WorkerRunnerOptions {
  /** Where the worker's stdout/stderr lines go (TensorFlow.js prints there). */
  log?: (line: string) => void;
  resourceLimits?: { maxOldGenerationSizeMb?: number };
  /**
   * Keep one spare worker with this workload module and backend loaded (after prewarm(), and again after each
   * job), so a job starts without paying for loading TensorFlow.js: most of a reassigned job's recovery time.
   */
  warm?: WarmSpec;
}

/** One worker thread per job; with `warm`, the next job's thread is started (and loaded) ahead of the job. */
export function createWorkerRunner(options: WorkerRunnerOptions = {}): JobRunner {
  let spare: { worker: Worker; key: string } | undefined;
  let closed = false;

  const spawn = (data: WorkerData): Worker => {
    const worker = new Worker(bootstrapFor(data), {
      eval: true,
      execArgv: [],
      workerData: data,
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
    return worker;
  };

  const prewarm = (): void => {
    if (options.warm === undefined || spare !== undefined || closed) return;
    const worker = spawn({ warm: options.warm });
    // An idle spare must not keep the agent process alive; a job's worker is ref'd again when it is handed out.
    worker.unref();
    worker.on('error', (error) => options.log?.(`spare worker failed: ${error.message}`));
    worker.once('exit', () => {
      if (spare?.worker === worker) spare = undefined;
    });
    spare = { worker, key: warmKey(options.warm) };
  };

  /** The spare when it was loaded for this job's module and backend, else a fresh worker with the job. */
  const workerFor = (start: WorkerStart): Worker => {
    const data = startMessage(start);
    const ready = spare;
    if (ready !== undefined && ready.key === warmKey(start)) {
      spare = undefined;
      ready.worker.ref();
      ready.worker.postMessage({ type: 'start', start: data } satisfies ToWorker);
      return ready.worker;
    }
    return spawn({ start: data });
  };

  return {
    prewarm,
    async close(): Promise<void> {
      closed = true;
      const worker = spare?.worker;
      spare = undefined;
      if (worker !== undefined) await worker.terminate();
    },
    start(start: WorkerStart, events: JobEvents): JobHandle {
      const worker = workerFor(start);
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
        // The job's thread is gone (and its memory with it): load the next one while the agent waits.
        prewarm();
        if (terminated) return;
        if (crash === undefined && code !== 0)
          crash = new WorkerCrashedError(`training worker exited with code ${code}`);
        events.onExit(crash);
      });
      return {
        requestCheckpoint(requestId: number, stop = false): void {
          if (!exited && !terminated) worker.postMessage({ type: 'checkpoint', requestId, stop } satisfies ToWorker);
        },
        send(message: ToWorker, transfer: ArrayBuffer[] = []): void {
          if (!exited && !terminated) worker.postMessage(message, transfer);
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
        requestCheckpoint(requestId: number, stop = false): void {
          setImmediate(() => handler?.({ type: 'checkpoint', requestId, stop }));
        },
        send(message: ToWorker): void {
          setImmediate(() => handler?.(message));
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
