// The agent job script and the submit command, per dialect. The script is meant to be read (and resubmitted by
// hand): it carries the same directives the submit command passes, plus that command in a comment. Every value
// from the profile or the run is single-quoted for the shell; the submit command is an argument array for
// execFile. No secret goes into either: the agent reads its CURVE keys from the files the script names.
import type { ClusterProfile, DialectName } from '../cluster-profile.ts';
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
  /** The pe-arena checkout as compute nodes see it. */
  projectDir: string;
  nodeBinary: string;
  /** The tsx loader to --import (a file URL or path). */
  tsxLoader: string;
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
  const agentCommand = [
    shQuote(input.nodeBinary),
    '--import',
    shQuote(input.tsxLoader),
    // Drains the agent at the walltime margin; see node-agent/walltime.ts.
    '--import',
    shQuote(`${input.projectDir}/node-agent/walltime.ts`),
    shQuote(`${input.projectDir}/src/cli.ts`),
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
    // A login shell: the site's `module` command comes from /etc/profile.d, and the job gets no other environment.
    '#!/bin/bash -l',
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
    "# exec: the agent is the job's process, so qdel/scancel signals reach it (and it detaches nothing).",
    `exec ${agentCommand.join(' ')}`,
    '',
  ];
  return lines.join('\n');
}
