// The checks of `pe-arena doctor`, one function each: this node (Node, zeromq, TensorFlow.js backends, GPUs, disk,
// keys) and the cluster as seen from here (profile, scheduler commands, head address, a bindable port). Each says
// pass, warn or fail, and the fix. TensorFlow.js is only loaded in a child process (the coordinator side never
// imports it), and every external command runs with execFile and a timeout.
import { lookup } from 'node:dns/promises';
import { accessSync, constants, existsSync, mkdirSync, statSync, statfsSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { codeUrl, COMPILED, PACKAGE_ROOT, TSX_LOADER } from '../../protocol/code-paths.ts';
import { expandUserPath, isImageFile, loadClusterProfile } from '../cluster-profile.ts';
import type { ClusterProfile, ContainerSpec } from '../cluster-profile.ts';
import type { SubmitCommand } from './job-script.ts';
import { runProcess, schedulerCommandPath } from './scheduler-command.ts';

export const CHECK_STATUS = { pass: 'pass', warn: 'warn', fail: 'fail' } as const;
export type CheckStatus = (typeof CHECK_STATUS)[keyof typeof CHECK_STATUS];

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

const projectDir = PACKAGE_ROOT;

/** A command's exit status and output; `missing` when it is not on PATH. */
async function run(
  command: string,
  args: string[],
  timeoutMs = 15_000,
): Promise<{ code: number | null; stdout: string; stderr: string; missing: boolean }> {
  const { startError, ...result } = await runProcess(command, args, { timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  return { ...result, missing: startError?.code === 'ENOENT' };
}

export function checkNode(version: string = process.versions.node): CheckResult {
  const major = Number(version.split('.')[0]);
  return major >= 20
    ? { name: 'node version', status: 'pass', detail: `v${version}` }
    : {
        name: 'node version',
        status: 'fail',
        detail: `v${version} is too old`,
        fix: 'use Node 20 or newer (e.g. module load nodejs/20, or nvm install 20)',
      };
}

export async function checkZeromq(): Promise<CheckResult> {
  try {
    const zmq = await import('zeromq');
    const socket = new zmq.Router();
    socket.close();
    return { name: 'zeromq native module', status: 'pass', detail: `zeromq ${zmq.version} loads` };
  } catch (error) {
    return {
      name: 'zeromq native module',
      status: 'fail',
      detail: `does not load: ${(error as Error).message.split('\n')[0]}`,
      fix: 'npm rebuild zeromq on this node (a prebuilt binary may need a newer glibc; building needs cmake and a C++ compiler)',
    };
  }
}

const BACKEND_SCRIPT = `
const { selectBackend } = await import(${JSON.stringify(codeUrl('src/train/backend.ts'))});
for (const name of ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu']) {
  try { await selectBackend(name); console.log(JSON.stringify({ name, ok: true })); }
  catch (e) { console.log(JSON.stringify({ name, ok: false, reason: String(e && e.message || e).split('\\n')[0] })); }
}
`;

/** Why a backend did not load, and what to do about it. */
export function backendFix(name: string, reason: string): string {
  if (/libcud|cuda|cudnn|libcublas/i.test(reason))
    return 'tfjs-node-gpu 4.22 (libtensorflow 2.9.1) needs CUDA 11.2 and cuDNN 8.1 on the library path (e.g. module load cuda/11.2 cudnn/8.1), or run the agents in the container of docs/cluster.md#containers';
  if (/cannot find (module|package)|ERR_MODULE_NOT_FOUND/i.test(reason))
    return `npm install ${name === 'tensorflow-gpu' ? '@tensorflow/tfjs-node-gpu' : name === 'tensorflow' ? '@tensorflow/tfjs-node' : '@tensorflow/tfjs-backend-wasm'} (optional; it downloads libtensorflow at install)`;
  if (/libtensorflow|tfjs_binding|GLIBC/i.test(reason))
    return 'libtensorflow is missing or needs a newer glibc: reinstall the package on this node (npm rebuild), or use wasm/cpu';
  return 'see the reason; wasm and cpu always work, only slower';
}

export async function checkBackends(timeoutMs = 120_000): Promise<CheckResult[]> {
  const tsx = COMPILED ? [] : ['--import', TSX_LOADER];
  const result = await runProcess(process.execPath, [...tsx, '--input-type=module', '-e', BACKEND_SCRIPT], {
    timeoutMs,
    cwd: projectDir,
    maxBuffer: 1024 * 1024,
  });
  const lines = result.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { name: string; ok: boolean; reason?: string });
  if (lines.length === 0) {
    return [
      {
        name: 'TensorFlow.js backends',
        status: 'fail',
        detail: `the backend probe failed (exit ${result.code}): ${result.stderr.trim().split('\n').slice(-1)[0] ?? ''}`,
        fix: 'npm ci in the pe-arena checkout',
      },
    ];
  }
  const usable = lines.filter((l) => l.ok).map((l) => l.name);
  const out: CheckResult[] = lines.map((l) =>
    l.ok
      ? { name: `backend ${l.name}`, status: 'pass', detail: 'loads' }
      : {
          name: `backend ${l.name}`,
          status: 'warn',
          detail: `does not load: ${l.reason ?? '?'}`,
          fix: backendFix(l.name, l.reason ?? ''),
        },
  );
  out.push(
    usable.length > 0
      ? { name: 'TensorFlow.js', status: 'pass', detail: `agents here would train on ${usable[0]}` }
      : { name: 'TensorFlow.js', status: 'fail', detail: 'no backend loads', fix: 'npm ci in the pe-arena checkout' },
  );
  return out;
}

export async function checkGpus(wantGpus: number): Promise<CheckResult> {
  const r = await run('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader']);
  if (r.missing || r.code !== 0) {
    const detail = r.missing ? 'nvidia-smi not found' : `nvidia-smi failed: ${r.stderr.trim().split('\n')[0] ?? ''}`;
    // The head node usually has no GPU: only a warning here; --probe checks a compute node.
    return {
      name: 'GPUs (nvidia-smi)',
      status: 'warn',
      detail: `${detail} on this node${wantGpus > 0 ? `; the profile asks for ${wantGpus} per agent` : ''}`,
      fix: 'expected on a login node; on a GPU node load the driver module or ask the admins',
    };
  }
  const gpus = r.stdout
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '');
  return { name: 'GPUs (nvidia-smi)', status: 'pass', detail: gpus.join('; ') };
}

