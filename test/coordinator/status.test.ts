import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunId, StatusReply } from '../../protocol/messages.ts';
import { formatStatus, schedulerTasksFromRunDir } from '../../coordinator/status.ts';
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
