// `pe-arena run` and `pe-arena coordinator`: compile the experiment, make (or reopen) the run directory, bind the
// ROUTER, start the launcher and the progress view, and drain on SIGTERM/SIGINT. Resolves with the exit code.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { newRunId } from '../protocol/ids.ts';
import type { RunId } from '../protocol/messages.ts';
import { bindServer } from '../protocol/zmq-transport.ts';
import { initKeys, loadClusterKeys, serverCurve } from '../protocol/keys.ts';
import { expandUserPath } from './cluster-profile.ts';
import type { ClusterProfile } from './cluster-profile.ts';
import { Coordinator } from './coordinator.ts';
import type { Log } from './context.ts';
import { CoordinatorError, RunDirectoryError } from './errors.ts';
import { loadExperiment } from './experiment.ts';
import type { Experiment, TaskChecks } from './experiment.ts';
import { readJournal, replay } from './journal.ts';
import type { ReplayedRun } from './journal.ts';
import { advertisedAddress, createHpcLauncher } from './launchers/hpc.ts';
import { LocalLauncher } from './launchers/local.ts';
import { NoLauncher } from './launchers/none.ts';
import type { LauncherEvent, SchedulerLauncher } from './launchers/scheduler-common.ts';
import type { Launcher } from './launchers/types.ts';
import { formatComparisonSummary } from '../src/report/comparison.ts';
import { ProgressView } from './progress-view.ts';

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

