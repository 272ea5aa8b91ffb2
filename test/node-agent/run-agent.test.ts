// runAgent's own duties: compile options (bad ones exit 1 with a line naming the field), print the reason of a
// version reject and exit 2, and the backend probe that fills hello's backend.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryNetwork } from '../../protocol/memory-transport.ts';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import { AGENT_EXIT } from '../../node-agent/agent-config.ts';
import { compileAgentOptions, runAgent } from '../../node-agent/run.ts';
import { probeBackend } from '../../node-agent/backend-probe.ts';
import { AgentConfigError } from '../../node-agent/errors.ts';
import { FAKE_WORKLOAD, ScriptedCoordinator, silentLogger } from './helpers.ts';

void test('options are compiled once: defaults filled, bad values named', () => {
  const c = compileAgentOptions({
    coordinator: 'tcp://head:5555',
    workloadModule: 'test/node-agent/fixtures/fake-workload.ts',
  });
  assert.equal(c.deathTimeoutMs, 60_000);
  assert.equal(c.backend, 'auto');
  assert.match(c.workloadModule, /^file:\/\/.*fake-workload\.ts$/);
  assert.ok(c.agentId.length > 0);
  assert.throws(
    () => compileAgentOptions({ coordinator: 'head:5555' }),
    (e: unknown) => e instanceof AgentConfigError && /coordinator/.test(e.message),
  );
  assert.throws(() => compileAgentOptions({ coordinator: 'tcp://h:1', deathTimeoutMs: -1 }), /deathTimeoutMs/);
  assert.throws(() => compileAgentOptions({ coordinator: 'tcp://h:1', backend: 'cuda' as never }), /backend/);
});

void test('runAgent exits 1 with one line on stderr for a bad address', { timeout: 30_000 }, async () => {
  const lines: string[] = [];
  const code = await runAgent({
    coordinator: 'nonsense',
    stderr: { write: (l: string) => lines.push(l) },
    handleSignals: false,
  });
  assert.equal(code, AGENT_EXIT.fatal);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /coordinator: expected an address/);
});

void test(
  'runAgent rejected for its version exits 2 and prints the reason naming both versions',
  { timeout: 30_000 },
  async () => {
    const network = new MemoryNetwork();
    const coordinator = new ScriptedCoordinator(network.listen('mem://c'));
    const lines: string[] = [];
    const running = runAgent({
      coordinator: 'mem://c',
      transport: network.connect('mem://c'),
      logger: silentLogger,
      workloadModule: FAKE_WORKLOAD,
      handleSignals: false,
      stderr: { write: (l: string) => lines.push(l) },
    });
    try {
      const hello = await coordinator.next('hello');
      await coordinator.send({
        type: 'reject',
        reason: `protocol version mismatch: the coordinator speaks version 99, agent ${hello.agentId} speaks version ${PROTOCOL_VERSION}`,
        version: 99,
      });
      assert.equal(await running, AGENT_EXIT.rejected);
      assert.equal(lines.length, 1);
      assert.match(lines[0]!, new RegExp(`version 99.*version ${PROTOCOL_VERSION}`));
    } finally {
      await coordinator.close();
    }
  },
);

void test('the backend probe reports a backend that loads here', { timeout: 60_000 }, async () => {
  const probe = await probeBackend(50_000);
  assert.ok(probe.ok, probe.ok ? '' : probe.reason);
  assert.ok(['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'].includes(probe.name));
});
