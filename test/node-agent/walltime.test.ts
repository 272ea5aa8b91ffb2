// node-agent/walltime.ts: the allocation's end from each scheduler's variables, the drain point a margin before
// it, and the --import path that drains a running agent through its SIGTERM handler with reason "walltime".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { armWalltimeDrain, walltimeDeadline } from '../../node-agent/walltime.ts';
import { withDeadline } from '../../protocol/deadline.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..');
const now = 1_763_900_000_000;

void test('deadline: Slurm end time, script start + walltime, Torque PBS_WALLTIME, nothing', () => {
  assert.deepEqual(walltimeDeadline({ SLURM_JOB_END_TIME: '1763903600', PE_ARENA_WALLTIME_MARGIN_S: '120' }, now), {
    endsAt: 1_763_903_600_000,
    drainAt: 1_763_903_480_000,
    marginMs: 120_000,
    source: 'SLURM_JOB_END_TIME',
  });
  const fromScript = walltimeDeadline({ PE_ARENA_JOB_START: '1763899000', PE_ARENA_WALLTIME_S: '3600' }, now);
  assert.equal(fromScript?.endsAt, (1_763_899_000 + 3600) * 1000);
  assert.equal(fromScript?.marginMs, 300_000, 'default margin');
  assert.equal(
    walltimeDeadline({ PBS_WALLTIME: '01:00:00' }, now)?.endsAt,
    now + 3_600_000,
    'no start known: from now',
  );
  assert.equal(
    walltimeDeadline({ PBS_WALLTIME: '7200', PE_ARENA_JOB_START: '1763899000' }, now)?.endsAt,
    (1_763_899_000 + 7200) * 1000,
  );
  assert.equal(walltimeDeadline({}, now), undefined);
  assert.equal(walltimeDeadline({ PE_ARENA_WALLTIME_S: 'soon' }, now), undefined, 'garbage is ignored, not guessed');
  // Already past the drain point: drain now, not in the past.
  assert.equal(walltimeDeadline({ PE_ARENA_WALLTIME_END: String(now / 1000 + 10) }, now, 60)?.drainAt, now);
});

void test('armWalltimeDrain calls onDrain once at the margin; cancel stops it', async () => {
  const env = { PE_ARENA_WALLTIME_END: String(Date.now() / 1000 + 0.3), PE_ARENA_WALLTIME_MARGIN_S: '0.1' };
  const reason = await withDeadline(
    new Promise<string>((res) => armWalltimeDrain({ env, onDrain: res })),
    5_000,
    () => new Error('onDrain not called within 5 s'),
  );
  assert.match(reason, /^walltime: allocation ends at .* \(PE_ARENA_WALLTIME_END\)/);
  let called = false;
  const start = Date.now() / 1000;
  const timer = armWalltimeDrain({
    env: { PE_ARENA_WALLTIME_END: String(start + 0.2), PE_ARENA_WALLTIME_MARGIN_S: '0.1' },
    onDrain: () => (called = true),
  });
  timer.cancel();
  // The marker: an uncancelled timer due after the cancelled one; once it has fired, the cancelled one's time is past.
  // (The drain timers are unref'd: the deadline's timer keeps this process up meanwhile.)
  const marker = { PE_ARENA_WALLTIME_END: String(start + 0.3), PE_ARENA_WALLTIME_MARGIN_S: '0.1' };
  await withDeadline(
    new Promise((res) => armWalltimeDrain({ env: marker, onDrain: res })),
    5_000,
    () => new Error('the marker timer did not fire within 5 s'),
  );
  assert.equal(called, false);
  assert.equal(armWalltimeDrain({ env: {}, onDrain: () => (called = true) }).deadline, undefined);
});

void test('the --import path drains through the process\'s SIGTERM handler with reason "walltime"', async () => {
  const program =
    "process.on('SIGTERM', (s) => { console.log('drain:' + s); process.exit(0); }); setTimeout(() => { console.log('no drain'); process.exit(1); }, 8000);";
  const out = await new Promise<string>((res, rej) => {
    execFile(
      process.execPath,
      [
        '--import',
        import.meta.resolve('tsx'),
        '--import',
        resolve(repoRoot, 'node-agent', 'walltime.ts'),
        '-e',
        program,
      ],
      {
        timeout: 15_000,
        encoding: 'utf8',
        env: {
          ...process.env,
          PE_ARENA_WALLTIME_PRELOAD: '1',
          PE_ARENA_WALLTIME_END: String(Date.now() / 1000 + 3),
          PE_ARENA_WALLTIME_MARGIN_S: '2.5',
        },
      },
      (error, stdout, stderr) => (error ? rej(new Error(`${error.message}\n${stderr}`)) : res(stdout + stderr)),
    );
  });
  assert.match(out, /drain:walltime/);
  assert.match(out, /pe-arena agent: walltime: allocation ends at/);
});
