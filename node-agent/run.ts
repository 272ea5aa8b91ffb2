// `pe-arena agent` as a process: compile the options once, pick the backend and devices hello reports, connect the
// DEALER, run the NodeAgent (agent.ts) until it leaves, and drain it on SIGTERM/SIGINT or before the walltime ends.
// Resolves with the exit code, as coordinator/run.ts does for the coordinator.
import os from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino, type Logger } from 'pino';
import type { AgentId, DeviceInfo } from '../protocol/messages.ts';
import { systemClock, type Clock } from '../protocol/clock.ts';
import { codeUrl } from '../protocol/code-paths.ts';
import type { ClientTransport } from '../protocol/transport.ts';
import { newAgentId } from '../protocol/ids.ts';
import type { BackendName } from '../src/train/workload.ts';
import { gangPeerConfig } from './gang-link.ts';
import { AGENT_DEFAULTS, AGENT_EXIT, type AgentConfig, type AgentExit, type AgentExitCode } from './agent-config.ts';
import { NodeAgent } from './agent.ts';
import { createWorkerRunner, type JobRunner } from './job-runner.ts';
import { probeBackend } from './backend-probe.ts';
import { cpuDevice, detectDevices } from './devices.ts';
import { WALLTIME_ENV, armWalltimeDrain } from './walltime.ts';
import { AgentConfigError } from './errors.ts';

/** Without asking nvidia-smi (options compile synchronously); runAgent refines it with detectDevices. */
export function defaultDevices(backend: string): DeviceInfo[] {
  return backend === 'tensorflow-gpu' ? [{ kind: 'gpu', name: 'cuda' }, cpuDevice()] : [cpuDevice()];
}

// ---------------------------------------------------------------------------------------------
// runAgent: compile options, connect, run until the agent leaves; resolves with the exit code.

export interface AgentOptions {
  /** The coordinator's ROUTER address, tcp://host:port. */
  coordinator: string;
  agentId?: string;
  /** Force a TensorFlow.js backend in the worker; otherwise the best that loads is picked there. */
  backend?: BackendName;
  /** Exit (code 3) after hearing nothing from the coordinator for this long. Default 60 s. */
  deathTimeoutMs?: number;
  /** pino lines go here; stdout otherwise. */
  logFile?: string;
  /** Path or URL of a module exporting createWorkload; default src/train/tf-workload.ts (tests pass a fake). */
  workloadModule?: string;
  curve?: { serverPublicKey: string; publicKey: string; secretKey: string };
  /** Metric points kept while the coordinator is away (oldest dropped beyond). Default 100,000. */
  maxMetricBuffer?: number;
  /** The scheduler's id for this agent (PBS/Slurm job id). */
  launcherId?: string;
  /** Injection for tests; runAgent connects a ZeroMQ DEALER when absent. */
  transport?: ClientTransport;
  clock?: Clock;
  runner?: JobRunner;
  logger?: Logger;
  /** Install SIGTERM/SIGINT handlers that drain the agent (default true). */
  handleSignals?: boolean;
  /**
   * Bound on the drain's checkpoint-and-ack after SIGTERM (or shutdown, or the walltime). Keep it a few seconds
   * under the scheduler's kill delay (PBS kill_delay, Slurm KillWait: SIGKILL follows SIGTERM after it). Default 5 s.
   */
  drainTimeoutMs?: number;
  sliceSteps?: number;
  /**
   * Learn the backend for hello by running the workers' backend selection once in a throw-away worker (~2 s).
   * Default: when no backend is forced and the workload is the real one; otherwise hello says the forced one or 'auto'.
   */
  probeBackend?: boolean;
  /** Where the reason goes when the agent is rejected or fails fatally (one line). Default process.stderr. */
  stderr?: { write(line: string): unknown };
}

const DEFAULT_WORKLOAD = codeUrl('src/train/tf-workload.ts');

function moduleUrl(spec: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(spec) && !/^[a-z]:[\\/]/i.test(spec)) return spec; // already a URL (not C:\)
  return pathToFileURL(resolvePath(spec)).href;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0)
    throw new AgentConfigError(`${name} must be a positive number, got ${value}`);
  return value;
}

