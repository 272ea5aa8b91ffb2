// `--launcher local`: agents as child processes of this one, output to runs/<runId>/logs/agents/.
// A child's exit is reported at once (a failure signal); every child is killed when this process exits,
// so nothing is orphaned, also on Ctrl-C.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { customAlphabet } from 'nanoid';
import { nodeArgsFor } from '../../protocol/code-paths.ts';
import { settledWithin } from '../../protocol/deadline.ts';
import { LauncherError } from '../errors.ts';
import type { AgentExit, Launcher, LaunchRequest } from './types.ts';

/**
 * Several local agents share this machine's cores, each training flat out: V8's helper threads for garbage collection
 * would compete with the other agents' training threads, so each agent collects on its own threads instead.
 */
const SINGLE_THREADED_GC = '--single-threaded-gc';

const suffix = customAlphabet('abcdefghijkmnpqrstuvwxyz23456789', 4);

export class LocalLauncher implements Launcher {
  readonly name = 'local';
  private readonly children = new Set<ChildProcess>();
  private readonly listeners: ((exit: AgentExit) => void)[] = [];
  private readonly killAll = (): void => {
    for (const child of this.children) child.kill('SIGKILL');
  };
  /** Agent ids given to the children, in spawn order (readable: agent-1-x7k2). */
  readonly agentIds: string[] = [];

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {
    // 'exit' handlers must be synchronous: SIGKILL is the only thing left to do by then.
    process.on('exit', this.killAll);
  }

  async start(request: LaunchRequest): Promise<void> {
    const logDir = join(request.runDir, 'logs', 'agents');
    mkdirSync(logDir, { recursive: true });
    for (let i = 0; i < request.count; i++) {
      const agentId = `agent-${this.agentIds.length + 1}-${suffix()}`;
      this.agentIds.push(agentId);
      const out = openSync(join(logDir, `${agentId}.out`), 'a');
      let child: ChildProcess;
      try {
        child = spawn(
          process.execPath,
          [
            ...(request.count > 1 ? [SINGLE_THREADED_GC] : []),
            // The compiled CLI when this process runs it, else the sources through tsx.
            ...nodeArgsFor('src/cli.ts'),
            'agent',
            '--coordinator',
            request.coordinator,
            '--agent-id',
            agentId,
            '--log-file',
            join(logDir, `${agentId}.log`),
            ...request.agentArgs,
          ],
          // Own process group: a Ctrl-C in the terminal reaches only the coordinator, which then sends each agent
          // exactly one SIGTERM (an agent treats a second signal as "stop now, skip the checkpoint").
          { stdio: ['ignore', out, out], env: this.env, detached: true },
        );
      } catch (error) {
        throw new LauncherError(`cannot start a local agent: ${(error as Error).message}`, { cause: error });
      } finally {
        closeSync(out);
      }
      this.children.add(child);
      const pid = child.pid;
      child.on('error', () => {
        // Spawn failures also end in 'exit'/'close'; nothing else to do here.
      });
      child.on('exit', (code, signal) => {
        this.children.delete(child);
        if (pid !== undefined) for (const l of this.listeners) l({ pid, launcherId: agentId, code, signal });
      });
    }
  }

  onExit(listener: (exit: AgentExit) => void): void {
    this.listeners.push(listener);
  }

  alive(): number {
    return this.children.size;
  }

  signalAll(signal: NodeJS.Signals): number[] {
    const pids: number[] = [];
    for (const c of this.children) {
      if (c.pid !== undefined && c.kill(signal)) pids.push(c.pid);
    }
    this.signalled = true;
    return pids;
  }

  private signalled = false;

  pids(): number[] {
    return [...this.children].flatMap((c) => (c.pid === undefined ? [] : [c.pid]));
  }

  async stop(graceMs: number): Promise<void> {
    const running = [...this.children];
    if (running.length > 0) {
      const gone = Promise.all(
        running.map(
          (c) =>
            new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r()))),
        ),
      );
      // Children already told to drain get time to finish it; the others are asked now.
      if (!this.signalled) for (const c of running) c.kill('SIGTERM');
      await settledWithin(gone, graceMs);
      this.killAll();
    }
    process.off('exit', this.killAll);
  }
}