const COMMANDS = { slurm: ['sbatch', 'squeue', 'scancel'], pbs: ['qsub', 'qstat', 'qdel'] } as const;

/**
 * A status query every dialect answers: squeue for Slurm; `qstat -Q [queue]` for PBS Pro, Torque and Slurm's torque
 * wrapper alike (the wrapper has no `qstat -B`), which also says whether the profile's queue exists.
 */
export function schedulerQuery(scheduler: 'pbs' | 'slurm', queue: string | undefined): SubmitCommand {
  if (scheduler === 'slurm')
    return { command: 'squeue', args: ['--noheader', '--user', os.userInfo().username, '--format=%i'] };
  return { command: 'qstat', args: queue === undefined ? ['-Q'] : ['-Q', queue] };
}

/** The scheduler's commands are there (in the profile's commandsDir, else on PATH) and its status query answers. */
export async function checkScheduler(
  scheduler: 'pbs' | 'slurm' | undefined,
  profile?: Pick<ClusterProfile, 'commandsDir' | 'queue'>,
): Promise<CheckResult[]> {
  const which = scheduler === undefined ? (['slurm', 'pbs'] as const) : ([scheduler] as const);
  const dir = profile?.commandsDir;
  const where = dir === undefined ? 'on PATH' : `in ${dir} (commandsDir)`;
  const out: CheckResult[] = [];
  for (const s of which) {
    const missing: string[] = [];
    for (const cmd of COMMANDS[s]) {
      const found =
        dir === undefined
          ? (await run('sh', ['-c', 'command -v "$1"', 'sh', cmd], 5_000)).code === 0
          : isExecutable(schedulerCommandPath(dir, cmd));
      if (!found) missing.push(cmd);
    }
    if (missing.length > 0) {
      out.push({
        name: `${s} commands`,
        status: scheduler === undefined ? 'warn' : 'fail',
        detail: `${missing.join(', ')} not ${where}`,
        fix:
          dir === undefined
            ? `run doctor on the login node of a ${s} cluster, or load its module (e.g. module load ${s}); if they live off PATH, name their directory as "commandsDir" in the profile`
            : `set "commandsDir" in the profile to the directory that holds ${COMMANDS[s].join(', ')} (or leave it out to use PATH)`,
      });
      continue;
    }
    const query = schedulerQuery(s, profile?.queue);
    const said = `${query.command} ${query.args.filter((a) => !a.startsWith('--')).join(' ')}`.trim();
    const answer = await run(schedulerCommandPath(dir, query.command), query.args, 15_000);
    out.push(
      answer.code === 0
        ? {
            name: `${s} commands`,
            status: 'pass',
            detail: `${COMMANDS[s].join(', ')} found ${where}; ${said} answers`,
          }
        : {
            name: `${s} commands`,
            status: 'fail',
            detail: `${said} fails: ${answer.stderr.trim().split('\n')[0] || answer.stdout.trim().split('\n')[0] || `exit ${answer.code}`}`,
            fix:
              profile?.queue === undefined
                ? 'the scheduler does not answer from this node: check you are on a login node and the scheduler is up'
                : `the scheduler does not answer from this node, or has no queue "${profile.queue}": check the profile's queue and that the scheduler is up`,
          },
    );
  }
  return out;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

export async function checkProfile(file: string): Promise<{ result: CheckResult; profile?: ClusterProfile }> {
  try {
    const profile = await loadClusterProfile(file);
    return {
      result: {
        name: 'site profile',
        status: 'pass',
        detail: `${file}: ${profile.scheduler}/${profile.dialect}, walltime ${profile.walltime}, ${profile.cpus} cpus, ${profile.gpus} gpus`,
      },
      profile,
    };
  } catch (error) {
    return {
      result: {
        name: 'site profile',
        status: 'fail',
        detail: (error as Error).message,
        fix: `edit ${file} (configs/clusters/*.json show every field)`,
      },
    };
  }
}

function bindable(port: number): Promise<number | string> {
  return new Promise((res) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => res(error.code ?? error.message));
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : port;
      server.close(() => res(bound));
    });
  });
}