/** Validate and fill defaults once; only the compiled AgentConfig travels further. */
export function compileAgentOptions(options: AgentOptions): AgentConfig {
  if (!/^(tcp|ipc|inproc|mem):\/\/\S+$/.test(options.coordinator)) {
    throw new AgentConfigError(`coordinator: expected an address like tcp://host:port, got '${options.coordinator}'`);
  }
  if (
    options.backend !== undefined &&
    !(['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const).includes(options.backend)
  ) {
    throw new AgentConfigError(
      `backend: expected tensorflow-gpu, tensorflow, wasm or cpu, got '${String(options.backend)}'`,
    );
  }
  const backend = options.backend ?? 'auto';
  return {
    agentId: (options.agentId ?? newAgentId()) as AgentId,
    host: os.hostname(),
    pid: process.pid,
    backend,
    ...(options.backend === undefined ? {} : { requestedBackend: options.backend }),
    devices: defaultDevices(backend),
    ...(options.launcherId === undefined ? {} : { launcherId: options.launcherId }),
    workloadModule: options.workloadModule === undefined ? DEFAULT_WORKLOAD : moduleUrl(options.workloadModule),
    deathTimeoutMs: positive('deathTimeoutMs', options.deathTimeoutMs, AGENT_DEFAULTS.deathTimeoutMs),
    maxMetricBuffer: Math.floor(positive('maxMetricBuffer', options.maxMetricBuffer, AGENT_DEFAULTS.maxMetricBuffer)),
    metricsFlushMs: AGENT_DEFAULTS.metricsFlushMs,
    metricsBatch: AGENT_DEFAULTS.metricsBatch,
    helloRetryMs: AGENT_DEFAULTS.helloRetryMs,
    ackTimeoutMs: AGENT_DEFAULTS.ackTimeoutMs,
    fetchTimeoutMs: AGENT_DEFAULTS.fetchTimeoutMs,
    drainTimeoutMs: positive('drainTimeoutMs', options.drainTimeoutMs, AGENT_DEFAULTS.drainTimeoutMs),
    sliceSteps: Math.floor(positive('sliceSteps', options.sliceSteps, AGENT_DEFAULTS.sliceSteps)),
    transferRetries: AGENT_DEFAULTS.transferRetries,
    chunkBytes: AGENT_DEFAULTS.chunkBytes,
    closeGraceMs: AGENT_DEFAULTS.closeGraceMs,
    gangPeers: gangPeerConfig(
      options.coordinator,
      options.curve === undefined
        ? undefined
        : { publicKey: options.curve.publicKey, secretKey: options.curve.secretKey },
    ),
  };
}

function makeLogger(options: AgentOptions): Logger {
  if (options.logger !== undefined) return options.logger;
  const base = { component: 'agent', host: os.hostname(), pid: process.pid };
  if (options.logFile === undefined) return pino({ base });
  // Synchronous writes: the agent's last lines (why it exited) must reach the file before process exit.
  return pino({ base }, pino.destination({ dest: options.logFile, mkdir: true, sync: true }));
}

/**
 * Run one agent until it leaves. Resolves with the exit code: 0 drained (shutdown, SIGTERM/SIGINT), 2 rejected
 * (protocol version), 3 coordinator gone (death timeout), 1 fatal (bad options, cannot connect).
 */
export async function runAgent(options: AgentOptions): Promise<AgentExitCode> {
  const stderr = options.stderr ?? process.stderr;
  let config: AgentConfig;
  try {
    config = compileAgentOptions(options);
  } catch (error) {
    stderr.write(`pe-arena agent: ${(error as Error).message}\n`);
    return AGENT_EXIT.fatal;
  }
  try {
    return await runCompiled(options, config, stderr);
  } catch (error) {
    // A bug, not bad input: still one clear line, and an exit code the launcher can report.
    stderr.write(`pe-arena agent: fatal: ${(error as Error).stack ?? String(error)}`.split('\n')[0] + '\n');
    return AGENT_EXIT.fatal;
  }
}

async function runCompiled(
  options: AgentOptions,
  compiled: AgentConfig,
  stderr: { write(line: string): unknown },
): Promise<AgentExitCode> {
  const baseLogger = makeLogger(options);
  const logger = baseLogger.child({ agentId: compiled.agentId });
  const config = await settleBackend(options, compiled, logger);
  const clock = options.clock ?? systemClock;
  const runner =
    options.runner ??
    createWorkerRunner({
      log: (line) => logger.info({ worker: true }, line),
      warm: {
        workloadModule: config.workloadModule,
        ...(config.requestedBackend === undefined ? {} : { backend: config.requestedBackend }),
      },
    });
  let transport = options.transport;
  if (transport === undefined) {
    try {
      transport = await connect(options, logger);
    } catch (error) {
      logger.fatal({ err: error }, 'cannot connect');
      stderr.write(`pe-arena agent: cannot connect to ${options.coordinator}: ${(error as Error).message}\n`);
      return AGENT_EXIT.fatal;
    }
  }
  const agent = new NodeAgent(config, { transport, clock, runner, logger: baseLogger });
  logger.info(
    { coordinator: options.coordinator, backend: config.backend, workloadModule: config.workloadModule },
    'agent starting',
  );
  const disarm = (options.handleSignals ?? true) ? armDrainTriggers(agent, logger) : undefined;
  let exit: AgentExit;
  try {
    // Load TensorFlow.js in the first job's worker now, while the agent says hello and waits for work.
    runner.prewarm?.();
    agent.start();
    exit = await agent.exited;
  } finally {
    await runner.close?.();
    disarm?.();
  }
  if (exit.code === AGENT_EXIT.rejected) stderr.write(`pe-arena agent: rejected by the coordinator: ${exit.reason}\n`);
  else if (exit.code === AGENT_EXIT.coordinatorGone) stderr.write(`pe-arena agent: coordinator gone: ${exit.reason}\n`);
  return exit.code;
}

/** The backend and devices hello reports: probed in a throw-away worker unless forced, GPUs listed for CUDA. */
async function settleBackend(options: AgentOptions, compiled: AgentConfig, logger: Logger): Promise<AgentConfig> {
  let config = compiled;
  if (options.probeBackend ?? (options.backend === undefined && options.workloadModule === undefined)) {
    const probe = await probeBackend();
    if (probe.ok) {
      config = { ...config, backend: probe.name, devices: defaultDevices(probe.name) };
      logger.info({ backend: probe.name, tried: probe.tried }, `backend probe: workers will run on ${probe.name}`);
    } else {
      logger.warn({ reason: probe.reason }, `backend probe failed; hello says '${config.backend}'`);
    }
  }
  if (config.backend === 'tensorflow-gpu') config = { ...config, devices: await detectDevices(config.backend) };
  return config;
}

/** A ZeroMQ DEALER to the coordinator (loaded only here: tests inject a memory transport). */
async function connect(options: AgentOptions, logger: Logger): Promise<ClientTransport> {
  const { connectClient } = await import('../protocol/zmq-transport.ts');
  return connectClient({
    address: options.coordinator,
    ...(options.curve === undefined ? {} : { curve: options.curve }),
    reconnectIntervalMs: 100,
    reconnectMaxIntervalMs: 5_000,
    log: (line) => logger.info({ transport: true }, line),
  });
}

/**
 * Signals within this long of the first count as the same one: one Ctrl-C reaches a process more than once (the
 * terminal signals the whole foreground group and a wrapper such as tsx relays it again), and a scheduler may
 * signal every process of a job. A signal after it is a deliberate second one.
 */
export const SAME_SIGNAL_MS = 1_000;

/**
 * SIGTERM/SIGINT drain the agent (checkpoint at the current step, wait for the ack within drainTimeoutMs, exit 0);
 * a second signal, later than SAME_SIGNAL_MS, stops it at once. A walltime from the batch scheduler drains it a
 * margin before the allocation ends. Returns the function that takes all of it back.
 */
function armDrainTriggers(agent: NodeAgent, logger: Logger): () => void {
  let firstAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    const now = Date.now();
    if (firstAt === undefined) {
      firstAt = now;
      logger.info({ signal }, 'signal: checkpointing and draining');
      void agent.drain(signal, true);
    } else if (now - firstAt <= SAME_SIGNAL_MS) {
      logger.info({ signal, afterMs: now - firstAt }, 'signal again within the same press: still draining');
    } else {
      logger.info({ signal }, 'second signal: stopping now');
      void agent.stop(`second ${signal}`);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Job scripts that preload walltime.ts drain through the SIGTERM handler above instead, so arm it only without that.
  const walltime =
    process.env[WALLTIME_ENV.preload] !== '1'
      ? armWalltimeDrain({ onDrain: (reason) => void agent.drain(reason, true) })
      : undefined;
  if (walltime?.deadline !== undefined) {
    logger.info(
      { drainAt: new Date(walltime.deadline.drainAt).toISOString(), source: walltime.deadline.source },
      'walltime known: will checkpoint and drain before the allocation ends',
    );
  }
  return () => {
    walltime?.cancel();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
}
