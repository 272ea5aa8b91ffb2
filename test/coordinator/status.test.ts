import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunId, StatusReply } from '../../protocol/messages.ts';
import { formatStatus, schedulerTasksFromRunDir, statusFromCoordinator } from '../../coordinator/status.ts';
import { clientCurve, initKeys, loadClusterKeys, serverCurve } from '../../protocol/keys.ts';
import { bindServer } from '../../protocol/zmq-transport.ts';
import { tempDir } from './helpers.ts';

const empty: StatusReply = { type: 'status', runId: 'r1' as RunId, experiment: 'x', jobs: [], agents: [] };

void test('status shows the scheduler state of each batch task written by the launcher', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  mkdirSync(join(dir, 'launch'));
  writeFileSync(
    join(dir, 'launch', 'tasks.json'),
    JSON.stringify({
      at: '2026-11-23T16:00:00Z',
      jobName: 'pe-arena-r1',
      tasks: [
        { launcherId: '12_0', kind: 'initial', state: 'running', schedulerState: 'RUNNING', host: 'node1' },
        { launcherId: '12_1', kind: 'initial', state: 'queued', schedulerState: 'PENDING' },
        { bogus: true },
      ],
    }),
  );
  const tasks = schedulerTasksFromRunDir(dir);
  assert.deepEqual(
    tasks.map((t) => t.launcherId),
    ['12_0', '12_1'],
  );
  const text = formatStatus(empty, tasks);
  assert.match(text, /scheduler task/);
  assert.match(text, /12_0\s+initial\s+running\s+RUNNING\s+node1/);
  assert.match(text, /12_1\s+initial\s+queued\s+PENDING\s+-/);
});

void test('a run without a batch launcher, or with a damaged tasks.json, shows no scheduler tasks and says why', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  assert.deepEqual(schedulerTasksFromRunDir(dir), []);
  mkdirSync(join(dir, 'launch'));
  writeFileSync(join(dir, 'launch', 'tasks.json'), '{"tasks": [');
  const warnings: string[] = [];
  assert.deepEqual(
    schedulerTasksFromRunDir(dir, (l) => warnings.push(l)),
    [],
  );
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? '', /tasks\.json: unreadable/);
  assert.doesNotMatch(formatStatus(empty), /scheduler task/);
});

void test('status tcp:// reaches a coordinator that runs with CURVE only with its keys, and says so without', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const pair = await loadClusterKeys((await initKeys(join(dir, 'keys'))).dir);
  const server = await bindServer({ address: 'tcp://127.0.0.1:0', curve: serverCurve(pair) });
  t.after(() => server.close());
  const reply: StatusReply = {
    ...empty,
    schedulerTasks: [{ launcherId: '9_0', kind: 'initial', state: 'queued', schedulerState: 'PENDING' }],
  };
  void (async () => {
    for await (const item of server.inbound())
      if (item.kind === 'message' && item.message.type === 'status_request') await server.send(item.from, reply);
  })();
  const status = await statusFromCoordinator(server.address, { curve: clientCurve(pair), timeoutMs: 10_000 });
  assert.deepEqual(status.schedulerTasks, reply.schedulerTasks);
  await assert.rejects(
    statusFromCoordinator(server.address, { timeoutMs: 500 }),
    /no answer from tcp:\/\/127\.0\.0\.1:\d+ within 500 ms \(a coordinator with CURVE on answers only with --keys-dir\)/,
  );
});