export async function checkReachability(profile: ClusterProfile | undefined): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const host = profile?.headAddress ?? os.hostname();
  try {
    const { address } = await lookup(host);
    const loopback = address.startsWith('127.') || address === '::1';
    out.push(
      loopback && profile?.headAddress === undefined
        ? {
            name: 'head node address',
            status: 'warn',
            detail: `${host} resolves to ${address} (loopback): compute nodes cannot dial it`,
            fix: 'set head.address in the profile to the name or IP compute nodes reach this node by',
          }
        : { name: 'head node address', status: 'pass', detail: `${host} resolves to ${address}` },
    );
  } catch (error) {
    out.push({
      name: 'head node address',
      status: 'fail',
      detail: `${host} does not resolve: ${(error as Error).message}`,
      fix: 'set head.address in the profile to an address compute nodes can reach',
    });
  }
  const range = profile?.portRange;
  let bound: number | string = 'none tried';
  if (range === undefined) bound = await bindable(0);
  else {
    for (let p = range[0]; p <= range[1] && p < range[0] + 50; p++) {
      bound = await bindable(p);
      if (typeof bound === 'number') break;
    }
  }
  out.push(
    typeof bound === 'number'
      ? {
          name: 'coordinator port',
          status: 'pass',
          detail: `port ${bound} binds on 0.0.0.0${range === undefined ? ' (any free port; set head.ports to pin a range the firewall allows)' : ''}`,
        }
      : {
          name: 'coordinator port',
          status: 'fail',
          detail: `no port in ${range === undefined ? 'any' : `${range[0]}-${range[1]}`} binds (${bound})`,
          fix: 'pick a free range in head.ports that compute nodes may reach',
        },
  );
  return out;
}

export function checkDisk(dir: string, minBytes = 1024 ** 3): CheckResult {
  try {
    mkdirSync(dir, { recursive: true });
    const s = statfsSync(dir);
    const free = s.bavail * s.bsize;
    const gib = (free / 1024 ** 3).toFixed(1);
    return free >= minBytes
      ? { name: 'free disk (runs)', status: 'pass', detail: `${gib} GiB free in ${resolve(dir)}` }
      : {
          name: 'free disk (runs)',
          status: 'fail',
          detail: `only ${gib} GiB free in ${resolve(dir)}`,
          fix: 'free space or use --runs-dir on a scratch filesystem',
        };
  } catch (error) {
    return {
      name: 'free disk (runs)',
      status: 'fail',
      detail: `${dir}: ${(error as Error).message}`,
      fix: 'use --runs-dir with a writable directory',
    };
  }
}

