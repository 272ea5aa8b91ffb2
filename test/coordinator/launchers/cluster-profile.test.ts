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
  for (const f of files.filter((f) => f !== 'iitd.json' && f !== 'iitd-apptainer.json')) {
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
  [
    'pollMaxIntervalS',
    { ...base, pollIntervalS: 10, pollMaxIntervalS: 5 },
    /pollMaxIntervalS must be an integer from 10 to 3600, got 5/,
  ],
  ['pollMaxIntervalS', { ...base, pollMaxIntervalS: 7200 }, /pollMaxIntervalS must be an integer from 10 to 3600/],
  ['pollMaxIntervalS', { ...base, pollMaxIntervalS: '60' }, /pollMaxIntervalS must be an integer .*got "60"/],
  ['pollMaxIntervalS', { ...base, pollMaxIntervalS: 12.5 }, /pollMaxIntervalS must be an integer/],
  ['commandsDir', { ...base, commandsDir: 'opt/pbs/bin' }, /commandsDir must be an absolute directory/],
  ['commandsDir', { ...base, commandsDir: '/opt/pbs/bin\n' }, /commandsDir must not contain control characters/],
  ['container', { ...base, container: 'apptainer' }, /container must be an object/],
  [
    'container.runtime',
    { ...base, container: { runtime: 'docker', image: '/x.sif' } },
    /container\.runtime must be one of apptainer, singularity, enroot, podman, got "docker"/,
  ],
  ['container.runtime', { ...base, container: { image: '/x.sif' } }, /container\.runtime is required/],
  ['container.image', { ...base, container: { runtime: 'enroot' } }, /container\.image is required/],
  [
    'container.image',
    { ...base, container: { runtime: 'apptainer', image: 'pe-arena.sif' } },
    /container\.image must be an absolute path to an image file .* or a URI such as docker:/,
  ],
  [
    'container.image',
    { ...base, container: { runtime: 'podman', image: '/scratch/pe-arena.tar' } },
    /container\.image must be an image name for podman/,
  ],
  [
    'container.image',
    { ...base, container: { runtime: 'apptainer', image: '<YOUR_SCRATCH>/pe-arena.sif' } },
    /container\.image is still the placeholder/,
  ],
  [
    'container.gpus',
    { ...base, container: { runtime: 'enroot', image: 'pe', gpus: 'yes' } },
    /container\.gpus must be true or false/,
  ],
  [
    'container.binds',
    { ...base, container: { runtime: 'enroot', image: 'pe', binds: '/scratch' } },
    /container\.binds must be an array/,
  ],
  [
    'container.binds[1]',
    { ...base, container: { runtime: 'enroot', image: 'pe', binds: ['/scratch', 'data'] } },
    /container\.binds\[1\] must name absolute paths/,
  ],
  [
    'container.binds[0]',
    { ...base, container: { runtime: 'enroot', image: 'pe', binds: ['/a,/b'] } },
    /container\.binds\[0\] must be "\/path" or "\/source:\/target" without commas/,
  ],
  [
    'container.binds[0]',
    { ...base, container: { runtime: 'enroot', image: 'pe', binds: ['/a:/b:ro'] } },
    /container\.binds\[0\] must be "\/path" or "\/source:\/target"/,
  ],
  [
    'container.network',
    { ...base, container: { runtime: 'enroot', image: 'pe', network: 'host' } },
    /container\.network is not a known field/,
  ],
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

void test('pollMaxIntervalS: 8 x pollIntervalS unless set; as short as pollIntervalS turns the back-off off', () => {
  assert.deepEqual(
    [compileClusterProfile(base, 's').pollIntervalS, compileClusterProfile(base, 's').pollMaxIntervalS],
    [10, 80],
  );
  assert.equal(compileClusterProfile({ ...base, pollIntervalS: 15 }, 's').pollMaxIntervalS, 120);
  assert.equal(compileClusterProfile({ ...base, pollIntervalS: 15, pollMaxIntervalS: 15 }, 's').pollMaxIntervalS, 15);
  assert.equal(compileClusterProfile({ ...base, pollMaxIntervalS: 3600 }, 's').pollMaxIntervalS, 3600);
  assert.equal(compileClusterProfile({ ...base, pollIntervalS: 600 }, 's').pollMaxIntervalS, 3600, 'at most an hour');
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

void test('a container block: runtime, image, binds as source and target; gpus follow resources.gpus unless set', async () => {
  const c = compileClusterProfile(
    {
      ...base,
      resources: { gpus: 1 },
      container: { runtime: 'apptainer', image: '$HOME/pe-arena.sif', binds: ['/scratch', '/data:/mnt/data'] },
    },
    'site.json',
  ).container;
  assert.deepEqual(c, {
    runtime: 'apptainer',
    image: '$HOME/pe-arena.sif',
    gpus: true,
    binds: [
      { source: '/scratch', target: '/scratch' },
      { source: '/data', target: '/mnt/data' },
    ],
  });
  const cpu = compileClusterProfile(
    { ...base, container: { runtime: 'podman', image: 'localhost/pe-arena' } },
    's.json',
  );
  assert.equal(cpu.container?.gpus, false, 'no GPUs asked for, none passed in');
  const off = compileClusterProfile(
    { ...base, resources: { gpus: 1 }, container: { runtime: 'enroot', image: 'pe-arena', gpus: false } },
    's.json',
  );
  assert.equal(off.container?.gpus, false);
  assert.equal(compileClusterProfile(base, 's.json').container, undefined);
  const uri = compileClusterProfile(
    { ...base, container: { runtime: 'singularity', image: 'docker://pe-arena' } },
    's',
  );
  assert.equal(uri.container?.image, 'docker://pe-arena');

  const filled = JSON.parse(readFileSync(join(dir, 'iitd-apptainer.json'), 'utf8')) as Record<string, unknown>;
  await assert.rejects(loadClusterProfile(join(dir, 'iitd-apptainer.json')), /placeholder/);
  filled['project'] = 'cse';
  filled['workdir'] = '/scratch/cse/$USER/pe-arena';
  filled['container'] = { ...(filled['container'] as object), image: '/scratch/cse/$USER/pe-arena.sif' };
  const p = compileClusterProfile(filled, 'iitd-apptainer.json');
  assert.deepEqual([p.container?.runtime, p.container?.gpus, p.gpus], ['apptainer', true, 1]);
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
