// The runtime commands: `run` (coordinator + local agents), `coordinator` (head node), `agent` (compute node)
// and `status`. Parsing only; the work lives in coordinator/ and node-agent/.
import { InvalidArgumentError } from 'commander';
import type { Command } from 'commander';
import type { ClientCurve } from '../../protocol/zmq-transport.ts';

function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1)
      throw new InvalidArgumentError(`${name} must be a positive integer, got '${value}'`);
    return n;
  };
}

type LauncherName = 'local' | 'none' | 'pbs' | 'slurm';

function launcherName(value: string): LauncherName {
  if (value !== 'local' && value !== 'none' && value !== 'pbs' && value !== 'slurm')
    throw new InvalidArgumentError(`launcher must be local, none, pbs or slurm, got '${value}'`);
  return value;
}

interface RunFlags {
  agents?: number;
  /** Alias of --agents (the issue's `--launcher pbs --nodes 5`). */
  nodes?: number;
  launcher: LauncherName;
  cluster?: string;
  dryRun?: boolean;
  bind?: string;
  runsDir: string;
  resume?: string;
  reuse?: string;
  backend?: string;
  workloadModule?: string;
  agentDeathTimeoutMs?: number;
  view: string;
  plainEvery?: number;
  report: boolean;
}

async function runOrCoordinate(experiment: string | undefined, flags: RunFlags, cmd: Command): Promise<void> {
  // Imported on use, so `pe-arena agent` never loads the coordinator (and the coordinator never loads TF.js).
  const { runCoordinatorProcess } = await import('../../coordinator/run.ts');
  const view = flags.view === 'plain' || flags.view === 'off' ? flags.view : 'auto';
  if (experiment === undefined && flags.resume === undefined) {
    process.stderr.write(
      'pe-arena: give an experiment file (e.g. configs/experiments/quick.json) or --resume runs/<runId>\n',
    );
    process.exitCode = 2;
    return;
  }
  if (flags.nodes !== undefined && flags.agents !== undefined && flags.nodes !== flags.agents) {
    process.stderr.write(
      `pe-arena: --nodes ${flags.nodes} and --agents ${flags.agents} disagree; --nodes is another name for --agents\n`,
    );
    process.exitCode = 2;
    return;
  }
  const agents = flags.agents ?? flags.nodes;
  const batch = flags.launcher === 'pbs' || flags.launcher === 'slurm';
  // `pe-arena coordinator` defaults --bind to tcp://0.0.0.0:5555; with pbs/slurm the profile's port range decides
  // unless --bind was given on the command line.
  const bind = batch && cmd.getOptionValueSource('bind') === 'default' ? undefined : flags.bind;
  // The data code knows the tasks: validate them at start (not on the first agent). A test workload has its own
  // params, so its experiments are not checked against the real generators.
  let taskChecks = {};
  if (flags.workloadModule === undefined) {
    const { validateTask, measureMaxLength } = await import('../data/tasks.ts');
    taskChecks = {
      validate: validateTask,
      maxLength: (task: Parameters<typeof measureMaxLength>[0]) => measureMaxLength(task, 500),
    };
  }
  const code = await runCoordinatorProcess({
    taskChecks,
    ...(flags.report === false
      ? {}
      : {
          afterRun: async (runDir: string, log: (line: string) => void) => {
            const { writeReport } = await import('../report/index.ts');
            // Attention heatmaps load every final model: worth it on a real run, skipped for test workloads.
            return (await writeReport(runDir, { log, attention: flags.workloadModule === undefined })).files;
          },
        }),
    launcher: flags.launcher,
    runsDir: flags.runsDir,
    view,
    ...(experiment === undefined ? {} : { experiment }),
    ...(flags.resume === undefined ? {} : { resume: flags.resume }),
    ...(flags.reuse === undefined ? {} : { reuse: flags.reuse }),
    ...(agents === undefined ? {} : { agents }),
    ...(bind === undefined ? {} : { bind }),
    ...(flags.cluster === undefined ? {} : { cluster: flags.cluster }),
    ...(flags.dryRun === true ? { dryRun: true } : {}),
    ...(flags.backend === undefined ? {} : { backend: flags.backend }),
    ...(flags.workloadModule === undefined ? {} : { workloadModule: flags.workloadModule }),
    ...(flags.agentDeathTimeoutMs === undefined ? {} : { agentDeathTimeoutMs: flags.agentDeathTimeoutMs }),
    ...(flags.plainEvery === undefined ? {} : { plainEverySec: flags.plainEvery }),
  });
  process.exit(code);
}