export function checkKeys(dir: string, required: boolean): CheckResult {
  const files = [join(dir, 'cluster.key'), join(dir, 'cluster.key.pub')];
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length > 0) {
    return {
      name: 'CURVE keys',
      status: required ? 'fail' : 'warn',
      detail: `${missing.join(', ')} missing`,
      fix: `pe-arena keys init --dir ${dir}`,
    };
  }
  const open = files.filter((f) => (statSync(f).mode & 0o077) !== 0);
  if (open.length > 0) {
    return {
      name: 'CURVE keys',
      status: 'fail',
      detail: `${open.map((f) => `${f} is mode ${(statSync(f).mode & 0o777).toString(8)}`).join(', ')}: others can read them`,
      fix: `chmod 600 ${open.join(' ')}`,
    };
  }
  return { name: 'CURVE keys', status: 'pass', detail: `${dir}: cluster.key and cluster.key.pub, mode 600` };
}

/** How to make each runtime's image; the doctor names it when the image is missing. */
const IMAGE_FIX: Record<ContainerSpec['runtime'], string> = {
  apptainer: 'build it with apptainer build pe-arena.sif containers/pe-arena.def (docs/cluster.md#containers)',
  singularity: 'build it with singularity build pe-arena.sif containers/pe-arena.def (docs/cluster.md#containers)',
  enroot: 'make it with enroot import -o pe-arena.sqsh dockerd://pe-arena:latest (docs/cluster.md#containers)',
  podman: 'load it on the compute nodes with podman load -i pe-arena.tar (docs/cluster.md#containers)',
};

/** The container block's runtime is on PATH (else in commandsDir) and its image file is there and readable. */
export function checkContainer(
  container: ContainerSpec,
  options: { commandsDir?: string | undefined; path?: string | undefined } = {},
): CheckResult[] {
  const { runtime, image } = container;
  const onPath = (options.path ?? process.env['PATH'] ?? '')
    .split(':')
    .filter((d) => d !== '')
    .map((d) => join(d, runtime))
    .find(isExecutable);
  const inCommandsDir = options.commandsDir === undefined ? undefined : join(options.commandsDir, runtime);
  const runtimeResult: CheckResult =
    onPath !== undefined
      ? { name: 'container runtime', status: 'pass', detail: `${onPath} (on PATH)` }
      : inCommandsDir !== undefined && isExecutable(inCommandsDir)
        ? {
            name: 'container runtime',
            status: 'warn',
            detail: `${inCommandsDir} (in commandsDir, not on PATH): the job script runs ${runtime} by name`,
            fix: `put ${dirname(inCommandsDir)} on the compute nodes' PATH in the profile's setup (e.g. "export PATH=${dirname(inCommandsDir)}:$PATH")`,
          }
        : {
            name: 'container runtime',
            status: 'fail',
            detail: `${runtime} not on PATH${options.commandsDir === undefined ? '' : ` nor in ${options.commandsDir}`}`,
            fix: `load it (e.g. module load ${runtime}) here and add the same line to the profile's setup, ask the admins to install ${runtime}, or change container.runtime`,
          };
  if (!isImageFile(image)) {
    return [
      runtimeResult,
      {
        name: 'container image',
        status: 'warn',
        detail: `${image} is a ${runtime === 'enroot' ? 'container name' : 'registry name'}: not checked from here (no registry is asked offline)`,
        fix: `make sure every compute node has it: ${IMAGE_FIX[runtime]}, or name an image file in container.image`,
      },
    ];
  }
  const file = expandUserPath(image);
  let problem: string | undefined;
  try {
    accessSync(file, constants.R_OK);
    if (!statSync(file).isFile() && !statSync(file).isDirectory()) problem = 'is not a file';
  } catch (error) {
    problem = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'is not readable';
  }
  return [
    runtimeResult,
    problem === undefined
      ? { name: 'container image', status: 'pass', detail: `${file} is readable` }
      : {
          name: 'container image',
          status: 'fail',
          detail: `${file} ${problem}`,
          fix: `${IMAGE_FIX[runtime]} on a filesystem the compute nodes see, and name it in container.image`,
        },
  ];
}
