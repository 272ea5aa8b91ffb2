// The start-up steps of `pe-arena run`: the site profile and batch launcher, the run directory (new or resumed),
// the coordinator's log, CURVE keys, and the bound ROUTER. Each failure is an error whose message the CLI prints.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { newRunId } from '../protocol/ids.ts';
import type { JobId, RunId } from '../protocol/messages.ts';
import { bindServer } from '../protocol/zmq-transport.ts';
import { initKeys, loadClusterKeys, serverCurve } from '../protocol/keys.ts';
import { expandUserPath } from './cluster-profile.ts';
import type { ClusterProfile } from './cluster-profile.ts';
import type { Coordinator } from './coordinator.ts';
import { CoordinatorError, RunDirectoryError } from './errors.ts';
import { loadExperiment } from './experiment.ts';
import type { Experiment, TaskChecks } from './experiment.ts';
import { readJournal, replay } from './journal.ts';
import type { ReplayedRun } from './journal.ts';
import { copyReusedJobs, reusableJobs } from './reuse.ts';
import type { ReusedJob } from './reuse.ts';
import { createHpcLauncher } from './launchers/hpc.ts';
import type { SchedulerLauncher } from './launchers/scheduler-launcher.ts';
import type { Launcher } from './launchers/types.ts';

/**
 * A launcher other than local/none (the pbs and slurm launchers of issue 6), built once the coordinator is bound:
 * it gets the coordinator (e.g. to size its demand) and the bound address, and says which address agents dial
 * and how many to start.
 */
export type LauncherFactory = (context: {
  coordinator: Coordinator;
  boundAddress: string;
  runDir: string;
}) => Promise<{ launcher: Launcher; agentAddress: string; count: number }>;

export interface RunOptions {
  /** Path of the experiment file (ignored with resume). */
  experiment?: string;
  /** A run directory to continue. */
  resume?: string;
  /** A new run takes over this earlier run's finished jobs whose job spec is the same (coordinator/reuse.ts). */
  reuse?: string;
  /** local: child processes; none: agents started by hand; pbs/slurm: one job array through qsub/sbatch. */
  launcher: 'local' | 'none' | 'pbs' | 'slurm';
  /** Site profile (configs/clusters/<site>.json) for --launcher pbs|slurm. */
  cluster?: string;
  /** pbs/slurm: write and print the job script, submit nothing. */
  dryRun?: boolean;
  /** Takes precedence over `launcher` when given. */
  customLauncher?: LauncherFactory;
  /** Agents to start: local default one per core; pbs/slurm the array size, default 1. */
  agents?: number;
  /**
   * ROUTER address; a resumed run rebinds the address in its journal unless this is given. With pbs/slurm and
   * neither, a port of the profile's head.portRange on all interfaces (else any free port).
   */
  bind?: string;
  runsDir?: string;
  /** Passed through to local agents. */
  backend?: string;
  workloadModule?: string;
  agentDeathTimeoutMs?: number;
  /** 'auto' (TTY or plain by stdout), 'plain', or 'off'. */
  view?: 'auto' | 'plain' | 'off';
  plainEverySec?: number;
  out?: NodeJS.WriteStream;
  /** Task validation from the workload's data code (wired by the CLI; skipped with a test workload). */
  taskChecks?: TaskChecks;
  /**
   * After a finished run: the full report (statistics, plots, HTML) from src/report, wired by the CLI so the
   * coordinator itself stays free of it. Returns the files written; a failure is reported, never fatal.
   */
  afterRun?: (runDir: string, log: (line: string) => void) => Promise<string[]>;
}

/** Start-up, in order: the batch launcher (if any), the run directory, its log, CURVE, the bound ROUTER. */
export async function setUpRun(options: RunOptions, ref: LauncherContext): Promise<RunSetup> {
  const hpc = await createSchedulerLauncher(options, ref);
  const run = await openRunDirectory(options);
  const logger = openCoordinatorLog(run.runDir);
  ref.log = logger;
  const curve = await enableCurve(options, hpc, run.runDir);
  const transport = await bindCoordinator(options, hpc, run.bind, curve, logger);
  return { ...run, hpc, logger, transport, agentArgs: localAgentArgs(options) };
}

/** The launcher asks the coordinator (built after it) how many agents the run still wants, and logs to its log. */
export interface LauncherContext {
  coordinator?: Coordinator;
  log?: Logger;
}