export function registerRuntimeCommands(program: Command): void {
  withRunOptions(
    program
      .command('run')
      .argument('[experiment]', 'experiment file, e.g. configs/experiments/quick.json')
      .description('run an experiment: a coordinator and local agents, live progress, comparison table'),
    'local',
    undefined,
  ).action(async (experiment: string | undefined, flags: RunFlags, cmd: Command) =>
    runOrCoordinate(experiment, flags, cmd),
  );

  withRunOptions(
    program
      .command('coordinator')
      .argument('[experiment]', 'experiment file')
      .description('run the coordinator on a head node; agents connect with pe-arena agent'),
    'none',
    'tcp://0.0.0.0:5555',
  ).action(async (experiment: string | undefined, flags: RunFlags, cmd: Command) =>
    runOrCoordinate(experiment, flags, cmd),
  );

  program
    .command('agent')
    .description('run a node agent that connects to a coordinator and trains the jobs it is given')
    .requiredOption('--coordinator <address>', 'the coordinator, e.g. tcp://head:5555')
    .option('--backend <name>', 'force a backend: tensorflow-gpu, tensorflow, wasm, cpu')
    .option('--agent-id <id>', "this agent's id (default: a fresh one)")
    .option('--log-file <file>', 'write logs here instead of stdout')
    .option(
      '--death-timeout-ms <ms>',
      'exit after hearing nothing from the coordinator for this long (default 60000)',
      positiveInt('--death-timeout-ms'),
    )
    .option(
      '--drain-timeout-ms <ms>',
      "on SIGTERM, wait this long at most for the checkpoint's acknowledgement, then exit; keep it a few seconds under the scheduler's kill delay (default 5000)",
      positiveInt('--drain-timeout-ms'),
    )
    .option('--workload-module <path>', 'module exporting createWorkload (tests)')
    .option('--launcher-id <id>', "the batch scheduler's id for this agent")
    .option(
      '--keys-dir <dir>',
      'turn CURVE on with the cluster key pair in this directory (cluster.key, from pe-arena keys init)',
    )
    .action((flags: AgentFlags) => startAgent(flags));

  program
    .command('status')
    .argument('<target>', 'a run directory, or a running coordinator tcp://host:port')
    .description('show the jobs and agents of a run')
    .option('--json', 'print the raw status as JSON')
    .option('--keys-dir <dir>', 'CURVE keys for a coordinator that runs with them (its keysDir, or runs/<runId>/keys)')
    .action((target: string, flags: StatusFlags) => showStatus(target, flags));
}

/** The options `run` and `coordinator` share; they differ in the launcher and bind address they default to. */
function withRunOptions(cmd: Command, launcherDefault: LauncherName, bindDefault: string | undefined): Command {
  return cmd
    .option(
      '--agents <n>',
      'agents to start (local: default one per core; pbs/slurm: the job array size, default 1)',
      positiveInt('--agents'),
    )
    .option(
      '--nodes <n>',
      'the same as --agents (reads better with pbs/slurm: one agent per node)',
      positiveInt('--nodes'),
    )
    .option(
      '--launcher <name>',
      'local (child processes), none (agents started by hand), pbs (qsub) or slurm (sbatch)',
      launcherName,
      launcherDefault,
    )
    .option('--cluster <file>', 'site profile for pbs/slurm, e.g. configs/clusters/iitd.json')
    .option('--dry-run', 'pbs/slurm: write and print the job script, submit nothing')
    .option(
      '--bind <address>',
      `ROUTER address${bindDefault ? '' : ' (default tcp://127.0.0.1:<free port>)'}`,
      bindDefault,
    )
    .option('--runs-dir <dir>', 'where run directories go', 'runs')
    .option('--resume <runDir>', 'continue an interrupted run from its journal')
    .option('--reuse <runDir>', "a new run takes over this run's finished jobs whose job is the same; trains the rest")
    .option('--backend <name>', 'TensorFlow.js backend for local agents (tensorflow-gpu, tensorflow, wasm, cpu)')
    .option('--workload-module <path>', 'module exporting createWorkload, for local agents (tests)')
    .option(
      '--agent-death-timeout-ms <ms>',
      'local agents exit after hearing nothing for this long',
      positiveInt('--agent-death-timeout-ms'),
    )
    .option('--view <mode>', 'auto (live on a TTY, plain lines otherwise), plain, or off', 'auto')
    .option('--plain-every <s>', 'seconds between plain progress lines', positiveInt('--plain-every'))
    .option('--no-report', 'skip the full report (statistics, plots, report.html) at the end');
}

