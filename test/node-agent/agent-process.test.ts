// Real agent processes on real ZeroMQ sockets: SIGTERM checkpoints, uploads, waits for the ack and leaves with
// bye and exit 0; a coordinator that disappears makes the agent exit 3 after its death timeout, worker and all.
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
import { readFakeCheckpoint } from './fixtures/fake-workload.ts';
import { ChunkUploads } from './chunk-uploads.ts';
import { FAKE_WORKLOAD, makeSpec, welcomeAndAssign } from './helpers.ts';

const AGENT_MAIN = fileURLToPath(new URL('./fixtures/agent-main.ts', import.meta.url));

interface Stub {
  server: ServerTransport;
  received: AgentToCoordinator[];
  waitFor(p: (m: AgentToCoordinator) => boolean, limitMs: number): Promise<AgentToCoordinator>;
  done: Promise<void>;
}

/** A coordinator that welcomes, assigns `spec`, acks heartbeats and acks every complete upload. */
async function stub(spec: JobSpec): Promise<Stub> {
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const received: AgentToCoordinator[] = [];
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
          if (complete !== undefined) await server.send(peer, complete.ack);
        }
      } catch {
        // the agent may be gone already; the test checks what arrived
      }
    }
  })();
  return {
    server,
    received,
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
): Promise<{ s: Stub; agent: ReturnType<typeof startAgent>; log: () => Promise<string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'pe-agent-'));
  const s = await stub(longJob);
  const agent = startAgent(s.server.address, join(dir, 'agent.log'), deathTimeoutMs, env);
  t.after(async () => {
    agent.child.kill('SIGKILL');
    await s.server.close();
    await s.done;
    await rm(dir, { recursive: true, force: true });
  });
  return { s, agent, log: () => readFile(join(dir, 'agent.log'), 'utf8') };
}

void test(
  'SIGTERM: the agent checkpoints its job, waits for the ack, sends bye and exits 0',
  { timeout: 30_000 },
  async (t) => {
    const { s, agent, log } = await agentProcess(t);
    await s.waitFor((m) => m.type === 'metrics', 15_000);
    agent.child.kill('SIGTERM');
    const code = await within(agent.exit, 10_000, 'agent exit');
    assert.equal(code, 0, agent.stderr());
    const chunks = s.received.filter((m) => m.type === 'checkpoint_chunk');
    assert.ok(chunks.length >= 1, 'a checkpoint was uploaded');
    const first = chunks[0]!;
    assert.ok(first.type === 'checkpoint_chunk' && first.kind === 'checkpoint');
    assert.ok(readFakeCheckpoint(first.data).step > 0);
    const types = s.received.map((m) => m.type);
    assert.ok(types.includes('bye'));
    assert.ok(types.indexOf('checkpoint_chunk') < types.indexOf('bye'));
    assert.match(await log(), /drain checkpoint acknowledged/);
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
  { timeout: 30_000 },
  async (t) => {
    const start = Math.floor(Date.now() / 1000);
    // Ends 60 s after start with a 54 s margin: drain about 6 s in, long after the job is running.
    const { s, agent, log } = await agentProcess(t, undefined, {
      PE_ARENA_JOB_START: String(start),
      PE_ARENA_WALLTIME_S: '60',
      PE_ARENA_WALLTIME_MARGIN_S: '54',
    });
    const code = await within(agent.exit, 20_000, 'agent exit');
    assert.equal(code, 0, agent.stderr());
    const types = s.received.map((m) => m.type);
    assert.ok(types.includes('metrics'), 'it trained before the drain');
    assert.ok(types.includes('checkpoint_chunk') && types.indexOf('checkpoint_chunk') < types.indexOf('bye'));
    const text = await log();
    assert.match(text, /walltime known/);
    assert.match(text, /walltime: allocation ends at/);
  },
);