export type HpcSetup = { launcher: SchedulerLauncher; profile: ClusterProfile };

/** What start-up made: the run (new or resumed), its log, the bound transport, the launcher's agent arguments. */
export interface RunSetup extends RunDirectory {
  hpc: HpcSetup | undefined;
  logger: Logger;
  transport: Awaited<ReturnType<typeof bindServer>>;
  agentArgs: string[];
}

/** pbs/slurm: the site profile is read (and checked, errors naming the field) before any run directory exists. */
async function createSchedulerLauncher(options: RunOptions, ref: LauncherContext): Promise<HpcSetup | undefined> {
  const hpcName = options.launcher === 'pbs' || options.launcher === 'slurm' ? options.launcher : undefined;
  if (hpcName === undefined) {
    if (options.cluster !== undefined || options.dryRun === true)
      throw new CoordinatorError(`--cluster and --dry-run go with --launcher pbs or slurm (not ${options.launcher})`);
    return undefined;
  }
  if (options.cluster === undefined)
    throw new CoordinatorError(`--launcher ${hpcName} needs --cluster configs/clusters/<site>.json`);
  return createHpcLauncher(hpcName, {
    clusterFile: options.cluster,
    dryRun: options.dryRun === true,
    // Agents the run can still use: replacements and continuations only while there is work, queued extras
    // cancelled once there is none.
    demand: () => {
      const c = ref.coordinator?.scheduler.counts();
      return c === undefined ? Number.POSITIVE_INFINITY : c.pending + c.assigned + c.running + c.evaluating;
    },
    log: (line) => ref.log?.info({ launcher: hpcName }, `launcher: ${line}`),
  });
}

interface RunDirectory {
  experiment: Experiment;
  runDir: string;
  resume: ReplayedRun | undefined;
  /** A new run's jobs finished by the --reuse run (copied in), and its jobs that were not taken, with why. */
  reused: ReusedJob[];
  notReused: { jobId: JobId; why: string }[];
  /** Scheduler submissions an earlier coordinator of a resumed run made: their live tasks are taken over. */
  adopt: string[];
  bind: string;
}

/** A new run (compile the experiment, make runs/<runId>/) or a resumed one (read back its journal). */
async function openRunDirectory(options: RunOptions): Promise<RunDirectory> {
  if (options.resume !== undefined) {
    const runDir = resolve(options.resume);
    const expFile = join(runDir, 'experiment.json');
    if (!existsSync(expFile))
      throw new RunDirectoryError(`${runDir} is not a run directory: experiment.json is missing`);
    const experiment = JSON.parse(readFileSync(expFile, 'utf8')) as Experiment;
    const entries = readJournal(join(runDir, 'journal.jsonl'));
    const resume = replay(entries);
    const adopt: string[] = [];
    for (const e of entries)
      if (e.type === 'launcher_event' && e.kind === 'submitted' && e.submissionId !== undefined)
        adopt.push(e.submissionId);
    if (options.reuse !== undefined)
      throw new CoordinatorError('--reuse starts a new run; it does not go with --resume');
    // Agents reconnect to the address they know, so a restarted coordinator binds it again.
    return { experiment, runDir, resume, reused: [], notReused: [], adopt, bind: options.bind ?? resume.address };
  }
  if (options.experiment === undefined) throw new CoordinatorError('no experiment file given');
  const runId: RunId = newRunId();
  const experiment = await loadExperiment(options.experiment, runId, undefined, options.taskChecks ?? {});
  // Checked before the run directory exists, so a wrong --reuse leaves nothing behind.
  const { reused, skipped } =
    options.reuse === undefined ? { reused: [], skipped: [] } : reusableJobs(experiment, options.reuse);
  const runDir = resolve(options.runsDir ?? 'runs', runId);
  mkdirSync(join(runDir, 'logs', 'agents'), { recursive: true });
  writeFileSync(join(runDir, 'experiment.json'), JSON.stringify(experiment, null, 2) + '\n');
  if (options.reuse !== undefined) copyReusedJobs(options.reuse, runDir, reused);
  const bind = options.bind ?? 'tcp://127.0.0.1:0';
  return { experiment, runDir, resume: undefined, reused, notReused: skipped, adopt: [], bind };
}

