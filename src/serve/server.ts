// The inference HTTP API and web demo:
//   GET /health, GET /models, POST /solve {problem, model_type | "all"}, POST /attention {problem, model_type},
//   GET / (demo), GET /app.js, GET /report (the run's report.html), GET /events (server-sent run progress).
// Bad input gets a clear status and reason (400 malformed, 404 unknown model, 413 too long) and the server
// keeps serving; an unexpected error answers 500 for that request only.
// Each endpoint's handler lives with its kind: api-handlers.ts (JSON), progress-stream.ts (server-sent events),
// static-files.ts (the demo and the report); router.ts picks one by path and method.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  handleAttention,
  handleHealth,
  handleModels,
  handleSolve,
  throttledRefresh,
  type ApiContext,
  type AttentionFn,
  type SolveFn,
} from './api-handlers.ts';
import { sendError, sendJson } from './http-io.ts';
import { readProgress } from './progress.ts';
import { ProgressStreams } from './progress-stream.ts';
import type { ModelRegistry } from './registry.ts';
import { route, type Route, type Routes } from './router.ts';
import { sendReport, sendStaticFile, STATIC_FILES } from './static-files.ts';

export interface ServeOptions {
  registry: ModelRegistry;
  /** The run whose report and progress the demo shows. */
  runDir: string;
  /** Longest problem accepted, in characters (default 2000); the model's own limit is checked too. */
  maxProblemChars?: number;
  /** Largest request body, in bytes (default 64 KiB). */
  maxBodyBytes?: number;
  /** How often /events looks at the run directory (default 1000 ms). */
  progressIntervalMs?: number;
  log?: (line: string) => void;
  /** The model calls, injectable so API tests need no TensorFlow.js. */
  solve?: SolveFn;
  attention?: AttentionFn;
}

export interface RunningServer {
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function startServer(options: ServeOptions, port = 0, host = '127.0.0.1'): Promise<RunningServer> {
  const log = options.log ?? (() => {});
  const { solve, attention } = await modelCalls(options);
  const api: ApiContext = {
    registry: options.registry,
    runDir: options.runDir,
    maxProblemChars: options.maxProblemChars ?? 2000,
    maxBodyBytes: options.maxBodyBytes ?? 64 * 1024,
    startedAt: Date.now(),
    solve,
    attention,
    refreshModels: throttledRefresh(options.registry, log),
  };
  const streams = new ProgressStreams(options.runDir, options.progressIntervalMs ?? 1000);
  const server = createHttpServer(buildRoutes(api, streams), log);
  await listen(server, port, host);
  const address = server.address() as AddressInfo;
  return {
    server,
    port: address.port,
    url: `http://${host}:${address.port}`,
    async close() {
      streams.close();
      await closeServer(server);
    },
  };
}

/** The model calls: the injected ones, or TensorFlow.js inference (imported only when one is missing). */
async function modelCalls(options: ServeOptions): Promise<{ solve: SolveFn; attention: AttentionFn }> {
  if (options.solve !== undefined && options.attention !== undefined)
    return { solve: options.solve, attention: options.attention };
  const { solveWith, attentionWith } = await import('./inference.ts');
  return {
    solve: options.solve ?? solveWith,
    attention: options.attention ?? ((m, p) => attentionWith(m, p)),
  };
}

/** Every endpoint the server answers, by path. */
function buildRoutes(api: ApiContext, streams: ProgressStreams): Routes {
  const routes = new Map<string, Route>([
    ['/health', { method: 'GET', handle: (_req, res) => handleHealth(api, res) }],
    ['/models', { method: 'GET', handle: (_req, res) => handleModels(api, res) }],
    ['/solve', { method: 'POST', handle: (req, res) => handleSolve(api, req, res) }],
    ['/attention', { method: 'POST', handle: (req, res) => handleAttention(api, req, res) }],
    ['/events', { method: 'GET', handle: (req, res) => streams.stream(req, res) }],
    ['/progress', { method: 'GET', handle: (_req, res) => sendJson(res, 200, readProgress(api.runDir)) }],
    ['/report', { method: 'GET', handle: (_req, res) => sendReport(res, api.runDir) }],
  ]);
  for (const [path, asset] of Object.entries(STATIC_FILES))
    routes.set(path, { method: 'GET', handle: (_req, res) => sendStaticFile(res, asset) });
  return routes;
}

function createHttpServer(routes: Routes, log: (line: string) => void): Server {
  const server = createServer((req, res) => {
    const t0 = performance.now();
    route(routes, req, res)
      .catch((error: unknown) => sendError(res, error))
      .finally(() =>
        log(`${req.method ?? '?'} ${req.url ?? '?'} ${res.statusCode} ${(performance.now() - t0).toFixed(1)}ms`),
      )
      .catch(() => undefined);
  });
  // Decoding blocks the event loop for a while under load; a short keep-alive would then close sockets that
  // clients are about to reuse (ECONNRESET on their side).
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 70_000;
  // A malformed HTTP request must not take the server down.
  server.on('clientError', (error, socket) => {
    log(`client error: ${error.message}`);
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  return server;
}

/** Resolves once the server listens; rejects with the listen error (a port in use, say). */
async function listen(server: Server, port: number, host: string): Promise<void> {
  const listening = once(server, 'listening');
  server.listen(port, host);
  await listening;
}

/** Stops accepting, drops the open (keep-alive) connections, and resolves when the server has closed. */
async function closeServer(server: Server): Promise<void> {
  const closed = once(server, 'close');
  server.close();
  server.closeAllConnections();
  await closed;
}
