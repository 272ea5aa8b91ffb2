import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PeArenaError, ProtocolError, fromWireError, toWireError } from '../../protocol/errors.ts';
import { CoordinatorError } from '../../coordinator/errors.ts';
import { AgentError, WorkerCrashedError } from '../../node-agent/errors.ts';
import { DataError } from '../../src/data/errors.ts';
import { EvalError } from '../../src/eval/errors.ts';
import { ModelError } from '../../src/model/errors.ts';
import { ReportError } from '../../src/report/errors.ts';
import { ServeError } from '../../src/serve/errors.ts';
import { TrainError, NonFiniteLossError } from '../../src/train/errors.ts';

void test("every folder's errors derive from the one PeArenaError, not retryable unless they say so", () => {
  const bases = [
    new ProtocolError('p'),
    new CoordinatorError('c'),
    new AgentError('a'),
    new DataError('d'),
    new EvalError('e'),
    new ModelError('m'),
    new ReportError('r'),
    new ServeError('s'),
    new TrainError('t'),
  ];
  for (const error of bases) {
    assert.ok(error instanceof PeArenaError, error.name);
    assert.equal(error.retryable, false, error.name);
  }
  assert.equal(new WorkerCrashedError('gone').retryable, true);
  const cause = new Error('root');
  assert.equal(new CoordinatorError('wrapped', { cause }).cause, cause);
});

void test('an error crosses the wire with its name, stack and retryable, and comes back the same', () => {
  const error = new NonFiniteLossError(12, Number.NaN);
  const wire = toWireError(error);
  assert.equal(wire.name, 'NonFiniteLossError');
  assert.equal(wire.retryable, false);
  assert.equal(wire.stack, error.stack);
  const back = fromWireError(wire);
  assert.equal(back.name, 'NonFiniteLossError');
  assert.equal(back.message, error.message);
  assert.equal(back.retryable, false);
  assert.equal(back.stack, error.stack);
  // Not one of ours (a bug, a library's error): another attempt may not hit it.
  assert.equal(toWireError(new TypeError('x is undefined')).retryable, true);
  assert.equal(toWireError('a string').retryable, true);
});
