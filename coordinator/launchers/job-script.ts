// The agent job script and the submit command, per dialect. The script is meant to be read (and resubmitted by
// hand): it carries the same directives the submit command passes, plus that command in a comment. Every value
// from the profile or the run is single-quoted for the shell; the submit command is an argument array for
// execFile. No secret goes into either: the agent reads its CURVE keys from the files the script names.
import { CONTAINER_PROJECT_DIR } from '../cluster-profile.ts';
import type { ClusterProfile, ContainerSpec, DialectName } from '../cluster-profile.ts';
import { schedulerCommandPath } from './scheduler-command.ts';

export const SUBMISSION_KIND = {
  initial: 'initial',
  replacement: 'replacement',
  continuation: 'continuation',
} as const;
export type SubmissionKind = (typeof SUBMISSION_KIND)[keyof typeof SUBMISSION_KIND];

export interface JobScriptInput {
  profile: ClusterProfile;
  runId: string;
  /** Scheduler job name shared by every submission of the run (how polls find them). */
  jobName: string;
  /** 1, 2, ...: numbers agent ids so a replacement never reuses one. */
  submission: number;
  kind: SubmissionKind;
  /** Tasks in this submission (one array; a plain job when 1). */
  count: number;
  coordinator: string;
  runDir: string;
  launchDir: string;
  agentArgs: string[];
  /** The pe-arena checkout as compute nodes see it (with a container: ignored, see containerPaths). */
  projectDir: string;
  nodeBinary: string;
}

/** The variables the agent reads that the job script sets: passed into runtimes that do not inherit the host's. */
const AGENT_ENV = [
  'PE_ARENA_JOB_START',
  'PE_ARENA_WALLTIME_S',
  'PE_ARENA_WALLTIME_MARGIN_S',
  'PE_ARENA_WALLTIME_PRELOAD',
];

/**
 * Inside a container, node and pe-arena are the image's: pe-arena at /opt/pe-arena (containers/Dockerfile puts it
 * there), node on the image's PATH. A profile's projectDir and node name paths inside the container instead.
 */
export function containerPaths(p: ClusterProfile): { projectDir: string; nodeBinary: string } {
  return { projectDir: p.projectDir ?? CONTAINER_PROJECT_DIR, nodeBinary: p.node ?? 'node' };
}

/** A host directory bound at the same path inside the container, as shell words (already quoted). */
interface Mount {
  source: string;
  target: string;
}

/**
 * The words that start `command` inside the container: the run directory, the key directory, the workdir and the
 * profile's binds are bound at the same paths (or the bind's target), so every path on the agent's command line
 * is valid inside. No secret is on it: the key directory is bound and named, the agent reads the files.
 */
export function containerPrefix(c: ContainerSpec, mounts: Mount[]): string[] {
  const spec = (m: Mount, always: boolean): string =>
    always || m.target !== m.source ? `${m.source}:${m.target}` : m.source;
  const env = (flag: string): string[] => AGENT_ENV.flatMap((name) => [flag, name]);
  switch (c.runtime) {
    case 'apptainer':
    case 'singularity':
      // Apptainer and Singularity pass the host's environment through by default.
      return [
        c.runtime,
        'exec',
        ...(c.gpus ? ['--nv'] : []),
        '--bind',
        mounts.map((m) => spec(m, false)).join(','),
        '--pwd',
        '"$WORKDIR"',
        shQuoteExpandingUser(c.image),
      ];
    case 'enroot':
      // GPUs come from enroot's nvidia hook, which follows NVIDIA_VISIBLE_DEVICES (set by CUDA base images):
      // there is no flag to add, only this variable to clear when the profile wants none.
      return [
        'enroot',
        'start',
        ...mounts.flatMap((m) => ['--mount', spec(m, true)]),
        ...env('--env'),
        ...(c.gpus ? [] : ['--env', 'NVIDIA_VISIBLE_DEVICES=void']),
        shQuoteExpandingUser(c.image),
      ];
    case 'podman':
      // Host networking: the agent dials the coordinator like any process on the node. GPUs through CDI.
      return [
        'podman',
        'run',
        '--rm',
        '--network',
        'host',
        ...(c.gpus ? ['--device', 'nvidia.com/gpu=all'] : []),
        ...mounts.flatMap((m) => ['-v', spec(m, true)]),
        ...env('-e'),
        '-w',
        '"$WORKDIR"',
        shQuoteExpandingUser(c.image),
      ];
  }
}

