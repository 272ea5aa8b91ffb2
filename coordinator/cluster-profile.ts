// Site profiles (configs/clusters/*.json): which scheduler and dialect, queue, project, resources, walltime,
// environment set-up, working directory and how agents reach the head node. Validated once, with errors that
// name the file and the field; only the compiled ClusterProfile travels to the launchers.
import os from 'node:os';
import { readJsonFile } from '../protocol/config-file.ts';
import { ClusterProfileError } from './launchers/errors.ts';

export const SCHEDULER = { pbs: 'pbs', slurm: 'slurm' } as const;
export type SchedulerName = (typeof SCHEDULER)[keyof typeof SCHEDULER];

/** How resources are spelled: PBS Pro `select=1:ncpus=8:ngpus=1`, Torque `nodes=1:ppn=8`, Slurm `--cpus-per-task`. */
export const DIALECT = { pbspro: 'pbspro', torque: 'torque', slurm: 'slurm' } as const;
export type DialectName = (typeof DIALECT)[keyof typeof DIALECT];

/** The container runtimes a job script can start the agent in. */
export const CONTAINER_RUNTIME = {
  apptainer: 'apptainer',
  singularity: 'singularity',
  enroot: 'enroot',
  podman: 'podman',
} as const;
export type ContainerRuntime = (typeof CONTAINER_RUNTIME)[keyof typeof CONTAINER_RUNTIME];

/** Where pe-arena is inside the image built from containers/Dockerfile (a profile's projectDir overrides it). */
export const CONTAINER_PROJECT_DIR = '/opt/pe-arena';

/** One directory bound into the container, at `target` (the same path unless the profile says `src:dst`). */
export interface ContainerBind {
  source: string;
  target: string;
}

/** The `container` block: the agent runs inside this image; node and projectDir then name paths inside it. */
export interface ContainerSpec {
  runtime: ContainerRuntime;
  /** An image file (.sif, .sqsh) or, for enroot and podman, a container/image name; apptainer also takes URIs. */
  image: string;
  /** Pass the node's GPUs in (apptainer --nv, podman's CDI device); default: resources.gpus > 0. */
  gpus: boolean;
  /** Extra binds; the run directory, the key directory and the workdir are always bound. */
  binds: ContainerBind[];
}

export interface ClusterProfile {
  /** Where it came from (for messages). */
  file: string;
  name: string;
  scheduler: SchedulerName;
  dialect: DialectName;
  /** PBS queue or Slurm partition. */
  queue?: string;
  /** PBS Pro `-P`, Torque `-A`, Slurm `--account`. */
  project?: string;
  /** Per agent job, hh:mm:ss as written, and in seconds. */
  walltime: string;
  walltimeS: number;
  cpus: number;
  gpus: number;
  /** Memory per agent job, e.g. "16gb" (PBS) or "16G" (Slurm); passed through as written. */
  memory?: string;
  /** Shell lines run before the agent, e.g. `module load nodejs/20`. The site's own code, by design. */
  setup: string[];
  /**
   * Run the job script as a login shell (`#!/bin/bash -l`), which reads /etc/profile and the user's profile: where
   * sites define `module`. Default: when `setup` has lines; without them the agent needs nothing from a profile
   * (node is named by path) and skips what it costs (a conda or pyenv init takes seconds on a busy node).
   */
  loginShell: boolean;
  /** The agents' working directory; `$USER` and `$HOME` expand on the compute node. */
  workdir: string;
  /** The node binary on compute nodes (default: this one's path). */
  node?: string;
  /** The pe-arena checkout as compute nodes see it (default: this one). */
  projectDir?: string;
  /** The address agents dial (default: this host's name); ports the coordinator may bind. */
  headAddress?: string;
  portRange?: [number, number];
  /** Directory holding the CURVE key files (cluster.key, cluster.key.pub); the job script names it. */
  keysDir?: string;
  /** Directory of the scheduler's commands (qsub, qstat, qdel / sbatch, squeue, scancel); absent: found on PATH. */
  commandsDir?: string;
  /** Extra arguments for `pe-arena agent`. */
  agentArgs: string[];
  /** The agent checkpoints and leaves this long before its walltime ends. */
  walltimeMarginS: number;
  /** A continuation agent is submitted this long before an agent's walltime ends (covers the queue wait). */
  continuationLeadS: number;
  /** One batched qstat/squeue every this many seconds while the queue changes (the base, and shortest, wait). */
  pollIntervalS: number;
  /** While nothing changes the wait doubles after each poll, up to this many seconds. */
  pollMaxIntervalS: number;
  /** Replacement submissions for lost agents, at most this many per run. */
  maxReplacements: number;
  /** Run the agent inside this container (absent: directly on the node). */
  container?: ContainerSpec;
}