export async function runCoordinatorProcess(options: RunOptions): Promise<number> {
  const out = options.out ?? process.stdout;
  const say = (line: string): void => void out.write(line + '\n');

  let experiment: Experiment;
  let runDir: string;
  let resume: ReplayedRun | undefined;
  // Scheduler submissions an earlier coordinator of a resumed run made: their live tasks are taken over.
  const adopt: string[] = [];
  let bind = options.bind ?? 'tcp://127.0.0.1:0';

  // pbs/slurm: the site profile is read (and checked, errors naming the field) before any run directory exists.
  const hpcName = options.launcher === 'pbs' || options.launcher === 'slurm' ? options.launcher : undefined;
  if (hpcName === undefined && (options.cluster !== undefined || options.dryRun === true)) {
    process.stderr.write(
      `pe-arena: --cluster and --dry-run go with --launcher pbs or slurm (not ${options.launcher})\n`,
    );
    return 2;
  }
  let hpc: { launcher: SchedulerLauncher; profile: ClusterProfile } | undefined;
  const ref: { coordinator?: Coordinator; log?: Logger } = {};
  if (hpcName !== undefined) {
    if (options.cluster === undefined) {
      process.stderr.write(`pe-arena: --launcher ${hpcName} needs --cluster configs/clusters/<site>.json\n`);
      return 2;
    }
    try {
      hpc = await createHpcLauncher(hpcName, {
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
    } catch (error) {
      process.stderr.write(`pe-arena: ${(error as Error).message}\n`);
      return 2;
    }
  }

  try {
    if (options.resume !== undefined) {
      runDir = resolve(options.resume);
      const expFile = join(runDir, 'experiment.json');
      if (!existsSync(expFile))
        throw new RunDirectoryError(`${runDir} is not a run directory: experiment.json is missing`);
      experiment = JSON.parse(readFileSync(expFile, 'utf8')) as Experiment;
      const entries = readJournal(join(runDir, 'journal.jsonl'));
      resume = replay(entries);
      for (const e of entries)
        if (e.type === 'launcher_event' && e.kind === 'submitted' && e.submissionId !== undefined)
          adopt.push(e.submissionId);
      // Agents reconnect to the address they know, so a restarted coordinator binds it again.
      if (options.bind === undefined) bind = resume.address;
    } else {
      if (options.experiment === undefined) throw new CoordinatorError('no experiment file given');
      const runId: RunId = newRunId();
      experiment = await loadExperiment(options.experiment, runId, undefined, options.taskChecks ?? {});
      runDir = resolve(options.runsDir ?? 'runs', runId);
      mkdirSync(join(runDir, 'logs', 'agents'), { recursive: true });
      writeFileSync(join(runDir, 'experiment.json'), JSON.stringify(experiment, null, 2) + '\n');
    }
  } catch (error) {
    process.stderr.write(`pe-arena: ${(error as Error).message}\n`);
    return 2;
  }

  const logger: Logger = pino(
    { base: { component: 'coordinator' } },
    pino.destination({ dest: join(runDir, 'logs', 'coordinator.log'), mkdir: true, sync: true }),
  );
  const log: Log = logger;
  ref.log = logger;

  // pbs/slurm: the address is open to other hosts unless it is an explicit loopback --bind, so CURVE is on by
  // default. A profile without keysDir gets a key pair made for this run (0600 files in runs/<runId>/keys, on
  // the shared filesystem the job script runs from); a resumed run reuses it.
  if (
    hpc !== undefined &&
    hpc.profile.keysDir === undefined &&
    !(options.bind !== undefined && isLoopback(options.bind))
  ) {
    const runKeys = join(runDir, 'keys');
    try {
      if (!existsSync(join(runKeys, 'cluster.key'))) await initKeys(runKeys);
    } catch (error) {
      process.stderr.write(`pe-arena: cannot create the run's CURVE keys in ${runKeys}: ${(error as Error).message}\n`);
      return 2;
    }
    hpc.profile.keysDir = runKeys;
  }
  // A keysDir turns CURVE on: the coordinator serves with the cluster key pair and admits only agents holding it
  // (the job script passes --keys-dir; no key is ever on a command line).
  let curve: ReturnType<typeof serverCurve> | undefined;
  if (hpc?.profile.keysDir !== undefined) {
    try {
      curve = serverCurve(await loadClusterKeys(expandUserPath(hpc.profile.keysDir)));
    } catch (error) {
      process.stderr.write(
        `pe-arena: ${(error as Error).message} (keysDir of ${hpc.profile.file}; create the keys with pe-arena keys init --dir ${hpc.profile.keysDir})\n`,
      );
      return 2;
    }
  }
  // pbs/slurm without --bind: all interfaces (compute nodes dial in), on the first free port of the profile's range.
  const binds =
    hpc !== undefined && options.bind === undefined && options.resume === undefined
      ? bindCandidates(hpc.profile)
      : [bind];

  let transport;
  let bindError: unknown;
  for (const address of binds) {
    bind = address;
    try {
      // The send queue is shared by all peers: a thousand agents joining at once need room for a burst of
      // welcomes, assignments and acks (the default, 1,000, dropped some).
      transport = await bindServer({
        address,
        highWaterMark: 100_000,
        log: (line) => logger.debug(line),
        ...(curve === undefined ? {} : { curve }),
      });
      break;
    } catch (error) {
      bindError = error;
    }
  }
  if (transport === undefined) {
    const what = binds.length > 1 ? `any of ${binds[0]}..${binds.at(-1)}` : bind;
    process.stderr.write(`pe-arena: cannot bind ${what}: ${(bindError as Error).message}\n`);
    return 2;
  }
  if (hpc !== undefined && curve === undefined && !isLoopback(transport.address)) {
    process.stderr.write(
      `pe-arena: warning: ${transport.address} is open to other hosts without encryption: ${hpc.profile.file} names no keysDir (pe-arena keys init, then "keysDir" in the profile)\n`,
    );
  }

  const agentArgs: string[] = [];
  if (options.backend !== undefined) agentArgs.push('--backend', options.backend);
  if (options.workloadModule !== undefined) agentArgs.push('--workload-module', resolve(options.workloadModule));
  if (options.agentDeathTimeoutMs !== undefined)
    agentArgs.push('--death-timeout-ms', String(options.agentDeathTimeoutMs));

  if (hpc !== undefined && options.dryRun === true) {
    // Write the job script as a real run would and print it; nothing is submitted and no coordinator serves.
    const events: LauncherEvent[] = [];
    hpc.launcher.onEvent((e) => events.push(e));
    try {
      await hpc.launcher.start({
        coordinator: advertisedAddress(transport.address, hpc.profile),
        count: options.agents ?? 1,
        runDir,
        agentArgs,
      });
      say(hpc.launcher.dryRunScript ?? '');
      for (const e of events) say(`pe-arena: ${e.text}`);
      const randomPort = options.bind === undefined && hpc.profile.portRange === undefined;
      say(
        `pe-arena: dry run: nothing was submitted${randomPort ? ' (the port above was free now; a real run binds its own)' : ''}`,
      );
      return 0;
    } catch (error) {
      process.stderr.write(`pe-arena: ${(error as Error).message}\n`);
      return 2;
    } finally {
      logger.flush();
      await transport.close().catch(() => undefined);
    }
  }

  let launcher: Launcher =
    hpc?.launcher ?? (options.launcher === 'local' && !options.customLauncher ? new LocalLauncher() : new NoLauncher());
  const coordinator = new Coordinator({
    experiment,
    runDir,
    transport,
    log,
    launcher,
    ...(resume === undefined ? {} : { resume }),
    // End-to-end tests damage uploads on purpose to see the real agent send them again.
    ...(process.env['PE_ARENA_FAULT_CORRUPT_UPLOADS']
      ? { corruptUploads: Number(process.env['PE_ARENA_FAULT_CORRUPT_UPLOADS']) || 0 }
      : {}),
  });
  ref.coordinator = coordinator;
  // Launcher events (submitted, queued, running, ended with the exit code, replacements) go to the journal and
  // the view; the launcher also appends them to launch/events.jsonl. A scheduler that keeps failing to answer is
  // journaled once per distinct message.
  let lastPollFailure = '';
  hpc?.launcher.onEvent((e) => {
    if (e.kind === 'poll_failed') {
      if (e.text === lastPollFailure) return;
      lastPollFailure = e.text;
    } else if (e.kind !== 'cancelled') lastPollFailure = '';
    coordinator.noteLauncherEvent(e);
  });
  const runId = experiment.jobs[0]?.runId ?? '';
  say(`pe-arena: run ${runId} (${experiment.name}, ${experiment.jobs.length} jobs) in ${runDir}`);
  say(
    `pe-arena: coordinator at ${transport.address}${options.launcher === 'none' ? ' (waiting for agents: pe-arena agent --coordinator ' + transport.address.replace('0.0.0.0', os.hostname()) + ')' : ''}`,
  );

  const viewMode = options.view ?? 'auto';
  const view =
    viewMode === 'off'
      ? undefined
      : new ProgressView(coordinator, {
          out: viewMode === 'plain' ? { write: (s: string) => out.write(s), isTTY: false } : out,
          ...(options.plainEverySec === undefined ? {} : { plainEverySec: options.plainEverySec }),
        });

  coordinator.start();
  view?.start();

  let signalled = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signalled++;
    if (signalled > 1) {
      process.stderr.write(`pe-arena: ${signal} again, exiting now\n`);
      process.exit(130);
    }
    logger.info({ signal }, `received ${signal}: draining`);
    void coordinator.stop(`coordinator received ${signal}`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let launchFailed = false;
  if (options.customLauncher) {
    try {
      const custom = await options.customLauncher({ coordinator, boundAddress: transport.address, runDir });
      launcher = custom.launcher;
      coordinator.attachLauncher(launcher);
      const agentArgs: string[] = options.backend === undefined ? [] : ['--backend', options.backend];
      await launcher.start({ coordinator: custom.agentAddress, count: custom.count, runDir, agentArgs });
      logger.info(
        { launcher: launcher.name, count: custom.count, address: custom.agentAddress },
        `launcher ${launcher.name} started ${custom.count} agents`,
      );
    } catch (error) {
      process.stderr.write(`pe-arena: the launcher failed: ${(error as Error).message}\n`);
      await coordinator.stop('the launcher failed');
    }
  } else if (hpc !== undefined) {
    const count = options.agents ?? 1;
    const address = advertisedAddress(transport.address, hpc.profile);
    try {
      await hpc.launcher.start({ coordinator: address, count, runDir, agentArgs, adopt });
      const kept = hpc.launcher.adopted;
      say(
        `pe-arena: ${kept > 0 ? `kept ${kept} queued or running agent(s) of the earlier coordinator, ` : ''}submitted ${count - Math.min(count, kept)} agent(s) through ${hpc.launcher.name === 'slurm' ? 'sbatch' : 'qsub'} (${hpc.launcher.submissionIds().join(', ')}); they dial ${address}`,
      );
      logger.info(
        { launcher: hpc.launcher.name, count, address, profile: hpc.profile.file },
        `launcher ${hpc.launcher.name} submitted ${count} agents`,
      );
    } catch (error) {
      launchFailed = true;
      process.stderr.write(`pe-arena: submitting agents failed: ${(error as Error).message}\n`);
      await coordinator.stop('submitting agents failed');
    }
  } else if (options.launcher === 'local') {
    const count = options.agents ?? Math.max(1, os.availableParallelism());
    const address = transport.address.replace('tcp://0.0.0.0:', 'tcp://127.0.0.1:');
    await launcher.start({ coordinator: address, count, runDir, agentArgs });
    logger.info({ count }, `started ${count} local agents`);
  }

  // Local agents that all died (e.g. a broken install) would leave the run waiting forever; so would a batch run
  // whose every task ended with the replacements used up (seen twice in a row: a replacement may be on its way).
  let batchGone = 0;
  const guard = setInterval(() => {
    const empty = launcher.alive() === 0 && coordinator.agents.size === 0 && coordinator.state === 'running';
    if (launcher.name === 'local' && empty) {
      process.stderr.write(`pe-arena: every local agent exited; see ${join(runDir, 'logs', 'agents')}\n`);
      void coordinator.stop('every local agent exited');
    } else if (hpc !== undefined && hpc.launcher.submissionIds().length > 0) {
      batchGone = empty ? batchGone + 1 : 0;
      if (batchGone >= 2) {
        process.stderr.write(
          `pe-arena: every ${hpc.launcher.name} task of the run ended and none is left to replace it; see ${join(runDir, 'launch')} and ${join(runDir, 'logs', 'agents')}\n`,
        );
        void coordinator.stop(`every ${hpc.launcher.name} task ended`);
      }
    }
  }, 5000);

  const outcome = await coordinator.done;
  clearInterval(guard);
  view?.stop();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  await launcher.stop(5000);
  logger.flush();
  if (outcome.report) {
    say('');
    say(formatComparisonSummary(outcome.report));
    say('');
    say(`results: ${join(runDir, 'final_comparison', 'comparison_report.json')}`);
    if (options.afterRun) {
      try {
        const files = await options.afterRun(runDir, (line) => logger.info(line));
        const html = files.find((f) => f.endsWith('report.html'));
        if (html !== undefined) say(`report:  ${html}`);
      } catch (error) {
        logger.error({ err: error }, 'the report failed');
        say(`pe-arena: the report could not be written (${(error as Error).message}); the results above are complete`);
      }
    }
  }
  if (launchFailed) return 2;
  if (outcome.stopped) {
    say(
      `pe-arena: stopped with ${outcome.done} done, ${outcome.failed} failed; continue with: pe-arena run --resume ${runDir}`,
    );
    return 0;
  }
  say(`pe-arena: ${outcome.done} done, ${outcome.failed} failed`);
  return outcome.failed > 0 ? 1 : 0;
}

/** Where a pbs/slurm coordinator binds: all interfaces, on each port of the profile's range in turn (at most 100), else any free port. */
function isLoopback(address: string): boolean {
  return /^tcp:\/\/(127\.|localhost[:/]|\[::1\])/.test(address);
}

function bindCandidates(profile: ClusterProfile): string[] {
  if (profile.portRange === undefined) return ['tcp://0.0.0.0:0'];
  const [lo, hi] = profile.portRange;
  const out: string[] = [];
  for (let port = lo; port <= hi && out.length < 100; port++) out.push(`tcp://0.0.0.0:${port}`);
  return out;
}