/** What the job script binds: run directory, key directory, workdir, then the profile's binds (no duplicates). */
function containerMounts(p: ClusterProfile, runDir: string): Mount[] {
  const mounts: Mount[] = [{ source: shQuote(runDir), target: shQuote(runDir) }];
  if (p.keysDir !== undefined) {
    const keys = shQuoteExpandingUser(p.keysDir);
    mounts.push({ source: keys, target: keys });
  }
  mounts.push({ source: '"$WORKDIR"', target: '"$WORKDIR"' });
  for (const b of p.container?.binds ?? [])
    mounts.push({ source: shQuoteExpandingUser(b.source), target: shQuoteExpandingUser(b.target) });
  return mounts.filter((m, i) => mounts.findIndex((n) => n.target === m.target) === i);
}

export interface SubmitCommand {
  command: string;
  args: string[];
}

/** Quote one word for bash: '...' with embedded quotes closed and escaped. */
export function shQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Quote a path but let $USER/$HOME (and ${USER}/${HOME}) expand on the compute node, nothing else. */
export function shQuoteExpandingUser(path: string): string {
  const parts = path.split(/(\$\{?(?:USER|HOME)\}?)/);
  return parts
    .filter((p) => p !== '')
    .map((p) => (/^\$\{?(USER|HOME)\}?$/.test(p) ? `"\${${p.replace(/[${}]/g, '')}}"` : shQuote(p)))
    .join('');
}

function resourceArgs(dialect: DialectName, p: ClusterProfile): string[] {
  switch (dialect) {
    case 'pbspro': {
      let select = `select=1:ncpus=${p.cpus}`;
      if (p.gpus > 0) select += `:ngpus=${p.gpus}`;
      if (p.memory !== undefined) select += `:mem=${p.memory}`;
      return ['-l', select, '-l', `walltime=${p.walltime}`];
    }
    case 'torque': {
      const out = ['-l', `nodes=1:ppn=${p.cpus}${p.gpus > 0 ? `:gpus=${p.gpus}` : ''}`, '-l', `walltime=${p.walltime}`];
      if (p.memory !== undefined) out.push('-l', `mem=${p.memory}`);
      return out;
    }
    case 'slurm': {
      const out = ['--nodes=1', '--ntasks=1', `--cpus-per-task=${p.cpus}`, `--time=${p.walltime}`];
      if (p.gpus > 0) out.push(`--gres=gpu:${p.gpus}`);
      if (p.memory !== undefined) out.push(`--mem=${p.memory}`);
      return out;
    }
  }
}

/** The directives (also written into the script) and the full argument array for qsub/sbatch. */
export function submitCommand(input: JobScriptInput, scriptPath: string): SubmitCommand {
  const p = input.profile;
  const out = `${input.launchDir}/${input.jobName}-s${input.submission}`;
  if (p.dialect === 'slurm') {
    const args = ['--parsable', `--job-name=${input.jobName}`, ...resourceArgs('slurm', p)];
    if (input.count > 1) args.push(`--array=0-${input.count - 1}`);
    args.push(`--output=${out}-%A_%a.out`);
    if (p.queue !== undefined) args.push(`--partition=${p.queue}`);
    if (p.project !== undefined) args.push(`--account=${p.project}`);
    // Only these reach the job: the coordinator's own environment (which may hold secrets) stays here.
    args.push('--export=PATH,HOME,USER,LANG');
    args.push(scriptPath);
    return { command: 'sbatch', args };
  }
  const args = ['-N', input.jobName, ...resourceArgs(p.dialect, p)];
  if (input.count > 1) args.push(p.dialect === 'torque' ? '-t' : '-J', `0-${input.count - 1}`);
  // -o/-j on the command line: some qsub front ends ignore them inside the script.
  args.push('-j', 'oe', '-o', `${out}.out`);
  if (p.queue !== undefined) args.push('-q', p.queue);
  if (p.project !== undefined) args.push(p.dialect === 'torque' ? '-A' : '-P', p.project);
  args.push(scriptPath);
  return { command: 'qsub', args };
}

function directives(input: JobScriptInput, cmd: SubmitCommand): string[] {
  const flags = cmd.args.slice(0, -1).filter((a) => a !== '--parsable');
  if (cmd.command === 'sbatch') return flags.filter((a) => !a.startsWith('--export')).map((a) => `#SBATCH ${a}`);
  const lines: string[] = [];
  for (let i = 0; i < flags.length; i += 2) lines.push(`#PBS ${flags[i]} ${flags[i + 1] ?? ''}`.trimEnd());
  return lines;
}

