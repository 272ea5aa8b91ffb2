// `pe-arena run` and `pe-arena coordinator`: compile the experiment, make (or reopen) the run directory, bind the
// ROUTER, start the launcher and the progress view, and drain on SIGTERM/SIGINT (one Ctrl-C drains, a second one
// later exits at once). Resolves with the exit code.
// runCoordinatorProcess reads as the list of these steps; each is a function below it.
import os from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Coordinator } from './coordinator.ts';
import type { Log } from './context.ts';
import { advertisedAddress } from './launchers/hpc.ts';
import { LocalLauncher } from './launchers/local.ts';
import { NoLauncher } from './launchers/none.ts';
import type { LauncherEvent } from './launchers/launcher-events.ts';
import type { Launcher } from './launchers/types.ts';
import { formatComparisonSummary } from '../src/report/comparison.ts';
import type { ComparisonSummary } from '../src/report/comparison.ts';
import { ProgressView } from './progress-view.ts';
import { setUpRun } from './run-setup.ts';
import type { HpcSetup, LauncherContext, RunOptions, RunSetup } from './run-setup.ts';

export type { LauncherFactory, RunOptions } from './run-setup.ts';

export async function runCoordinatorProcess(options: RunOptions): Promise<number> {
  const out = options.out ?? process.stdout;
  const say = (line: string): void => void out.write(line + '\n');
  // The launcher asks the coordinator (built later) how many agents the run still wants, and logs to its log.
  const ref: LauncherContext = {};
  let setup: RunSetup;
  try {
    setup = await setUpRun(options, ref);
  } catch (error) {
    process.stderr.write(`pe-arena: ${(error as Error).message}\n`);
    return 2;
  }
  if (setup.hpc !== undefined && options.dryRun === true) return printDryRun(setup, setup.hpc, options, say);

  const initialLauncher: Launcher =
    setup.hpc?.launcher ??
    (options.launcher === 'local' && !options.customLauncher ? new LocalLauncher() : new NoLauncher());
  const coordinator = startCoordinator(setup, initialLauncher, options, say);
  ref.coordinator = coordinator;
  const view = startProgressView(coordinator, options, out);
  const signals = drainOnSignals(coordinator, setup.logger);
  const { launcher, launchFailed } = await launchAgents(setup, coordinator, initialLauncher, options, say);
  const guard = stopWhenAgentsAreGone(setup, coordinator, launcher);

  const outcome = await coordinator.done;
  clearInterval(guard);
  view?.stop();
  signals.off();
  await launcher.stop(5000);
  setup.logger.flush();
  if (outcome.report) await reportResults(outcome.report, setup, options, say);
  if (launchFailed) return 2;
  if (outcome.stopped) {
    say(
      `pe-arena: stopped with ${outcome.done} done, ${outcome.failed} failed; continue with: pe-arena run --resume ${setup.runDir}`,
    );
    // Ctrl-C ends as an interrupted command does (128 + SIGINT), so `pe-arena run ... && next` stops there.
    return signals.received() === 'SIGINT' ? 130 : 0;
  }
  say(`pe-arena: ${outcome.done} done, ${outcome.failed} failed`);
  return outcome.failed > 0 ? 1 : 0;
}

