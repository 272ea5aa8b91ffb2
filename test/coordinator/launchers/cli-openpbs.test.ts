// The real CLI through the pbs launcher on the real OpenPBS of .ci/setup-openpbs.sh (commands in /opt/pbs/bin,
// named by the test profile's commandsDir): `pe-arena run <exp> --launcher pbs --cluster
// configs/clusters/test-openpbs.json --agents 2` submits one `qsub -J` array, both agents join with their subjob
// ids, the run completes, and afterwards qstat -x shows nothing of the run queued or running; so after Ctrl-C. After
// a kill -9 of the coordinator, `--resume` takes over the subjobs it left running and submits none. Skips, saying
// why, where /opt/pbs/bin/qstat is missing or its server does not answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tail } from '../../e2e/helpers.ts';
import {
  bothAgentsJoined,
  cliFixture,
  dataParallelScenario,
  jobNameOf,
  killAndResumeScenario,
  runCompletesScenario,
} from './cli-harness.ts';
import { openpbs } from './harness.ts';

const skip = openpbs.skipReason();

void test(
  'pe-arena run --launcher pbs on OpenPBS: 2 agents from one qsub -J array complete the run; qstat -x shows none left',
  { skip: skip ?? false, timeout: 90_000 },
  (t) => runCompletesScenario(t, openpbs),
);

void test(
  'Ctrl-C of a pbs run on OpenPBS: the coordinator drains, qdel-s its array, and qstat -x shows none of it left',
  { skip: skip ?? false, timeout: 90_000 },
  async (t) => {
    const fixture = cliFixture(t, openpbs);
    const run = fixture.startRun('cli-openpbs-ctrl-c', 400, 30_000);
    const found = await bothAgentsJoined(fixture, run);
    const name = jobNameOf(found);
    assert.ok(name !== undefined);
    assert.ok(openpbs.leftovers(name).length > 0, 'the array is running');
    run.child.kill('SIGINT');
    const exit = await run.exited;
    const out = run.output();
    assert.equal(exit.code, 130, `a Ctrl-C'd run drains and exits 130, as an interrupted command does\n${tail(out)}`);
    assert.match(out, /stopped with 0 done, 0 failed; continue with: pe-arena run --resume/);
    assert.deepEqual(openpbs.leftovers(name), [], 'nothing of the run is queued or running (qstat -x)');
    // After the coordinator's journal closes, the launcher's own log says what stop() cancelled.
    const events = readFileSync(join(found, 'launch', 'events.jsonl'), 'utf8');
    assert.match(events, /"kind":"cancelled".*"text":"stop: cancelled \d+\[\]\.localhost"/);
  },
);

void test(
  'kill -9 of a pbs run on OpenPBS, then --resume: the new coordinator takes over the running subjobs and submits none',
  { skip: skip ?? false, timeout: 150_000 },
  (t) =>
    killAndResumeScenario(t, openpbs, (left) =>
      assert.deepEqual(
        left.map((l) => l.split(' ')[1]).sort(),
        ['B', 'R', 'R'],
        'the killed coordinator left the array (B) with both subjobs running',
      ),
    ),
);

void test(
  'a data-parallel job through PBS Pro: one gang across the array subjobs trains every step once',
  { skip: skip ?? false, timeout: 240_000 },
  (t) => dataParallelScenario(t, openpbs),
);
