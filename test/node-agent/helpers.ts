// Shared pieces for the agent tests: a job spec, a compiled agent config, and a scripted coordinator end on the
// memory transport that records what the agent sends and lets a test wait for it (always bounded).
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import { MemoryNetwork, type MemoryServer } from '../../protocol/memory-transport.ts';
import { SimulatedClock } from '../../protocol/clock.ts';
import { asJobId, asRunId, asAgentId } from '../../protocol/ids.ts';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import type { AgentId, AgentToCoordinator, CoordinatorToAgent, JobSpec } from '../../protocol/messages.ts';
import type { PeerId, ServerTransport } from '../../protocol/transport.ts';
import { AGENT_DEFAULTS, type AgentConfig } from '../../node-agent/agent-config.ts';
import { NodeAgent } from '../../node-agent/agent.ts';
import { createInProcessRunner, type JobRunner } from '../../node-agent/job-runner.ts';

export const FAKE_WORKLOAD = new URL('./fixtures/fake-workload.ts', import.meta.url).href;
export const silentLogger = pino({ level: 'silent' });

export function makeSpec(overrides: Partial<JobSpec> = {}, params: JobSpec['task']['params'] = {}): JobSpec {
  return {
    jobId: asJobId('rope-addition-s1'),
    runId: asRunId('run-test'),
    encoding: 'rope',
    task: { name: 'addition', params: { minDigits: 1, maxDigits: 2, ...params } },
    seed: 1,
    preset: 'tiny',
    model: { layers: 1, dModel: 16, heads: 2, ffnDim: 32, dropout: 0, maxLen: 32 },
    training: { steps: 120, batchSize: 8, learningRate: 0.001, warmupSteps: 0, weightDecay: 0, clipNorm: 1 },
    evaluation: { samples: 4 },
    checkpointEvery: 50,
    ...overrides,
  };
}

export function makeConfig(overrides: Partial<AgentConfig> = {}): AgentConfig {
  return {
    agentId: asAgentId('agent-test-1'),
    host: 'test-host',
    pid: 4242,
    backend: 'cpu',
    devices: [{ kind: 'cpu', name: 'test cpu' }],
    workloadModule: FAKE_WORKLOAD,
    deathTimeoutMs: 60_000,
    maxMetricBuffer: 10_000,
    metricsFlushMs: AGENT_DEFAULTS.metricsFlushMs,
    metricsBatch: AGENT_DEFAULTS.metricsBatch,
    helloRetryMs: AGENT_DEFAULTS.helloRetryMs,
    ackTimeoutMs: AGENT_DEFAULTS.ackTimeoutMs,
    fetchTimeoutMs: AGENT_DEFAULTS.fetchTimeoutMs,
    drainTimeoutMs: AGENT_DEFAULTS.drainTimeoutMs,
    sliceSteps: 10,
    transferRetries: AGENT_DEFAULTS.transferRetries,
    chunkBytes: AGENT_DEFAULTS.chunkBytes,
    closeGraceMs: 0,
    ...overrides,
  };
}

/** Let setImmediate-delivered messages and worker events through (the SimulatedClock does not). */
export async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** The coordinator's end of a memory network, driven by hand. */
export class ScriptedCoordinator {
  readonly received: AgentToCoordinator[] = [];
  peer: PeerId | undefined;
  private cursor = 0;
  private readonly loop: Promise<void>;

  constructor(readonly server: MemoryServer) {
    this.loop = (async () => {
      for await (const inbound of server.inbound()) {
        if (inbound.kind !== 'message') continue;
        this.peer = inbound.from;
        this.received.push(inbound.message);
      }
    })();
  }

  send(message: CoordinatorToAgent): Promise<void> {
    if (this.peer === undefined) throw new Error('no agent has spoken yet');
    return this.server.send(this.peer, message);
  }

  /** Received messages of one type. */
  all<T extends AgentToCoordinator['type']>(type: T): Extract<AgentToCoordinator, { type: T }>[] {
    return this.received.filter((m): m is Extract<AgentToCoordinator, { type: T }> => m.type === type);
  }

