// GangCoordinator's logic on a simulated clock, with the context's services faked (the e2e tests in
// test/e2e/data-parallel.test.ts run the same paths with real agents): who is waited for in a reform, who is
// dropped, the fallback to the requeue, and reforms that make no progress.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimulatedClock } from '../../protocol/clock.ts';
import type { AgentId, CoordinatorToAgent, JobId } from '../../protocol/messages.ts';
import type { PeerId } from '../../protocol/transport.ts';
import type { AgentRecord, CoordinatorContext } from '../../coordinator/context.ts';
import { silentLog } from '../../coordinator/context.ts';
import { GangCoordinator } from '../../coordinator/gangs.ts';
import type { JournalEntry } from '../../coordinator/journal.ts';
import { Scheduler } from '../../coordinator/scheduler.ts';
import { smallExperiment } from './helpers.ts';

interface Fixture {
  gangs: GangCoordinator;
  clock: SimulatedClock;
  scheduler: Scheduler;
  agents: Map<AgentId, AgentRecord>;
  sent: { to: PeerId; message: CoordinatorToAgent }[];
  journal: JournalEntry[];
  requeued: string[];
  jobId: JobId;
}

function fixture(dataParallel: { ranks: number; minRanks?: number }, ids: string[]): Fixture {
  const experiment = smallExperiment(
    { encodings: ['rope'], seeds: [1] },
    { heartbeatIntervalMs: 1000, failureTimeoutMs: 5000, suspectAfterMs: 2000 },
  );
  const spec = { ...experiment.jobs[0]!, training: { ...experiment.jobs[0]!.training, dataParallel } };
  const clock = new SimulatedClock(10_000);
  const scheduler = new Scheduler([spec], 3, clock.now());
  const agents = new Map<AgentId, AgentRecord>();
  for (const id of ids)
    agents.set(id as AgentId, {
      agentId: id as AgentId,
      peer: `peer-${id}` as PeerId,
      host: 'h',
      pid: 1,
      backend: 'cpu',
      devices: [],
      state: 'busy',
      suspect: false,
      lastHeardAt: clock.now(),
      joinedAt: 0,
      jobId: spec.jobId,
    });
  const sent: Fixture['sent'] = [];
  const journal: JournalEntry[] = [];
  const requeued: string[] = [];
  const ctx = {
    experiment: { ...experiment, jobs: [spec] },
    runId: spec.runId,
    clock,
    log: silentLog,
    scheduler,
    store: { dropUploads: () => undefined },
    outbox: {
      record: (e: JournalEntry) => journal.push(e),
      send: (to: PeerId, message: CoordinatorToAgent) => sent.push({ to, message }),
    },
    lifecycle: () => 'running',
    emit: () => undefined,
    schedule: () => undefined,
    requeue: (jobId: JobId, reason: string) => {
      requeued.push(reason);
      scheduler.requeue(jobId);
    },
    failJob: () => undefined,
    checkFinished: () => undefined,
    gangMemberGone: () => false,
  } as unknown as CoordinatorContext;
  const gangs = new GangCoordinator(ctx, agents);
  const job = scheduler.assign(spec.jobId, ids[0] as AgentId, clock.now());
  job.state = 'running';
  gangs.start(job, ids as AgentId[]);
  return { gangs, clock, scheduler, agents, sent, journal, requeued, jobId: spec.jobId };
}

const generations = (f: Fixture): AgentId[][] =>
  f.journal.flatMap((e) => (e.type === 'gang_formed' ? [e.members] : []));

const ready = (f: Fixture, id: string, step: number, generation = 1): void =>
  f.gangs.onReady(f.agents.get(id as AgentId)!, {
    type: 'gang_ready',
    jobId: f.jobId,
    epoch: 1,
    generation,
    step,
    reason: 'peer gone',
  });

