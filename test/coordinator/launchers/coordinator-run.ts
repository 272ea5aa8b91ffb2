// Shared by slurm-run.test.ts and pbs-run.test.ts: the real Coordinator on a real socket with a launcher of a real
// scheduler (fake workload), sized by the run's demand as `pe-arena run` sizes it, cleaned up after the test
// (t.after) whatever happened.
import type { TestContext } from 'node:test';
import { join } from 'node:path';
import { bindServer } from '../../../protocol/zmq-transport.ts';
import { newRunId } from '../../../protocol/ids.ts';
import type { RunId } from '../../../protocol/messages.ts';
import { Coordinator } from '../../../coordinator/coordinator.ts';
import type { RunOutcome } from '../../../coordinator/coordinator.ts';
import { compileExperiment } from '../../../coordinator/experiment.ts';
import type { Experiment } from '../../../coordinator/experiment.ts';
import { loadClusterProfile } from '../../../coordinator/cluster-profile.ts';
import type { SchedulerLauncher } from '../../../coordinator/launchers/scheduler-launcher.ts';
import { fakeWorkload, quickExperiment, repoRoot, tempRunDir, waitFor } from './harness.ts';
import type { RealScheduler } from './harness.ts';

export interface CoordinatorRun {
  readonly experiment: Experiment;
  readonly runDir: string;
  readonly coordinator: Coordinator;
  readonly launcher: SchedulerLauncher;
  /** The array submission that started the agents. */
  readonly arrayId: string;
  /** The run's outcome, once it is over (an event: the test's own timeout bounds it). */
  done(): Promise<RunOutcome>;
  /** stop() the launcher (3 s grace); what the scheduler still holds of the run afterwards. */
  stopAndList(): Promise<string[]>;
}

/**
 * Starts the coordinator and `agents` agents from one array submission of the scheduler's test profile, and waits
 * until every agent has joined. The launcher replaces a lost agent only while jobs are left for it.
 */
export async function coordinatorRun(
  t: TestContext,
  scheduler: RealScheduler,
  options: { name: string; agents: number; steps: number; stepDelayMs: number; checkpointEvery?: number },
): Promise<CoordinatorRun> {
  const runId = newRunId() as RunId;
  const { runDir, remove } = tempRunDir(`pe-arena-${options.name}-`, runId);
  const experiment = compileExperiment(
    quickExperiment(options.name, {
      steps: options.steps,
      params: { stepDelayMs: options.stepDelayMs },
      maxAttempts: 4,
      ...(options.checkpointEvery === undefined ? {} : { checkpointEvery: options.checkpointEvery }),
    }),
    `${options.name}.json`,
    runId,
  );
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const profile = await loadClusterProfile(join(repoRoot, scheduler.profile));
  const ref: { coordinator?: Coordinator } = {};
  // The run's demand: jobs not finished yet, at most one per agent.
  const launcher = scheduler.createLauncher(profile, {
    pollIntervalMs: 1_000,
    demand: () => {
      const c = ref.coordinator?.scheduler.counts();
      return c === undefined
        ? options.agents
        : Math.min(options.agents, c.pending + c.assigned + c.running + c.evaluating);
    },
  });
  const coordinator = new Coordinator({ experiment, runDir, transport: server, launcher, drainMs: 3_000 });
  ref.coordinator = coordinator;
  let finished = false;
  let launcherStopped = false;
  t.after(async () => {
    if (!finished) await coordinator.stop('test over');
    if (!launcherStopped) await launcher.stop(3_000);
    await server.close().catch(() => undefined);
    remove();
  });
  coordinator.start();
  await launcher.start({
    coordinator: server.address,
    count: options.agents,
    runDir,
    agentArgs: ['--workload-module', fakeWorkload, '--death-timeout-ms', '20000'],
  });
  const arrayId = launcher.submissionIds()[0]!;
  await waitFor(`${options.agents} agents to join`, 60_000, () =>
    coordinator.agents.size >= options.agents ? true : undefined,
  );
  return {
    experiment,
    runDir,
    coordinator,
    launcher,
    arrayId,
    done: async () => {
      const outcome = await coordinator.done;
      finished = true;
      return outcome;
    },
    stopAndList: async () => {
      await launcher.stop(3_000);
      launcherStopped = true;
      return scheduler.leftovers(launcher.scheduledJobName);
    },
  };
}

/** The first job past `step` that an agent runs, with that agent: the one a test cancels from outside. */
export function busyJob(run: CoordinatorRun, step: number) {
  const c = run.coordinator;
  return waitFor(`a job past step ${step}`, 60_000, () => {
    const job = [...c.scheduler.jobs.values()].find(
      (j) => j.state === 'running' && j.step >= step && j.agentId !== undefined,
    );
    return job === undefined ? undefined : { job, agent: c.agents.get(job.agentId!)! };
  });
}
