// Test helpers: a coordinator on the memory transport with a simulated clock, and scripted fake agents.
import { mkdtempSync, rmSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import type {
  AgentId,
  AgentToCoordinator,
  Assign,
  CheckpointId,
  CoordinatorToAgent,
  Evaluation,
  JobId,
  JobSpec,
  RunId,
} from '../../protocol/messages.ts';
import { MemoryNetwork } from '../../protocol/memory-transport.ts';
import { metricsMessage } from '../../protocol/metric-columns.ts';
import type { MemoryClient } from '../../protocol/memory-transport.ts';
import { SimulatedClock } from '../../protocol/clock.ts';
import { Coordinator } from '../../coordinator/coordinator.ts';
import type { CoordinatorOptions } from '../../coordinator/coordinator.ts';
import { chunkBlob } from '../../protocol/checkpoint-chunks.ts';
import { compileExperiment } from '../../coordinator/experiment.ts';
import type { Experiment } from '../../coordinator/experiment.ts';
import type { ReplayedRun } from '../../coordinator/journal.ts';
import type { AgentExit, Launcher } from '../../coordinator/launchers/types.ts';

/** Let setImmediate-based deliveries (the memory transport) run. */
export async function settle(turns = 8): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}

export function tempDir(prefix = 'pe-arena-coord-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function smallExperiment(
  overrides: Record<string, unknown> = {},
  cluster: Record<string, unknown> = {},
): Experiment {
  return compileExperiment(
    {
      name: 'logic',
      encodings: ['rope', 'nope'],
      tasks: [{ name: 'addition', params: { minDigits: 1, maxDigits: 2 } }],
      seeds: [1, 2],
      preset: 'tiny',
      training: { steps: 100 },
      evaluation: { samples: 10 },
      cluster: {
        heartbeatIntervalMs: 100,
        failureTimeoutMs: 1000,
        suspectAfterMs: 400,
        watchdogMs: 0,
        checkpointEvery: 10,
        maxAttempts: 3,
        ...cluster,
      },
      ...overrides,
    },
    'test.json',
    'run-test' as RunId,
  );
}

export interface Harness {
  network: MemoryNetwork;
  clock: SimulatedClock;
  coordinator: Coordinator;
  experiment: Experiment;
  runDir: string;
  /** Advance simulated time in small steps, letting messages flow between steps. */
  advance(ms: number, stepMs?: number): Promise<void>;
  agent(id: string): FakeAgent;
  close(): Promise<void>;
}

let addressCounter = 0;

export function startCoordinator(
  experiment: Experiment,
  runDir: string,
  options: {
    resume?: ReplayedRun;
    clock?: SimulatedClock;
    network?: MemoryNetwork;
    extra?: Partial<CoordinatorOptions>;
  } = {},
): Harness {
  const network = options.network ?? new MemoryNetwork();
  const clock = options.clock ?? new SimulatedClock(1_000_000);
  const address = `mem://coord-${++addressCounter}`;
  const transport = network.listen(address);
  const coordinator = new Coordinator({
    experiment,
    runDir,
    transport,
    clock,
    drainMs: 500,
    ...(options.resume === undefined ? {} : { resume: options.resume }),
    ...options.extra,
  });
  coordinator.start();
  const agents: FakeAgent[] = [];
  const h: Harness = {
    network,
    clock,
    coordinator,
    experiment,
    runDir,
    async advance(ms: number, stepMs = 50) {
      for (let t = 0; t < ms; t += stepMs) {
        await clock.advance(Math.min(stepMs, ms - t));
        await settle();
      }
    },
    agent(id: string) {
      const a = new FakeAgent(network.connect(address), id as AgentId);
      agents.push(a);
      return a;
    },
    async close() {
      // Drain without waiting on simulated time: advance the clock while stop() waits for byes.
      const stopping = coordinator.stop('test over');
      for (let i = 0; i < 50 && coordinator.state !== 'stopped'; i++) {
        await clock.advance(100);
        await settle();
      }
      await stopping;
      for (const a of agents) await a.close();
    },
  };
  return h;
}

/**
 * A coordinator in a fresh run directory, closed (and the directory removed) after the test, whatever its outcome.
 */
export function withCoordinator(
  t: TestContext,
  experiment: Experiment,
  options: Parameters<typeof startCoordinator>[2] = {},
): Harness {
  const { dir, cleanup } = tempDir();
  const h = startCoordinator(experiment, dir, options);
  t.after(async () => {
    await h.close();
    cleanup();
  });
  return h;
}

/** A launcher that starts nothing; `exit` reports a process or batch task gone, as a real launcher would. */
export function fakeLauncher(extra: Partial<Launcher> = {}): { launcher: Launcher; exit(exit: AgentExit): void } {
  let report: ((exit: AgentExit) => void) | undefined;
  const launcher: Launcher = {
    name: 'fake',
    start: async () => {},
    onExit: (l) => void (report = l),
    alive: () => undefined,
    stop: async () => {},
    ...extra,
  };
  return {
    launcher,
    exit(exit) {
      if (report === undefined) throw new Error('the coordinator did not listen for exits');
      report(exit);
    },
  };
}