function openCoordinatorLog(runDir: string): Logger {
  return pino(
    { base: { component: 'coordinator' } },
    pino.destination({ dest: join(runDir, 'logs', 'coordinator.log'), mkdir: true, sync: true }),
  );
}

/**
 * pbs/slurm: the address is open to other hosts unless it is an explicit loopback --bind, so CURVE is on by
 * default. A profile without keysDir gets a key pair made for this run (0600 files in runs/<runId>/keys, on the
 * shared filesystem the job script runs from); a resumed run reuses it. A keysDir turns CURVE on: the coordinator
 * serves with the cluster key pair and admits only agents holding it (no key is ever on a command line).
 */
async function enableCurve(
  options: RunOptions,
  hpc: HpcSetup | undefined,
  runDir: string,
): Promise<ReturnType<typeof serverCurve> | undefined> {
  if (hpc === undefined) return undefined;
  if (hpc.profile.keysDir === undefined && !(options.bind !== undefined && isLoopback(options.bind))) {
    const runKeys = join(runDir, 'keys');
    try {
      if (!existsSync(join(runKeys, 'cluster.key'))) await initKeys(runKeys);
    } catch (error) {
      throw new CoordinatorError(`cannot create the run's CURVE keys in ${runKeys}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    hpc.profile.keysDir = runKeys;
  }
  if (hpc.profile.keysDir === undefined) return undefined;
  try {
    return serverCurve(await loadClusterKeys(expandUserPath(hpc.profile.keysDir)));
  } catch (error) {
    throw new CoordinatorError(
      `${(error as Error).message} (keysDir of ${hpc.profile.file}; create the keys with pe-arena keys init --dir ${hpc.profile.keysDir})`,
      { cause: error },
    );
  }
}

/** The ROUTER: pbs/slurm without --bind take all interfaces (compute nodes dial in), on the profile's first free port. */
async function bindCoordinator(
  options: RunOptions,
  hpc: HpcSetup | undefined,
  bind: string,
  curve: ReturnType<typeof serverCurve> | undefined,
  logger: Logger,
): Promise<RunSetup['transport']> {
  const binds =
    hpc !== undefined && options.bind === undefined && options.resume === undefined
      ? bindCandidates(hpc.profile)
      : [bind];
  let bindError: unknown;
  for (const address of binds) {
    try {
      // The send queue is shared by all peers: a thousand agents joining at once need room for a burst of
      // welcomes, assignments and acks (the default, 1,000, dropped some).
      const transport = await bindServer({
        address,
        highWaterMark: 100_000,
        log: (line) => logger.debug(line),
        ...(curve === undefined ? {} : { curve }),
      });
      if (hpc !== undefined && curve === undefined && !isLoopback(transport.address)) {
        process.stderr.write(
          `pe-arena: warning: ${transport.address} is open to other hosts without encryption: ${hpc.profile.file} names no keysDir (pe-arena keys init, then "keysDir" in the profile)\n`,
        );
      }
      return transport;
    } catch (error) {
      bindError = error;
    }
  }
  const what = binds.length > 1 ? `any of ${binds[0]}..${binds.at(-1)}` : binds[0];
  throw new CoordinatorError(`cannot bind ${what}: ${(bindError as Error).message}`, { cause: bindError });
}

export function localAgentArgs(options: RunOptions): string[] {
  const agentArgs: string[] = [];
  if (options.backend !== undefined) agentArgs.push('--backend', options.backend);
  if (options.workloadModule !== undefined) agentArgs.push('--workload-module', resolve(options.workloadModule));
  if (options.agentDeathTimeoutMs !== undefined)
    agentArgs.push('--death-timeout-ms', String(options.agentDeathTimeoutMs));
  return agentArgs;
}

export function isLoopback(address: string): boolean {
  return /^tcp:\/\/(127\.|localhost[:/]|\[::1\])/.test(address);
}

/** Where a pbs/slurm coordinator binds: all interfaces, on each port of the profile's range in turn (at most 100), else any free port. */
function bindCandidates(profile: ClusterProfile): string[] {
  if (profile.portRange === undefined) return ['tcp://0.0.0.0:0'];
  const [lo, hi] = profile.portRange;
  const out: string[] = [];
  for (let port = lo; port <= hi && out.length < 100; port++) out.push(`tcp://0.0.0.0:${port}`);
  return out;
}