  /**
   * The next message of this type after the ones already taken by next(); waits in real time (bounded) while
   * letting the SimulatedClock stand still. Other types are skipped over but stay in `received`.
   */
  async next<T extends AgentToCoordinator['type']>(
    type: T,
    options: { limitMs?: number; match?: (m: Extract<AgentToCoordinator, { type: T }>) => boolean } = {},
  ): Promise<Extract<AgentToCoordinator, { type: T }>> {
    const deadline = Date.now() + (options.limitMs ?? 5_000);
    for (;;) {
      while (this.cursor < this.received.length) {
        const m = this.received[this.cursor++]!;
        if (
          m.type === type &&
          (options.match === undefined || options.match(m as Extract<AgentToCoordinator, { type: T }>))
        ) {
          return m as Extract<AgentToCoordinator, { type: T }>;
        }
      }
      if (Date.now() > deadline)
        throw new Error(
          `no ${type} within ${options.limitMs ?? 5_000} ms; got ${this.received.map((m) => m.type).join(',')}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }

  async close(): Promise<void> {
    await this.server.close();
    await this.loop;
  }
}

export interface Harness {
  clock: SimulatedClock;
  coordinator: ScriptedCoordinator;
  agent: NodeAgent;
  close(): Promise<void>;
}

let counter = 0;

export function startHarness(config: Partial<AgentConfig> = {}, runner: JobRunner = createInProcessRunner()): Harness {
  const network = new MemoryNetwork();
  const address = `mem://coordinator-${++counter}`;
  const coordinator = new ScriptedCoordinator(network.listen(address));
  const clock = new SimulatedClock(1_000_000);
  const agent = new NodeAgent(makeConfig(config), {
    transport: network.connect(address),
    clock,
    runner,
    logger: silentLogger,
  });
  agent.start();
  return {
    clock,
    coordinator,
    agent,
    async close() {
      await agent.stop('test over');
      await coordinator.close();
    },
  };
}

/** A harness that is closed after the test, pass or fail. */
export function agentHarness(t: TestContext, config: Partial<AgentConfig> = {}, runner?: JobRunner): Harness {
  const h = startHarness(config, runner);
  t.after(() => h.close());
  return h;
}

/** The welcome a coordinator sends to this agent id. */
export async function sendWelcome(h: Harness, agentId: AgentId, heartbeatIntervalMs = 1_000): Promise<void> {
  await h.coordinator.send({
    type: 'welcome',
    version: PROTOCOL_VERSION,
    agentId,
    runId: asRunId('run-test'),
    heartbeatIntervalMs,
  });
  await turns();
}

/** hello -> welcome, as a coordinator would answer. */
export async function welcome(h: Harness, heartbeatIntervalMs = 1_000): Promise<void> {
  const hello = await h.coordinator.next('hello');
  await sendWelcome(h, hello.agentId, heartbeatIntervalMs);
}

/** Acknowledge every upload the agent completes (all chunks of a checkpoint id seen), until stopped. */
export function autoAck(
  h: Harness,
  decide: (checkpointId: string, kind: string, n: number) => { ok: boolean; reason?: string } = () => ({ ok: true }),
): () => void {
  let stopped = false;
  const seen = new Map<string, Set<number>>();
  const uploads = new Map<string, number>();
  let scanned = 0;
  const deadline = Date.now() + 30_000; // never outlive a test that forgets to stop it
  void (async () => {
    while (!stopped && Date.now() < deadline) {
      while (scanned < h.coordinator.received.length) {
        const m = h.coordinator.received[scanned++]!;
        if (m.type !== 'checkpoint_chunk') continue;
        const set = seen.get(m.checkpointId) ?? new Set<number>();
        seen.set(m.checkpointId, set);
        set.add(m.index);
        if (set.size === m.count) {
          seen.delete(m.checkpointId);
          const n = (uploads.get(m.checkpointId) ?? 0) + 1;
          uploads.set(m.checkpointId, n);
          const verdict = decide(m.checkpointId, m.kind, n);
          await h.coordinator
            .send({
              type: 'checkpoint_ack',
              jobId: m.jobId,
              epoch: m.epoch,
              checkpointId: m.checkpointId,
              ok: verdict.ok,
              ...(verdict.reason === undefined ? {} : { reason: verdict.reason }),
            })
            .catch(() => undefined);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  return () => {
    stopped = true;
  };
}

/** autoAck for the length of the test. */
export function acking(t: TestContext, h: Harness, decide?: Parameters<typeof autoAck>[1]): void {
  t.after(autoAck(h, decide));
}

/** How the real-socket tests' stub coordinators answer a hello: welcome (heartbeats every 200 ms), then assign. */
export async function welcomeAndAssign(
  server: ServerTransport,
  peer: PeerId,
  hello: { agentId: AgentId },
  spec: JobSpec,
  runId: string,
): Promise<void> {
  await server.send(peer, {
    type: 'welcome',
    version: PROTOCOL_VERSION,
    agentId: hello.agentId,
    runId: asRunId(runId),
    heartbeatIntervalMs: 200,
  });
  await server.send(peer, { type: 'assign', job: spec, attempt: 1, epoch: 1 });
}
