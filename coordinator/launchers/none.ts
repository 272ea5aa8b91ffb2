// `--launcher none`: agents are started by hand (or by a site script) and connect on their own.
import type { AgentExit, Launcher, LaunchRequest } from './types.ts';

export class NoLauncher implements Launcher {
  readonly name = 'none';
  async start(_request: LaunchRequest): Promise<void> {}
  onExit(_listener: (exit: AgentExit) => void): void {}
  alive(): number | undefined {
    return undefined;
  }
  async stop(_graceMs: number): Promise<void> {}
}
