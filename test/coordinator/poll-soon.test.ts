// An agent that leaves or is lost while the run goes on makes the coordinator ask a batch launcher to poll its
// scheduler now (pollSoon), so the replacement is not held up by the launcher's backed-off polling; agents that
// leave because the run is draining do not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fakeLauncher, settle, smallExperiment, withCoordinator } from './helpers.ts';

void test('a bye, a heartbeat timeout and a launcher exit each ask the launcher to poll soon; a drain does not', async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }));
  let polls = 0;
  const fake = fakeLauncher({ name: 'fake-batch', pollSoon: () => void polls++ });
  h.coordinator.attachLauncher(fake.launcher);

  const a = h.agent('agent-a');
  await a.hello();
  await a.sync();
  assert.equal(polls, 0, 'a join asks for nothing');
  await a.send({ type: 'bye', agentId: a.agentId, reason: 'walltime' });
  await a.sync();
  assert.equal(polls, 1, 'a bye');

  const b = h.agent('agent-b');
  await b.hello();
  await h.advance(1_500); // failureTimeoutMs is 1 s and b never heartbeats
  assert.ok(h.coordinator.events.some((e) => e.kind === 'lost' && e.agentId === b.agentId));
  assert.equal(polls, 2, 'a heartbeat timeout');

  const c = h.agent('agent-c');
  await c.hello();
  fake.exit({ pid: 4242, code: null, signal: 'SIGKILL' });
  await settle();
  assert.ok(h.coordinator.events.some((e) => e.kind === 'lost' && e.agentId === c.agentId));
  assert.equal(polls, 3, 'a launcher exit');

  const d = h.agent('agent-d');
  await d.hello();
  const stopping = h.coordinator.stop('test over');
  for (let i = 0; i < 50 && h.coordinator.state !== 'stopped'; i++) await h.advance(100);
  await stopping;
  assert.ok(
    h.coordinator.events.some((e) => e.kind === 'left' && e.agentId === d.agentId),
    'd said bye',
  );
  assert.equal(polls, 3, 'agents leaving a draining run ask for no poll');
});