void test('a reform waits for members still heard from, not for a silent one, and keeps the rank order', async () => {
  const f = fixture({ ranks: 3, minRanks: 2 }, ['a', 'b', 'c']);
  assert.deepEqual(generations(f), [['a', 'b', 'c']]);
  assert.deepEqual(
    f.sent.map((s) => [s.to, s.message.type]),
    [['peer-a', 'gang_start']],
    'rank 0 is seated first; the others when it has bound',
  );
  f.gangs.onAddress(f.agents.get('a' as AgentId)!, {
    type: 'gang_address',
    jobId: f.jobId,
    epoch: 1,
    generation: 1,
    address: 'tcp://h:9',
  });
  const starts = f.sent.filter((s) => s.message.type === 'gang_start').map((s) => s.message);
  assert.deepEqual(
    starts.map((m) => (m.type === 'gang_start' ? [m.rank, m.ranks, m.rootAddress] : [])),
    [
      [0, 3, undefined],
      [1, 3, 'tcp://h:9'],
      [2, 3, 'tcp://h:9'],
    ],
  );
  // b dies silently: c notices first (its collective timed out); a is still heard from, so it is waited for.
  await f.clock.advance(900);
  f.agents.get('a' as AgentId)!.lastHeardAt = f.clock.now();
  f.agents.get('c' as AgentId)!.lastHeardAt = f.clock.now();
  ready(f, 'c', 120);
  assert.equal(generations(f).length, 1, 'a has not answered yet');
  assert.ok(
    f.sent.some((s) => s.to === 'peer-a' && s.message.type === 'gang_reform'),
    'the live members are asked to stop',
  );
  ready(f, 'a', 121);
  // b was last heard 900 ms ago: within 1.5 heartbeats, so still awaited...
  assert.equal(generations(f).length, 1);
  await f.clock.advance(800);
  // ...until it has been silent for longer.
  assert.deepEqual(generations(f).at(-1), ['a', 'c'], 'the survivors, in their old rank order');
  assert.ok(
    f.sent.some((s) => s.to === 'peer-b' && s.message.type === 'cancel'),
    'the dropped member is told, should it be alive',
  );
  assert.equal(f.agents.get('b' as AgentId)!.jobId, undefined, 'and freed');
  assert.deepEqual(f.requeued, []);
});

void test('fewer answers than minRanks: the job goes back to the queue and every seat is freed', async () => {
  const f = fixture({ ranks: 2, minRanks: 2 }, ['a', 'b']);
  f.gangs.memberGone('b' as AgentId, f.jobId, 'lost: no heartbeat');
  ready(f, 'a', 40);
  await f.clock.advance(100);
  assert.equal(f.requeued.length, 1);
  assert.match(f.requeued[0]!, /gang fell apart: 1 ranks left, minRanks is 2/);
  assert.equal(f.scheduler.get(f.jobId)?.state, 'pending');
  assert.equal(generations(f).length, 1, 'no second generation');
  assert.ok(
    f.sent.some((s) => s.to === 'peer-a' && s.message.type === 'cancel'),
    'the survivor is told',
  );
  assert.equal(f.agents.get('a' as AgentId)!.jobId, undefined, 'and is free for the requeued job');
  await f.clock.advance(1_000);
  assert.equal(f.requeued.length, 1, 'the gang acts no more once it fell apart');
});

void test('reforms that make no progress end in the requeue instead of looping', async () => {
  const f = fixture({ ranks: 2, minRanks: 1 }, ['a', 'b']);
  for (let round = 1; round <= 6 && f.requeued.length === 0; round++) {
    const generation = generations(f).length;
    for (const id of ['a', 'b']) f.agents.get(id as AgentId)!.lastHeardAt = f.clock.now();
    ready(f, 'a', 10, generation);
    ready(f, 'b', 10, generation);
    await f.clock.advance(60);
  }
  assert.equal(f.requeued.length, 1);
  assert.match(f.requeued[0]!, /reforms without progress/);
});

void test('a generation that never forms (rank 0 never binds) is reformed after the deadline', async () => {
  const f = fixture({ ranks: 2, minRanks: 1 }, ['a', 'b']);
  await f.clock.advance(61_000);
  f.gangs.tick();
  assert.ok(
    f.sent.some((s) => s.message.type === 'gang_reform'),
    'the members are asked to stand',
  );
});
