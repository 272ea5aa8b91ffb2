// `npm run bench -- startup [--rounds N]`: process start-up, the TypeScript through tsx against the compiled dist/
// (`npm run build` first), side by side and interleaved round by round so a loaded machine weighs on both alike.
//   <case>_<mode>_s    best of N seconds; <case>_tsx_over_bin (and _tsx_cold_over_bin) is the ratio of the bests
//   modes              tsx: node --import tsx src/cli.ts (the entry before the build), tsx's transform cache in
//                      the temp directory warm; tsx_cold: the same with that cache off (TSX_DISABLE_CACHE=1), as on a
//                      node whose temp directory has not seen this checkout; bin: node src/bin.mjs (what the
//                      pe-arena command and job scripts run: the stamp check, then dist/); dist: node dist/src/cli.js
//                      (what the local launcher starts when the coordinator runs compiled)
//   cases              help: `--help` to exit; agent_help: `agent --help`; hello_fake: an agent with the fake
//                      workload (as bench launch runs them) from spawn to its hello at a ROUTER; hello: the real
//                      workload, which probes the TensorFlow.js backend in a worker before hello
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { distIsCurrent } from '../src/build-stamp.mjs';
import type { ServerTransport } from '../protocol/transport.ts';
import { bindServer } from '../protocol/zmq-transport.ts';
import { round3 } from './stats.ts';

const root = resolve(import.meta.dirname, '..');
const fakeWorkload = join(root, 'test', 'node-agent', 'fixtures', 'fake-workload.ts');
const tsx = ['--import', 'tsx', join(root, 'src', 'cli.ts')];
const MODES = {
  tsx,
  tsx_cold: tsx,
  bin: [join(root, 'src', 'bin.mjs')],
  dist: [join(root, 'dist', 'src', 'cli.js')],
} as const;
type Mode = keyof typeof MODES;

function started(mode: Mode, args: string[]): ChildProcess {
  const env = mode === 'tsx_cold' ? { ...process.env, TSX_DISABLE_CACHE: '1' } : process.env;
  return spawn(process.execPath, [...MODES[mode], ...args], { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Seconds from spawn to exit (status 0 required). */
async function toExit(mode: Mode, args: string[]): Promise<number> {
  const t0 = performance.now();
  const child = started(mode, args);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  if (code !== 0) throw new Error(`${mode} ${args.join(' ')} exited ${code}: ${stderr.slice(-500)}`);
  return (performance.now() - t0) / 1000;
}

/** Seconds from spawn to the agent's hello at `server`; the agent is killed after. */
async function toHello(server: ServerTransport, inbound: AsyncIterator<unknown>, mode: Mode, args: string[]) {
  const t0 = performance.now();
  const child = started(mode, ['agent', '--coordinator', server.address, '--death-timeout-ms', '60000', ...args]);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const died = new Promise<never>((_, reject) =>
    child.once('exit', (c) => reject(new Error(`${mode} agent exited ${c} before hello: ${stderr.slice(-500)}`))),
  );
  try {
    for (;;) {
      const next = (await Promise.race([inbound.next(), died])) as IteratorResult<unknown>;
      if (next.done === true) throw new Error('server closed');
      const item = next.value as { kind: string; message?: { type?: string } };
      if (item.kind === 'message' && item.message?.type === 'hello') return (performance.now() - t0) / 1000;
    }
  } finally {
    died.catch(() => undefined);
    child.kill('SIGKILL');
    if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
  }
}

const best = (xs: number[]): number => Math.min(...xs);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const rounds = args.includes('--rounds') ? Number(args[args.indexOf('--rounds') + 1]) : 5;
  if (!distIsCurrent(root)) throw new Error('dist/ is missing or not built from these sources: npm run build first');
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const inbound = server.inbound()[Symbol.asyncIterator]();
  const cases: Record<string, (mode: Mode) => Promise<number>> = {
    help: (m) => toExit(m, ['--help']),
    agent_help: (m) => toExit(m, ['agent', '--help']),
    hello_fake: (m) => toHello(server, inbound, m, ['--workload-module', fakeWorkload]),
    hello: (m) => toHello(server, inbound, m, []),
  };
  const samples: Record<string, number[]> = {};
  const modes = Object.keys(MODES) as Mode[];
  try {
    for (let r = 0; r < rounds; r++) {
      for (const [name, measure] of Object.entries(cases)) {
        // Rotate the order each round: whichever runs first after a switch pays for cold caches.
        for (let i = 0; i < modes.length; i++) {
          const mode = modes[(i + r) % modes.length]!;
          (samples[`${name}_${mode}`] ??= []).push(await measure(mode));
        }
      }
    }
  } finally {
    await server.close();
  }
  const results: Record<string, unknown> = { rounds };
  for (const name of Object.keys(cases)) {
    for (const mode of modes) results[`${name}_${mode}_s`] = round3(best(samples[`${name}_${mode}`]!));
    for (const slow of ['tsx', 'tsx_cold'] as const)
      results[`${name}_${slow}_over_bin`] =
        Math.round((best(samples[`${name}_${slow}`]!) / best(samples[`${name}_bin`]!)) * 100) / 100;
  }
  results['medians_s'] = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, round3(median(v))]));
  results['samples_s'] = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.map(round3)]));
  return results;
}
