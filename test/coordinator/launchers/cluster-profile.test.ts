// Site profiles: the shipped ones load (iitd.json only once its placeholders are filled in), and a broken one
// fails with an error that names the file and the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import {
  compileClusterProfile,
  formatWalltime,
  loadClusterProfile,
  parseWalltime,
} from '../../../coordinator/cluster-profile.ts';
import { ClusterProfileError } from '../../../coordinator/launchers/errors.ts';

const dir = resolve(import.meta.dirname, '..', '..', '..', 'configs', 'clusters');

void test('every shipped profile loads; iitd.json asks for its placeholders', async () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  for (const name of [
    'iitd.json',
    'pbspro.json',
    'torque.json',
    'slurm.json',
    'test-slurm.json',
    'test-pbs.json',
    'test-openpbs.json',
  ])
    assert.ok(files.includes(name), `${name} is shipped`);
  for (const f of files.filter((f) => f !== 'iitd.json')) {
    const p = await loadClusterProfile(join(dir, f));
    assert.ok(p.walltimeS > p.walltimeMarginS, `${f}: the margin fits in the walltime`);
  }
  await assert.rejects(
    loadClusterProfile(join(dir, 'iitd.json')),
    (e: unknown) => e instanceof ClusterProfileError && e.field === 'project' && /placeholder/.test(e.message),
  );
  const filled = JSON.parse(readFileSync(join(dir, 'iitd.json'), 'utf8')) as Record<string, unknown>;
  filled['project'] = 'cse';
  filled['workdir'] = '/scratch/cse/$USER/pe-arena';
  const p = compileClusterProfile(filled, 'iitd.json');
  assert.deepEqual([p.scheduler, p.dialect, p.project, p.gpus, p.walltime], ['pbs', 'pbspro', 'cse', 1, '04:00:00']);
});

const base = { name: 't', scheduler: 'slurm', walltime: '01:00:00' };
const broken: [string, Record<string, unknown>, RegExp][] = [
  ['scheduler', { ...base, scheduler: 'lsf' }, /scheduler must be "pbs" or "slurm"/],
  ['walltime', { ...base, walltime: '300' }, /walltime must be hh:mm:ss/],
  ['walltime', { name: 't', scheduler: 'slurm' }, /walltime is required/],
  ['resources.gpus', { ...base, resources: { gpus: -1 } }, /resources\.gpus must be an integer/],
  ['resources.cpus', { ...base, resources: { cpus: 'eight' } }, /resources\.cpus/],
  ['resources.memory', { ...base, resources: { memory: '16 gigs' } }, /resources\.memory/],
  ['queue', { ...base, queue: 'gpu; rm -rf ~' }, /queue has characters/],
  ['setup[1]', { ...base, setup: ['module load a', 'x\ny'] }, /setup\[1\] must be one line/],
  ['dialect', { ...base, dialect: 'torque' }, /does not go with scheduler/],
  ['head.ports', { ...base, head: { ports: [6000, 5000] } }, /head\.ports/],
  ['colour', { ...base, colour: 'blue' }, /colour is not a known field/],
  ['walltimeMarginS', { ...base, walltimeMarginS: 7200 }, /walltimeMarginS must be an integer from 1 to 3599/],
  ['commandsDir', { ...base, commandsDir: 'opt/pbs/bin' }, /commandsDir must be an absolute directory/],
  ['commandsDir', { ...base, commandsDir: '/opt/pbs/bin\n' }, /commandsDir must not contain control characters/],
];

void test('a broken profile names the field', () => {
  for (const [field, raw, message] of broken) {
    assert.throws(
      () => compileClusterProfile(raw, 'site.json'),
      (e: unknown) =>
        e instanceof ClusterProfileError &&
        e.field === field &&
        message.test(e.message) &&
        e.message.startsWith('site.json: '),
      `expected an error naming ${field}`,
    );
  }
  assert.throws(() => compileClusterProfile([], 'site.json'), /must be a JSON object/);
});

void test("commandsDir names where the scheduler's commands live; absent, they are found on PATH", async () => {
  const openpbs = await loadClusterProfile(join(dir, 'test-openpbs.json'));
  assert.equal(openpbs.commandsDir, '/opt/pbs/bin');
  assert.equal(compileClusterProfile(base, 'site.json').commandsDir, undefined);
  assert.equal(
    compileClusterProfile({ ...base, commandsDir: '$HOME/slurm/bin' }, 'site.json').commandsDir,
    join(homedir(), 'slurm', 'bin'),
  );
});

void test('walltime: hh:mm:ss round-trips; bare numbers in strings are refused (minutes or seconds?)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 400 * 3600 }), (s) => parseWalltime(formatWalltime(s)) === s),
    { numRuns: 200 },
  );
  assert.equal(parseWalltime('1-00:00:00'), 86400);
  assert.equal(parseWalltime('90:00'), 5400);
  assert.equal(parseWalltime('300'), undefined);
  assert.equal(parseWalltime('00:00:00'), undefined);
  assert.equal(parseWalltime('01:00:75'), undefined);
});
