// A real pseudo-terminal for end-to-end tests: an interactive bash in a tmux pane on a private tmux server, so a
// command runs in the terminal's foreground process group and Ctrl-C reaches every process of it, as a user's does.
import { spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';

/** Why the terminal tests cannot run here, or undefined when tmux is there. */
export function tmuxMissing(): string | undefined {
  const r = spawnSync('tmux', ['-V'], { encoding: 'utf8' });
  return r.error !== undefined || r.status !== 0
    ? 'tmux is not installed: the Ctrl-C tests need a real terminal'
    : undefined;
}

export interface Terminal {
  /** Type a command line and press Enter. */
  type(line: string): void;
  /** Press Ctrl-C. */
  ctrlC(): void;
  /** What the pane shows now. */
  screen(): string;
}

let count = 0;

/** An interactive bash in a fresh tmux server; the server and everything in it are killed after the test. */
export function openTerminal(t: TestContext, cwd: string): Terminal {
  const socket = `pe-arena-e2e-${process.pid}-${++count}`;
  const tmux = (...args: string[]): string => {
    const r = spawnSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tmux ${args[0]} failed: ${r.stderr || r.error?.message}`);
    return r.stdout;
  };
  tmux(
    '-f',
    '/dev/null',
    'new-session',
    '-d',
    '-s',
    'main',
    '-x',
    '200',
    '-y',
    '50',
    '-c',
    cwd,
    'env',
    'PS1=$ ',
    'FORCE_COLOR=0',
    'bash',
    '--norc',
    '--noprofile',
    '-i',
  );
  t.after(() => {
    spawnSync('tmux', ['-L', socket, 'kill-server']);
  });
  return {
    type(line) {
      tmux('send-keys', '-t', 'main', '-l', line);
      tmux('send-keys', '-t', 'main', 'Enter');
    },
    ctrlC() {
      tmux('send-keys', '-t', 'main', 'C-c');
    },
    screen() {
      return tmux('capture-pane', '-p', '-t', 'main');
    },
  };
}