const NAME = /^[A-Za-z0-9_.@:+-]{1,128}$/;
const MEMORY = /^[0-9]+(\.[0-9]+)?\s*([kKmMgGtT][bB]?|[kKmMgGtT]?[bB])?$/;
const PLACEHOLDER = /<[A-Z0-9_ -]+>|\bCHANGE_ME\b|\bFILL_IN\b/;
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;
const KNOWN = new Set([
  '$schema',
  'comment',
  'name',
  'scheduler',
  'dialect',
  'queue',
  'project',
  'walltime',
  'resources',
  'setup',
  'loginShell',
  'workdir',
  'node',
  'projectDir',
  'head',
  'keysDir',
  'commandsDir',
  'agentArgs',
  'walltimeMarginS',
  'continuationLeadS',
  'pollIntervalS',
  'pollMaxIntervalS',
  'maxReplacements',
  'container',
]);

/** "hh:mm:ss", "mm:ss", "d-hh:mm:ss" or whole seconds as a number -> seconds; undefined when malformed. */
export function parseWalltime(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d{1,2})$/.exec(value.trim());
  if (m === null) return undefined;
  const [, d, h, mm, ss] = m;
  const seconds = Number(d ?? 0) * 86400 + Number(h ?? 0) * 3600 + Number(mm) * 60 + Number(ss);
  return seconds > 0 && Number(ss) < 60 ? seconds : undefined;
}