/** The job script: readable, resubmittable by hand, and free of secrets. */
export function renderJobScript(input: JobScriptInput, scriptPath: string): string {
  const p = input.profile;
  const cmd = submitCommand(input, scriptPath);
  const slurm = p.scheduler === 'slurm';
  const agentWord = (name: string): string => `"${input.jobName}-s${input.submission}-\${INDEX}"${name}`;
  const paths = p.container === undefined ? input : containerPaths(p);
  const agentCommand = [
    ...(p.container === undefined ? [] : containerPrefix(p.container, containerMounts(p, input.runDir))),
    shQuote(paths.nodeBinary),
    // bin.mjs runs the compiled CLI when that checkout's dist/ is current, else the sources through tsx; with
    // PE_ARENA_WALLTIME_PRELOAD it arms the walltime drain first (node-agent/walltime.ts).
    shQuote(`${paths.projectDir}/src/bin.mjs`),
    'agent',
    '--coordinator',
    shQuote(input.coordinator),
    '--agent-id',
    agentWord(''),
    '--launcher-id',
    '"$LAUNCHER_ID"',
    '--log-file',
    `${shQuote(`${input.runDir}/logs/agents/`)}${agentWord('.log')}`,
    ...(p.keysDir === undefined ? [] : ['--keys-dir', shQuoteExpandingUser(p.keysDir)]),
    ...[...p.agentArgs, ...input.agentArgs].map(shQuote),
  ];
  const lines = [
    // A login shell where the set-up needs one (the site's `module` command comes from /etc/profile.d); the job gets no
    // other environment.
    p.loginShell ? '#!/bin/bash -l' : '#!/bin/bash',
    ...directives(input, cmd),
    `# pe-arena agents for run ${input.runId}: ${input.kind} submission ${input.submission}, ${input.count} task(s), profile ${p.name}.`,
    '# Submitted by the coordinator with:',
    `#   ${schedulerCommandPath(p.commandsDir, cmd.command)} ${cmd.args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : shQuote(a))).join(' ')}`,
    '# No secret is on a command line or in the environment: the agent reads its CURVE keys from the files named',
    '# by --keys-dir (mode 0600).',
    '',
    '# Site set-up (from the profile).',
    ...p.setup,
    // After the set-up: module scripts often read unset variables.
    'set -u',
    '',
    '# Walltime: the agent checkpoints and leaves PE_ARENA_WALLTIME_MARGIN_S before this job ends;',
    '# the coordinator submits a continuation before that.',
    'export PE_ARENA_JOB_START="$(date +%s)"',
    `export PE_ARENA_WALLTIME_S=${p.walltimeS}`,
    `export PE_ARENA_WALLTIME_MARGIN_S=${p.walltimeMarginS}`,
    'export PE_ARENA_WALLTIME_PRELOAD=1',
    '',
    '# Which task this is, read under Slurm, PBS Pro and Torque names alike; agents are told apart by id, not host.',
    'INDEX="${SLURM_ARRAY_TASK_ID:-${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-0}}}"',
    slurm
      ? 'if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then LAUNCHER_ID="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; else LAUNCHER_ID="${SLURM_JOB_ID:-unknown}"; fi'
      : 'LAUNCHER_ID="${PBS_JOBID:-${SLURM_JOB_ID:-unknown}}"',
    '',
    `WORKDIR=${shQuoteExpandingUser(p.workdir)}`,
    'mkdir -p "$WORKDIR" && cd "$WORKDIR" || { echo "pe-arena: cannot use working directory $WORKDIR" >&2; exit 1; }',
    `mkdir -p ${shQuote(`${input.runDir}/logs/agents`)}`,
    'echo "pe-arena: agent $LAUNCHER_ID (task $INDEX) on $(hostname) starting at $(date -u +%FT%TZ)"',
    '',
    ...(p.container === undefined
      ? []
      : [
          `# In a container (${p.container.runtime}, ${p.container.image}): node and pe-arena are the image's (${paths.projectDir});`,
          '# the run directory, the key directory and the workdir are bound in at the same paths.',
        ]),
    "# exec: the agent is the job's process, so qdel/scancel signals reach it (and it detaches nothing).",
    `exec ${agentCommand.join(' ')}`,
    '',
  ];
  return lines.join('\n');
}