export class FakeAgent {
  readonly received: CoordinatorToAgent[] = [];
  private seq = 0;
  private statusWaiters: (() => void)[] = [];
  autoBye = true;
  private readonly pump: Promise<void>;

  constructor(
    readonly client: MemoryClient,
    public agentId: AgentId,
  ) {
    this.pump = (async () => {
      for await (const inbound of client.inbound()) {
        if (inbound.kind !== 'message') continue;
        this.received.push(inbound.message);
        if (inbound.message.type === 'status') for (const w of this.statusWaiters.splice(0)) w();
        // Like a real agent: a shutdown is answered with bye.
        if (inbound.message.type === 'shutdown' && this.autoBye) {
          await this.send({ type: 'bye', agentId: this.agentId, reason: 'shutdown' }).catch(() => undefined);
        }
      }
    })();
  }

  send(message: AgentToCoordinator): Promise<void> {
    return this.client.send(message);
  }

  /**
   * A marker: asks for the status and waits for the reply. The coordinator answers in order, so whatever it sent
   * before has arrived once this resolves; "nothing arrived" is then a fact, not a guess after a sleep.
   */
  async sync(): Promise<void> {
    const answered = new Promise<void>((resolve) => this.statusWaiters.push(resolve));
    await this.send({ type: 'status_request', version: PROTOCOL_VERSION });
    await answered;
  }

  async hello(version = PROTOCOL_VERSION): Promise<void> {
    await this.send({
      type: 'hello',
      version,
      agentId: this.agentId,
      host: 'testhost',
      pid: 4242,
      backend: 'cpu',
      devices: [{ kind: 'cpu', name: 'test' }],
    });
    await settle();
  }

  async heartbeat(job?: { jobId: JobId; epoch: number; step: number }): Promise<void> {
    await this.send({
      type: 'heartbeat',
      agentId: this.agentId,
      seq: ++this.seq,
      time: 0,
      state: job ? 'busy' : 'idle',
      ...(job ?? {}),
    });
  }

  of<T extends CoordinatorToAgent['type']>(type: T): Extract<CoordinatorToAgent, { type: T }>[] {
    return this.received.filter((m): m is Extract<CoordinatorToAgent, { type: T }> => m.type === type);
  }

  lastAssign(): Assign | undefined {
    return this.of('assign').at(-1);
  }

  async metrics(jobId: JobId, epoch: number, fromStep: number, toStep: number): Promise<void> {
    const points = [];
    for (let s = fromStep; s <= toStep; s++)
      points.push({ step: s, loss: 1 / s, learningRate: 1e-3, gradNorm: 1, tokensPerSecond: 100, time: s });
    await this.send(metricsMessage(jobId, epoch, points));
  }

  /** Upload a blob in chunks; `corrupt` flips a byte in the first chunk's data after the sha was computed. */
  async upload(
    jobId: JobId,
    epoch: number,
    step: number,
    kind: 'checkpoint' | 'final',
    options: { id?: string; corrupt?: boolean; dropChunk?: number; chunkBytes?: number } = {},
  ): Promise<CheckpointId> {
    const blob = blobFor(jobId, step);
    const checkpointId = (options.id ?? `ck-${jobId}-${step}-${kind}`) as CheckpointId;
    const chunks = chunkBlob({ jobId, epoch, checkpointId, kind, step }, blob, options.chunkBytes ?? 64);
    for (const c of chunks) {
      if (c.index === options.dropChunk) continue;
      const data =
        options.corrupt && c.index === 0 ? Uint8Array.from(c.data, (b, i) => (i === 0 ? b ^ 0xff : b)) : c.data;
      await this.send({ ...c, data });
    }
    await settle();
    return checkpointId;
  }

  async result(spec: JobSpec, epoch: number): Promise<void> {
    await this.send({ type: 'job_result', jobId: spec.jobId, epoch, evaluation: evaluationFor(spec) });
    await settle();
  }

  async close(): Promise<void> {
    await this.client.close();
    await this.pump;
  }
}

/** A deterministic blob of a few hundred bytes, so chunking and sha256 have something to do. */
export function blobFor(jobId: string, step: number): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ jobId, step, pad: 'x'.repeat(300) }));
}

export function evaluationFor(spec: JobSpec, exactMatch = 0.5): Evaluation {
  return {
    jobId: spec.jobId,
    encoding: spec.encoding,
    task: spec.task.name,
    seed: spec.seed,
    backend: 'cpu',
    steps: spec.training.steps,
    wallTimeS: 1,
    parameters: 1000,
    tokensPerSecond: 100,
    exactMatch,
    symbolicAccuracy: exactMatch,
    stepAccuracy: null,
    perLength: { '1': { n: 5, exactMatch: 1 }, '2': { n: 5, exactMatch: exactMatch } },
    attentionEntropy: [[1]],
    errorTaxonomy: {},
    problems: [],
  };
}
