// Real agent processes on real ZeroMQ sockets: SIGTERM (once, or twice at once) checkpoints at the current step,
// stops training, uploads, waits for the ack (bounded by --drain-timeout-ms) and leaves with bye and exit 0; a coordinator that disappears makes the agent exit 3 after its death timeout, worker and all.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withDeadline } from '../../protocol/deadline.ts';
import { bindServer } from '../../protocol/zmq-transport.ts';
import type { AgentToCoordinator, JobSpec } from '../../protocol/messages.ts';
import type { PeerId, ServerTransport } from '../../protocol/transport.ts';
import { metricPoints } from '../../protocol/metric-columns.ts';
import { readFakeCheckpoint } from './fixtures/fake-workload.ts';
import { ChunkUploads } from './chunk-uploads.ts';
import { FAKE_WORKLOAD, makeSpec, welcomeAndAssign } from './helpers.ts';

const AGENT_MAIN = fileURLToPath(new URL('./fixtures/agent-main.ts', import.meta.url));
const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

interface Stub {
  server: ServerTransport;
  received: AgentToCoordinator[];
  /** For each checkpoint_ack sent: how many messages had been received by then. */
  ackedAfter: number[];
  waitFor(p: (m: AgentToCoordinator) => boolean, limitMs: number): Promise<AgentToCoordinator>;
  done: Promise<void>;
}

interface StubOptions {
  /** Hold every checkpoint_ack this long (real ms), as a coordinator writing a big checkpoint does. */
  ackDelayMs?: number;
  /** false: never acknowledge (the agent's drain must give up on its own). */
  ack?: boolean;
}