interface AgentFlags {
  coordinator: string;
  backend?: string;
  agentId?: string;
  logFile?: string;
  deathTimeoutMs?: number;
  drainTimeoutMs?: number;
  workloadModule?: string;
  launcherId?: string;
  keysDir?: string;
}

async function startAgent(flags: AgentFlags): Promise<void> {
  const { runAgent } = await import('../../node-agent/run.ts');
  type AgentOptions = Parameters<typeof runAgent>[0];
  const options: AgentOptions = { coordinator: flags.coordinator };
  if (flags.backend !== undefined) options.backend = flags.backend as NonNullable<AgentOptions['backend']>;
  if (flags.agentId !== undefined) options.agentId = flags.agentId;
  if (flags.logFile !== undefined) options.logFile = flags.logFile;
  if (flags.deathTimeoutMs !== undefined) options.deathTimeoutMs = flags.deathTimeoutMs;
  if (flags.drainTimeoutMs !== undefined) options.drainTimeoutMs = flags.drainTimeoutMs;
  if (flags.workloadModule !== undefined) options.workloadModule = flags.workloadModule;
  if (flags.launcherId !== undefined) options.launcherId = flags.launcherId;
  if (flags.keysDir !== undefined) {
    // Keys come from files named on the command line, never the command line itself (ps, qstat -f show it).
    const { clientCurve, loadClusterKeys } = await import('../../protocol/keys.ts');
    try {
      options.curve = clientCurve(await loadClusterKeys(flags.keysDir));
    } catch (error) {
      process.stderr.write(`pe-arena agent: ${(error as Error).message}\n`);
      process.exit(1);
    }
  }
  // runAgent validates the options (e.g. the backend name) and says what is wrong.
  const code = await runAgent(options);
  process.exit(code);
}

interface StatusFlags {
  json?: boolean;
  keysDir?: string;
}

async function showStatus(target: string, flags: StatusFlags): Promise<void> {
  const { statusFromCoordinator, statusFromRunDir, schedulerTasksFromRunDir, formatStatus } =
    await import('../../coordinator/status.ts');
  try {
    const live = /^[a-z]+:\/\//.test(target);
    let curve: ClientCurve | undefined;
    if (flags.keysDir !== undefined) {
      const { clientCurve, loadClusterKeys } = await import('../../protocol/keys.ts');
      curve = clientCurve(await loadClusterKeys(flags.keysDir));
    }
    const status = live
      ? await statusFromCoordinator(target, { ...(curve === undefined ? {} : { curve }) })
      : statusFromRunDir(target);
    // A run started through pbs/slurm also shows each agent's scheduler task and its state: the coordinator
    // sends them live; a run directory has the launcher's last snapshot.
    const tasks = live
      ? (status.schedulerTasks ?? [])
      : schedulerTasksFromRunDir(target, (line) => process.stderr.write(`${line}\n`));
    const out = flags.json
      ? JSON.stringify(tasks.length > 0 ? { ...status, schedulerTasks: tasks } : status, null, 2)
      : formatStatus(status, tasks);
    process.stdout.write(out + '\n');
    process.exit(0);
  } catch (error) {
    process.stderr.write(`pe-arena status: ${(error as Error).message}\n`);
    process.exit(1);
  }
}