/** Seconds -> hh:mm:ss (hours may exceed 24): the one form PBS Pro, Torque and Slurm all read the same way. */
export function formatWalltime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Validate a parsed profile; throws ClusterProfileError naming the field. */
export function compileClusterProfile(raw: unknown, file: string): ClusterProfile {
  const fail = (field: string, problem: string): never => {
    throw new ClusterProfileError(file, field, problem);
  };
  if (!isObj(raw)) return fail('', 'must be a JSON object');
  for (const key of Object.keys(raw))
    if (!KNOWN.has(key))
      fail(key, `is not a known field (known: ${[...KNOWN].filter((k) => k !== '$schema').join(', ')})`);

  const str = (obj: Obj, key: string, path: string, required: boolean, pattern?: RegExp): string | undefined => {
    const v = obj[key];
    if (v === undefined) return required ? fail(path, 'is required') : undefined;
    if (typeof v !== 'string' || v.trim() === '')
      return fail(path, `must be a non-empty string, got ${JSON.stringify(v)}`);
    if (PLACEHOLDER.test(v))
      return fail(
        path,
        `is still the placeholder ${JSON.stringify(v)}: fill in your site's value (see docs/cluster.md)`,
      );
    if (CONTROL.test(v)) return fail(path, 'must not contain control characters or newlines');
    if (pattern !== undefined && !pattern.test(v))
      return fail(path, `has characters a scheduler will not take: ${JSON.stringify(v)}`);
    return v;
  };
  const int = (obj: Obj, key: string, path: string, fallback: number, min: number, max: number): number => {
    const v = obj[key];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      return fail(path, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return v;
  };
  const strings = (obj: Obj, key: string, path: string): string[] => {
    const v = obj[key];
    if (v === undefined) return [];
    if (!Array.isArray(v)) return fail(path, 'must be an array of strings');
    return v.map((item, i) => {
      if (typeof item !== 'string') return fail(`${path}[${i}]`, `must be a string, got ${JSON.stringify(item)}`);
      if (PLACEHOLDER.test(item))
        return fail(`${path}[${i}]`, `is still the placeholder ${JSON.stringify(item)}: fill in your site's value`);
      if (CONTROL.test(item)) return fail(`${path}[${i}]`, 'must be one line (no newlines or control characters)');
      return item;
    });
  };

  const name = str(raw, 'name', 'name', true, NAME)!;
  const scheduler = str(raw, 'scheduler', 'scheduler', true)!;
  if (scheduler !== 'pbs' && scheduler !== 'slurm')
    return fail('scheduler', `must be "pbs" or "slurm", got ${JSON.stringify(scheduler)}`);
  const dialect = str(raw, 'dialect', 'dialect', false) ?? (scheduler === 'slurm' ? 'slurm' : 'pbspro');
  if (dialect !== 'pbspro' && dialect !== 'torque' && dialect !== 'slurm')
    return fail('dialect', `must be "pbspro", "torque" or "slurm", got ${JSON.stringify(dialect)}`);
  if ((scheduler === 'slurm') !== (dialect === 'slurm'))
    return fail(
      'dialect',
      `"${dialect}" does not go with scheduler "${scheduler}" (pbs takes pbspro or torque; slurm takes slurm)`,
    );
  const queue = str(raw, 'queue', 'queue', false, NAME);
  const project = str(raw, 'project', 'project', false, NAME);
  if (raw['walltime'] === undefined) fail('walltime', 'is required (hh:mm:ss)');
  const walltimeS = parseWalltime(raw['walltime']);
  if (walltimeS === undefined)
    return fail('walltime', `must be hh:mm:ss (e.g. "04:00:00"), got ${JSON.stringify(raw['walltime'])}`);

  const resources = raw['resources'] ?? {};
  if (!isObj(resources)) return fail('resources', 'must be an object like {"cpus": 8, "gpus": 1, "memory": "32gb"}');
  for (const key of Object.keys(resources))
    if (!['cpus', 'gpus', 'memory'].includes(key))
      fail(`resources.${key}`, 'is not a known field (cpus, gpus, memory)');
  const cpus = int(resources, 'cpus', 'resources.cpus', 1, 1, 4096);
  const gpus = int(resources, 'gpus', 'resources.gpus', 0, 0, 64);
  const memory = str(resources, 'memory', 'resources.memory', false, MEMORY);

  const setup = strings(raw, 'setup', 'setup');
  const loginShellRaw = raw['loginShell'];
  if (loginShellRaw !== undefined && typeof loginShellRaw !== 'boolean')
    fail('loginShell', `must be true or false, got ${JSON.stringify(loginShellRaw)}`);
  const loginShell = typeof loginShellRaw === 'boolean' ? loginShellRaw : setup.length > 0;
  const workdir = str(raw, 'workdir', 'workdir', false) ?? '$HOME';
  const node = str(raw, 'node', 'node', false);
  const projectDir = str(raw, 'projectDir', 'projectDir', false);
  const keysDir = str(raw, 'keysDir', 'keysDir', false);
  const commandsDir = str(raw, 'commandsDir', 'commandsDir', false);
  if (commandsDir !== undefined && !/^(\/|~\/|\$\{?HOME\}?\/)/.test(commandsDir))
    fail('commandsDir', `must be an absolute directory (e.g. "/opt/pbs/bin"), got ${JSON.stringify(commandsDir)}`);
  const agentArgs = strings(raw, 'agentArgs', 'agentArgs');

  const head = raw['head'] ?? {};
  if (!isObj(head))
    return fail('head', 'must be an object like {"address": "login01.example.org", "ports": [5555, 5600]}');
  for (const key of Object.keys(head))
    if (!['address', 'ports'].includes(key)) fail(`head.${key}`, 'is not a known field (address, ports)');
  const headAddress = str(head, 'address', 'head.address', false, /^[A-Za-z0-9_.:-]+$/);
  let portRange: [number, number] | undefined;
  if (head['ports'] !== undefined) {
    const p = head['ports'];
    if (
      !Array.isArray(p) ||
      p.length !== 2 ||
      !p.every((n) => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535) ||
      (p[0] as number) > (p[1] as number)
    ) {
      return fail('head.ports', `must be [first, last] ports from 1 to 65535, got ${JSON.stringify(p)}`);
    }
    portRange = [p[0] as number, p[1] as number];
  }

  const walltimeMarginS = int(
    raw,
    'walltimeMarginS',
    'walltimeMarginS',
    Math.min(300, Math.floor(walltimeS / 10)),
    1,
    walltimeS - 1,
  );
  const continuationLeadS = int(
    raw,
    'continuationLeadS',
    'continuationLeadS',
    Math.min(walltimeS - 1, Math.max(600, walltimeMarginS * 2)),
    1,
    walltimeS,
  );
  const pollIntervalS = int(raw, 'pollIntervalS', 'pollIntervalS', 10, 1, 600);
  const pollMaxIntervalS = int(
    raw,
    'pollMaxIntervalS',
    'pollMaxIntervalS',
    Math.min(3600, 8 * pollIntervalS),
    pollIntervalS,
    3600,
  );
  const maxReplacements = int(raw, 'maxReplacements', 'maxReplacements', 8, 0, 10_000);
  const container =
    raw['container'] === undefined ? undefined : compileContainer(raw['container'], gpus > 0, fail, str);

  const profile: ClusterProfile = {
    file,
    name,
    scheduler,
    dialect,
    walltime: formatWalltime(walltimeS),
    walltimeS,
    cpus,
    gpus,
    setup,
    loginShell,
    workdir,
    agentArgs,
    walltimeMarginS,
    continuationLeadS,
    pollIntervalS,
    pollMaxIntervalS,
    maxReplacements,
  };
  if (queue !== undefined) profile.queue = queue;
  if (project !== undefined) profile.project = project;
  if (memory !== undefined) profile.memory = memory.replace(/\s+/g, '');
  if (node !== undefined) profile.node = node;
  if (projectDir !== undefined) profile.projectDir = projectDir;
  if (headAddress !== undefined) profile.headAddress = headAddress;
  if (portRange !== undefined) profile.portRange = portRange;
  if (keysDir !== undefined) profile.keysDir = keysDir;
  if (commandsDir !== undefined) profile.commandsDir = expandUserPath(commandsDir);
  if (container !== undefined) profile.container = container;
  return profile;
}

type Fail = (field: string, problem: string) => never;
type Str = (obj: Obj, key: string, path: string, required: boolean, pattern?: RegExp) => string | undefined;

/** An absolute path on the node: `/...`, or under `$HOME/` or `${HOME}/` (expanded by the job script). */
const ABSOLUTE = /^(\/|\$\{?HOME\}?\/)/;

/** An image given as a file on the node (absolute, or under $HOME), not a name or URI. */
export function isImageFile(image: string): boolean {
  return ABSOLUTE.test(image);
}

function compileContainer(raw: unknown, gpusByDefault: boolean, fail: Fail, str: Str): ContainerSpec {
  if (!isObj(raw))
    return fail('container', 'must be an object like {"runtime": "apptainer", "image": "/path/pe-arena.sif"}');
  const known = ['runtime', 'image', 'gpus', 'binds', 'comment'];
  for (const key of Object.keys(raw))
    if (!known.includes(key)) fail(`container.${key}`, `is not a known field (${known.join(', ')})`);
  const runtimes = Object.values(CONTAINER_RUNTIME);
  const runtime = str(raw, 'runtime', 'container.runtime', true)!;
  if (!(runtimes as string[]).includes(runtime))
    return fail('container.runtime', `must be one of ${runtimes.join(', ')}, got ${JSON.stringify(runtime)}`);
  const image = str(raw, 'image', 'container.image', true)!;
  if (/[\s,]/.test(image))
    return fail('container.image', `must be one path or name without spaces or commas, got ${JSON.stringify(image)}`);
  if ((runtime === 'apptainer' || runtime === 'singularity') && !isImageFile(image) && !image.includes('://'))
    return fail(
      'container.image',
      `must be an absolute path to an image file (e.g. "/scratch/$USER/pe-arena.sif") or a URI such as docker://..., got ${JSON.stringify(image)}`,
    );
  if (runtime === 'podman' && isImageFile(image))
    return fail(
      'container.image',
      `must be an image name for podman (e.g. "localhost/pe-arena:latest"; podman load -i <file> first), got ${JSON.stringify(image)}`,
    );
  const gpus = raw['gpus'] ?? gpusByDefault;
  if (typeof gpus !== 'boolean') return fail('container.gpus', `must be true or false, got ${JSON.stringify(gpus)}`);
  const rawBinds = raw['binds'] ?? [];
  if (!Array.isArray(rawBinds)) return fail('container.binds', 'must be an array like ["/scratch", "/data:/mnt/data"]');
  const binds = rawBinds.map((item: unknown, i): ContainerBind => {
    const field = `container.binds[${i}]`;
    if (typeof item !== 'string' || item.trim() === '')
      return fail(field, `must be a non-empty string, got ${JSON.stringify(item)}`);
    if (PLACEHOLDER.test(item))
      return fail(field, `is still the placeholder ${JSON.stringify(item)}: fill in your site's value`);
    const parts = item.split(':');
    const source = parts[0] ?? '';
    const target = parts[1] ?? source;
    if (parts.length > 2 || /[,\s]/.test(item) || CONTROL.test(item))
      return fail(field, `must be "/path" or "/source:/target" without commas or spaces, got ${JSON.stringify(item)}`);
    if (!ABSOLUTE.test(source) || !ABSOLUTE.test(target))
      return fail(field, `must name absolute paths ("/scratch" or "/data:/mnt/data"), got ${JSON.stringify(item)}`);
    return { source, target };
  });
  return { runtime: runtime as ContainerRuntime, image, gpus, binds };
}

/** A profile path as this node sees it: $HOME, $USER (also ${...}) and a leading ~ expanded. */
export function expandUserPath(path: string): string {
  return path
    .replace(/\$\{?HOME\}?/g, os.homedir())
    .replace(/\$\{?USER\}?/g, os.userInfo().username)
    .replace(/^~(?=\/|$)/, os.homedir());
}

/** Read and validate a profile file; ClusterProfileError names the file and what is wrong. */
export async function loadClusterProfile(file: string): Promise<ClusterProfile> {
  return compileClusterProfile(readJsonFile(file, ClusterProfileError), file);
}