/** A coordinator that welcomes, assigns `spec`, acks heartbeats and acks every complete upload. */
async function stub(spec: JobSpec, options: StubOptions = {}): Promise<Stub> {
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const received: AgentToCoordinator[] = [];
  const ackedAfter: number[] = [];
  const uploads = new ChunkUploads();
  const done = (async () => {
    for await (const inbound of server.inbound()) {
      if (inbound.kind !== 'message') continue;
      const m = inbound.message;
      const peer: PeerId = inbound.from;
      received.push(m);
      try {
        if (m.type === 'hello') {
          await welcomeAndAssign(server, peer, m, spec, 'run-proc');
        } else if (m.type === 'heartbeat') {
          await server.send(peer, { type: 'heartbeat_ack', seq: m.seq, time: Date.now() });
        } else if (m.type === 'checkpoint_chunk') {
          const complete = uploads.add(m);
          if (complete !== undefined && options.ack !== false) {
            const send = async (): Promise<void> => {
              ackedAfter.push(received.length);
              await server.send(peer, complete.ack);
            };
            if (options.ackDelayMs === undefined) await send();
            else setTimeout(() => void send().catch(() => undefined), options.ackDelayMs);
          }
        }
      } catch {
        // the agent may be gone already; the test checks what arrived
      }
    }
  })();
  return {
    server,
    received,
    ackedAfter,
    done,
    async waitFor(p, limitMs) {
      const deadline = Date.now() + limitMs;
      for (;;) {
        const hit = received.find(p);
        if (hit !== undefined) return hit;
        if (Date.now() > deadline)
          throw new Error(`not received within ${limitMs} ms; got ${received.map((m) => m.type).join(',')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

/** The highest metric step among these messages. */
function lastMetricStep(messages: readonly AgentToCoordinator[]): number {
  let last = 0;
  for (const m of messages) if (m.type === 'metrics') for (const p of metricPoints(m)) last = Math.max(last, p.step);
  return last;
}

function startAgent(
  address: string,
  logFile: string,
  deathTimeoutMs?: number,
  env: Record<string, string> = {},
): { child: ChildProcess; exit: Promise<number | null>; stderr: () => string } {
  const args = [
    '--import',
    'tsx',
    AGENT_MAIN,
    address,
    FAKE_WORKLOAD,
    logFile,
    ...(deathTimeoutMs === undefined ? [] : [String(deathTimeoutMs)]),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exit, stderr: () => err };
}

async function waitUntil(what: string, limitMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return withDeadline(p, ms, () => new Error(`${what}: not within ${ms} ms`));
}

const longJob = makeSpec(
  { training: { ...makeSpec().training, steps: 1_000_000 }, checkpointEvery: 1_000_000 },
  { stepDelayMs: 5 },
);

/** A stub coordinator assigning longJob, an agent process dialling it, and a log directory; gone after the test. */
async function agentProcess(
  t: TestContext,
  deathTimeoutMs?: number,
  env: Record<string, string> = {},
  stubOptions: StubOptions = {},
): Promise<{ s: Stub; agent: ReturnType<typeof startAgent>; log: () => Promise<string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'pe-agent-'));
  const s = await stub(longJob, stubOptions);
  const agent = startAgent(s.server.address, join(dir, 'agent.log'), deathTimeoutMs, env);
  t.after(async () => {
    agent.child.kill('SIGKILL');
    await s.server.close();
    await s.done;
    await rm(dir, { recursive: true, force: true });
  });
  return { s, agent, log: () => readFile(join(dir, 'agent.log'), 'utf8') };
}

/**
 * After the drain: a checkpoint uploaded at or past `reached`, acknowledged before bye, and no metric past the
 * checkpoint's step before bye (the worker trained no further: a resume would repeat those steps).
 */
function assertDrainedAt(s: Stub, reached: number): void {
  const chunks = s.received.filter((m) => m.type === 'checkpoint_chunk');
  assert.equal(chunks.length, 1, 'one checkpoint was uploaded (no periodic one is due)');
  const chunk = chunks[0]!;
  assert.ok(chunk.type === 'checkpoint_chunk' && chunk.kind === 'checkpoint');
  const step = readFakeCheckpoint(chunk.data).step;
  assert.ok(step >= reached, `checkpointed at step ${step}, the metrics had reached ${reached} before the signal`);
  const bye = s.received.findIndex((m) => m.type === 'bye');
  assert.ok(bye > s.received.indexOf(chunk), 'bye after the upload');
  assert.ok(
    s.ackedAfter.some((n) => n <= bye),
    'the checkpoint was acknowledged before the agent said bye',
  );
  assert.equal(lastMetricStep(s.received.slice(0, bye)), step, 'the metrics end exactly at the checkpoint');
}

void test(
  'SIGTERM: the agent checkpoints its job at the current step, trains no further, waits for the ack, says bye and exits 0',
  { timeout: 30_000 },
  async (t) => {
    // The ack takes a second: a worker still training meanwhile would stream steps past the checkpoint.
    const { s, agent, log } = await agentProcess(t, undefined, {}, { ackDelayMs: 1_000 });
    await s.waitFor((m) => m.type === 'metrics' && lastMetricStep([m]) >= 20, 15_000);
    const reached = lastMetricStep(s.received);
    agent.child.kill('SIGTERM');
    const code = await within(agent.exit, 10_000, 'agent exit');
    assert.equal(code, 0, agent.stderr());
    assertDrainedAt(s, reached);
    assert.match(await log(), /drain checkpoint acknowledged/);
  },
);

void test(
  'SIGTERM twice at once (a scheduler signalling every process, a relayed Ctrl-C) is one drain, not a stop without checkpoint',
  { timeout: 30_000 },
  async (t) => {
    // The ack takes two seconds, so the second signal lands while the drain waits for it.
    const { s, agent, log } = await agentProcess(t, undefined, {}, { ackDelayMs: 2_000 });
    await s.waitFor((m) => m.type === 'metrics', 15_000);
    const reached = lastMetricStep(s.received);
    agent.child.kill('SIGTERM');
    // Two kill()s in a row would merge into one pending signal: send the second once the first was handled.
    await waitUntil('the first signal handled', 10_000, async () => /checkpointing and draining/.test(await log()));
    agent.child.kill('SIGTERM');
    const code = await within(agent.exit, 10_000, 'agent exit');
    assert.equal(code, 0, agent.stderr());
    assertDrainedAt(s, reached);
    const text = await log();
    assert.match(text, /signal again within the same press/);
    assert.match(text, /drain checkpoint acknowledged/);
  },
);

void test(
  'pe-arena agent --drain-timeout-ms: a drain whose checkpoint is never acknowledged gives up after the bound and exits 0',
  { timeout: 30_000 },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pe-agent-'));
    const s = await stub(longJob, { ack: false });
    const logFile = join(dir, 'agent.log');
    const args = ['agent', '--coordinator', s.server.address, '--workload-module', FAKE_WORKLOAD];
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', CLI, ...args, '--log-file', logFile, '--drain-timeout-ms', '1500'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    t.after(async () => {
      child.kill('SIGKILL');
      await s.server.close();
      await s.done;
      await rm(dir, { recursive: true, force: true });
    });
    await s.waitFor((m) => m.type === 'metrics', 20_000);
    child.kill('SIGTERM');
    assert.equal(await within(exit, 15_000, 'agent exit'), 0);
    assert.ok(
      s.received.some((m) => m.type === 'checkpoint_chunk'),
      'the checkpoint went up',
    );
    assert.ok(
      s.received.some((m) => m.type === 'bye'),
      'and it still said bye',
    );
    assert.match(await readFile(logFile, 'utf8'), /no acknowledged checkpoint \(timeout\)/);
  },
);

void test(
  'coordinator gone: the agent exits 3 after its death timeout, with one line on stderr',
  { timeout: 30_000 },
  async (t) => {
    const { s, agent } = await agentProcess(t, 1_500);
    await s.waitFor((m) => m.type === 'metrics', 15_000);
    await s.server.close();
    const code = await within(agent.exit, 15_000, 'agent exit');
    assert.equal(code, 3);
    assert.match(agent.stderr(), /coordinator gone/);
    assert.equal(agent.stderr().trim().split('\n').length, 1);
  },
);

void test(
  'walltime: the agent checkpoints and leaves a margin before its allocation ends, without a signal',
  { timeout: 45_000 },
  async (t) => {
    const start = Math.floor(Date.now() / 1000);
    // Ends 60 s after start with a 48 s margin: drain about 12 s in, long after the job is running (even on a
    // loaded machine: the drain stops the worker, so a job that had not started would send no metrics at all).
    const { s, agent, log } = await agentProcess(t, undefined, {
      PE_ARENA_JOB_START: String(start),
      PE_ARENA_WALLTIME_S: '60',
      PE_ARENA_WALLTIME_MARGIN_S: '48',
    });
    const code = await within(agent.exit, 30_000, 'agent exit');
    assert.equal(code, 0, agent.stderr());
    const types = s.received.map((m) => m.type);
    assert.ok(types.includes('metrics'), 'it trained before the drain');
    assert.ok(types.includes('checkpoint_chunk') && types.indexOf('checkpoint_chunk') < types.indexOf('bye'));
    const text = await log();
    assert.match(text, /walltime known/);
    assert.match(text, /walltime: allocation ends at/);
  },
);