/** Write the job script as a real run would and print it; nothing is submitted and no coordinator serves. */
async function printDryRun(
  setup: RunSetup,
  hpc: HpcSetup,
  options: RunOptions,
  say: (line: string) => void,
): Promise<number> {
  const events: LauncherEvent[] = [];
  hpc.launcher.onEvent((e) => events.push(e));
  try {
    await hpc.launcher.start({
      coordinator: advertisedAddress(setup.transport.address, hpc.profile),
      count: options.agents ?? 1,
      runDir: setup.runDir,
      agentArgs: setup.agentArgs,
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
    setup.logger.flush();
    await setup.transport.close().catch(() => undefined);
  }
}

function startCoordinator(
  setup: RunSetup,
  launcher: Launcher,
  options: RunOptions,
  say: (line: string) => void,
): Coordinator {
  const { experiment, runDir, transport, hpc } = setup;
  const log: Log = setup.logger;
  const coordinator = new Coordinator({
    experiment,
    runDir,
    transport,
    log,
    launcher,
    ...(setup.resume === undefined ? {} : { resume: setup.resume }),
    ...(setup.reused.length === 0 ? {} : { reused: setup.reused }),
    // End-to-end tests damage uploads on purpose to see the real agent send them again.
    ...(process.env['PE_ARENA_FAULT_CORRUPT_UPLOADS']
      ? { corruptUploads: Number(process.env['PE_ARENA_FAULT_CORRUPT_UPLOADS']) || 0 }
      : {}),
  });
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
  if (options.reuse !== undefined) {
    const from = setup.reused[0]?.fromRun ?? options.reuse;
    say(
      `pe-arena: ${setup.reused.length} finished job(s) taken over from run ${from}, ${experiment.jobs.length - setup.reused.length} to train`,
    );
    for (const { jobId, why } of setup.notReused) say(`pe-arena:   ${jobId} trains again: ${why}`);
  }
  say(
    `pe-arena: coordinator at ${transport.address}${options.launcher === 'none' ? ' (waiting for agents: pe-arena agent --coordinator ' + transport.address.replace('0.0.0.0', os.hostname()) + ')' : ''}`,
  );
  coordinator.start();
  return coordinator;
}

function startProgressView(
  coordinator: Coordinator,
  options: RunOptions,
  out: NodeJS.WriteStream,
): ProgressView | undefined {
  const viewMode = options.view ?? 'auto';
  if (viewMode === 'off') return undefined;
  const view = new ProgressView(coordinator, {
    out: viewMode === 'plain' ? { write: (s: string) => out.write(s), isTTY: false } : out,
    ...(options.plainEverySec === undefined ? {} : { plainEverySec: options.plainEverySec }),
  });
  view.start();
  return view;
}

/**
 * Signals within this long of the first count as the same press: the terminal delivers Ctrl-C to every process of
 * its foreground group, and tsx (npm start) relays it to the coordinator again when the coordinator's report of it
 * is late. A signal after it is a deliberate second press.
 */
export const SAME_PRESS_MS = 1_000;

/**
 * SIGINT/SIGTERM drain the run: every running job checkpoints at its current step and is acknowledged, the journal
 * records the stop. A second press (later than SAME_PRESS_MS) exits at once; the local agents die with us.
 */
function drainOnSignals(
  coordinator: Coordinator,
  logger: Logger,
): { off: () => void; received: () => NodeJS.Signals | undefined } {
  let first: { signal: NodeJS.Signals; at: number } | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    const now = Date.now();
    if (first === undefined) {
      first = { signal, at: now };
      logger.info({ signal }, `received ${signal}: draining`);
      process.stderr.write(
        `pe-arena: ${signal}: checkpointing the running jobs and stopping (press Ctrl-C again to exit at once)\n`,
      );
      void coordinator.stop(`coordinator received ${signal}`);
    } else if (now - first.at <= SAME_PRESS_MS) {
      logger.info({ signal, afterMs: now - first.at }, `${signal} again within ${SAME_PRESS_MS} ms: the same press`);
    } else {
      logger.warn({ signal }, `${signal} again: exiting now`);
      process.stderr.write(`pe-arena: ${signal} again, exiting now\n`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    off: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
    received: () => first?.signal,
  };
}

/** Start the agents: a custom launcher, a pbs/slurm submission, or local child processes (none: by hand). */
async function launchAgents(
  setup: RunSetup,
  coordinator: Coordinator,
  launcher: Launcher,
  options: RunOptions,
  say: (line: string) => void,
): Promise<{ launcher: Launcher; launchFailed: boolean }> {
  const { hpc, logger, transport, runDir, agentArgs } = setup;
  if (options.customLauncher) {
    let started = launcher;
    try {
      const custom = await options.customLauncher({ coordinator, boundAddress: transport.address, runDir });
      started = custom.launcher;
      coordinator.attachLauncher(started);
      const args: string[] = options.backend === undefined ? [] : ['--backend', options.backend];
      await started.start({ coordinator: custom.agentAddress, count: custom.count, runDir, agentArgs: args });
      logger.info(
        { launcher: started.name, count: custom.count, address: custom.agentAddress },
        `launcher ${started.name} started ${custom.count} agents`,
      );
    } catch (error) {
      process.stderr.write(`pe-arena: the launcher failed: ${(error as Error).message}\n`);
      await coordinator.stop('the launcher failed');
    }
    return { launcher: started, launchFailed: false };
  }
  if (hpc !== undefined) {
    const count = options.agents ?? 1;
    const address = advertisedAddress(transport.address, hpc.profile);
    try {
      await hpc.launcher.start({ coordinator: address, count, runDir, agentArgs, adopt: setup.adopt });
      const kept = hpc.launcher.adopted;
      say(
        `pe-arena: ${kept > 0 ? `kept ${kept} queued or running agent(s) of the earlier coordinator, ` : ''}submitted ${count - Math.min(count, kept)} agent(s) through ${hpc.launcher.name === 'slurm' ? 'sbatch' : 'qsub'} (${hpc.launcher.submissionIds().join(', ')}); they dial ${address}`,
      );
      logger.info(
        { launcher: hpc.launcher.name, count, address, profile: hpc.profile.file },
        `launcher ${hpc.launcher.name} submitted ${count} agents`,
      );
      return { launcher, launchFailed: false };
    } catch (error) {
      process.stderr.write(`pe-arena: submitting agents failed: ${(error as Error).message}\n`);
      await coordinator.stop('submitting agents failed');
      return { launcher, launchFailed: true };
    }
  }
  if (options.launcher === 'local') {
    const count = options.agents ?? Math.max(1, os.availableParallelism());
    const address = transport.address.replace('tcp://0.0.0.0:', 'tcp://127.0.0.1:');
    await launcher.start({ coordinator: address, count, runDir, agentArgs });
    logger.info({ count }, `started ${count} local agents`);
  }
  return { launcher, launchFailed: false };
}

/**
 * Local agents that all died (e.g. a broken install) would leave the run waiting forever; so would a batch run
 * whose every task ended with the replacements used up (seen twice in a row: a replacement may be on its way).
 */
function stopWhenAgentsAreGone(setup: RunSetup, coordinator: Coordinator, launcher: Launcher): NodeJS.Timeout {
  const { hpc, runDir } = setup;
  let batchGone = 0;
  return setInterval(() => {
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
}

/** The comparison table, where the results are, and the full report when the CLI wired one. */
async function reportResults(
  report: ComparisonSummary,
  setup: RunSetup,
  options: RunOptions,
  say: (line: string) => void,
): Promise<void> {
  say('');
  say(formatComparisonSummary(report));
  say('');
  say(`results: ${join(setup.runDir, 'final_comparison', 'comparison_report.json')}`);
  if (!options.afterRun) return;
  try {
    const files = await options.afterRun(setup.runDir, (line) => setup.logger.info(line));
    const html = files.find((f) => f.endsWith('report.html'));
    if (html !== undefined) say(`report:  ${html}`);
  } catch (error) {
    setup.logger.error({ err: error }, 'the report failed');
    say(`pe-arena: the report could not be written (${(error as Error).message}); the results above are complete`);
  }
}
