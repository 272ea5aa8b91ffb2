// GET /events: the run's progress as server-sent events, one stream per client, each looking at the run
// directory every interval; close() ends them all when the server stops.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readProgress } from './progress.ts';

const withoutTime = (snapshot: string): string => snapshot.replace(/"time":\d+,/, '');

export class ProgressStreams {
  private readonly open = new Map<ServerResponse, NodeJS.Timeout>();

  constructor(
    private readonly runDir: string,
    private readonly intervalMs: number,
  ) {}

  stream(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    let last = '';
    const push = (): void => {
      try {
        const snapshot = JSON.stringify(readProgress(this.runDir));
        // Only changes travel; a comment line keeps proxies from closing an idle stream.
        if (withoutTime(snapshot) !== last) {
          last = withoutTime(snapshot);
          res.write(`event: progress\ndata: ${snapshot}\n\n`);
        } else res.write(': idle\n\n');
      } catch (error) {
        res.write(
          `event: problem\ndata: ${JSON.stringify({ message: error instanceof Error ? error.message : String(error) })}\n\n`,
        );
      }
    };
    push();
    this.open.set(res, setInterval(push, this.intervalMs));
    const stop = (): void => {
      clearInterval(this.open.get(res));
      this.open.delete(res);
    };
    req.on('close', stop);
    res.on('error', stop);
  }

  close(): void {
    const open = [...this.open];
    this.open.clear();
    for (const [, timer] of open) clearInterval(timer);
    for (const [res] of open) res.end();
  }
}
