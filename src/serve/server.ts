// The inference HTTP API and web demo:
//   GET /health, GET /models, POST /solve {problem, model_type | "all"}, POST /attention {problem, model_type},
//   GET / (demo), GET /app.js, GET /report (the run's report.html), GET /events (server-sent run progress).
// Bad input gets a clear status and reason (400 malformed, 404 unknown model, 413 too long) and the server
// keeps serving; an unexpected error answers 500 for that request only.
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { BadRequestError, ServeError, TooLongError } from './errors.ts';
import type { AttentionView, LoadedModel, SolveResult } from './inference.ts';
import { readProgress } from './progress.ts';
import type { ModelRegistry } from './registry.ts';

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
  solve?: (m: LoadedModel, problem: string) => SolveResult;
  attention?: (m: LoadedModel, problem: string) => AttentionView;
}

export interface RunningServer {
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

const STATIC_DIR = join(import.meta.dirname, 'static');
const STATIC: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/app.js': 'app.js',
  '/style.css': 'style.css',
};
const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function sendError(res: ServerResponse, error: unknown): void {
  if (error instanceof ServeError) {
    const extra = 'known' in error ? { known: (error as { known: readonly string[] }).known } : {};
    sendJson(res, error.status, { error: { name: error.name, message: error.message, ...extra } });
    return;
  }
  const message = error instanceof Error ? error.message : String(error);
  sendJson(res, 500, { error: { name: error instanceof Error ? error.name : 'Error', message } });
}

async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit)
    throw new TooLongError(`request body is ${declared} bytes; the limit is ${limit}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) throw new TooLongError(`request body is over the ${limit}-byte limit`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

interface SolveRequest {
  problem: string;
  model: string;
}

function parseSolveRequest(text: string, maxChars: number): SolveRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new BadRequestError(`body is not valid JSON: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new BadRequestError('body must be a JSON object like {"problem": "12+34", "model_type": "rope"}');
  const body = raw as Record<string, unknown>;
  const problem = body['problem'];
  if (typeof problem !== 'string')
    throw new BadRequestError(`"problem" must be a string, got ${problem === undefined ? 'nothing' : typeof problem}`);
  if (problem.trim() === '') throw new BadRequestError('"problem" is empty');
  if (problem.length > maxChars)
    throw new TooLongError(`"problem" is ${problem.length} characters; the limit is ${maxChars}`);
  const model = body['model_type'] ?? body['model'] ?? 'all';
  if (typeof model !== 'string' || model === '')
    throw new BadRequestError('"model_type" must be a model name or "all"');
  return { problem, model };
}

export async function startServer(options: ServeOptions, port = 0, host = '127.0.0.1'): Promise<RunningServer> {
  const { registry, runDir } = options;
  const log = options.log ?? (() => {});
  const maxChars = options.maxProblemChars ?? 2000;
  const maxBody = options.maxBodyBytes ?? 64 * 1024;
  const interval = options.progressIntervalMs ?? 1000;
  const inference =
    options.solve !== undefined && options.attention !== undefined ? null : await import('./inference.ts');
  const solve = options.solve ?? (inference as typeof import('./inference.ts')).solveWith;
  const attention =
    options.attention ??
    ((m: LoadedModel, p: string) => (inference as typeof import('./inference.ts')).attentionWith(m, p));
  const started = Date.now();
  let lastRefresh = Date.now();
  // A run in progress gains models as jobs finish: look again now and then, never more than every 2 s.
  const refresh = (): void => {
    if (Date.now() - lastRefresh < 2000) return;
    lastRefresh = Date.now();
    try {
      registry.refresh();
    } catch (error) {
      log(`model scan failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  const streams = new Set<ServerResponse>();
  const timers = new Set<NodeJS.Timeout>();

  async function handleSolve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { problem, model } = parseSolveRequest(await readBody(req, maxBody), maxChars);
    if (model === 'all' || !registry.has(model)) refresh();
    const names = model === 'all' ? registry.names() : [model];
    if (names.length === 0)
      throw new ServeError(`no trained models in ${runDir} yet (no job has a final_model/ or checkpoint)`, {
        status: 404,
      });
    // Unknown names answer 404 before any model work (get() throws UnknownModelError).
    if (model !== 'all') await registry.get(model);
    const results: SolveResult[] = [];
    const errors: { model: string; error: { name: string; message: string; status: number } }[] = [];
    const t0 = performance.now();
    for (const name of names) {
      // Decoding is synchronous: yield between models so other requests (and /health) get a turn.
      await new Promise<void>((resolve) => setImmediate(resolve));
      try {
        results.push(solve(await registry.get(name), problem));
      } catch (error) {
        if (model !== 'all') throw error;
        const e =
          error instanceof ServeError ? error : new ServeError(error instanceof Error ? error.message : String(error));
        errors.push({ model: name, error: { name: e.name, message: e.message, status: e.status } });
      }
    }
    // For "all", no answer because the problem is too long is the client's error, not a partial success.
    const tooLong = errors.find((e) => e.error.status === 413);
    if (results.length === 0 && tooLong !== undefined) throw new TooLongError(tooLong.error.message);
    sendJson(res, 200, { problem, model_type: model, results, errors, totalLatencyMs: performance.now() - t0 });
  }

  async function handleAttention(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { problem, model } = parseSolveRequest(await readBody(req, maxBody), maxChars);
    const name = model === 'all' ? registry.names()[0] : model;
    if (name === undefined) throw new ServeError('this run has no models', { status: 404 });
    sendJson(res, 200, attention(await registry.get(name), problem));
  }

  function handleEvents(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    streams.add(res);
    let last = '';
    const push = (): void => {
      try {
        const snapshot = JSON.stringify(readProgress(runDir));
        // Only changes travel; a comment line keeps proxies from closing an idle stream.
        if (snapshot.replace(/"time":\d+,/, '') !== last) {
          last = snapshot.replace(/"time":\d+,/, '');
          res.write(`event: progress\ndata: ${snapshot}\n\n`);
        } else res.write(': idle\n\n');
      } catch (error) {
        res.write(
          `event: problem\ndata: ${JSON.stringify({ message: error instanceof Error ? error.message : String(error) })}\n\n`,
        );
      }
    };
    push();
    const timer = setInterval(push, interval);
    timers.add(timer);
    const stop = (): void => {
      clearInterval(timer);
      timers.delete(timer);
      streams.delete(res);
    };
    req.on('close', stop);
    res.on('error', stop);
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const allow = (m: string): boolean => {
      if (method === m || (m === 'GET' && method === 'HEAD')) return true;
      res.setHeader('allow', m);
      sendJson(res, 405, { error: { name: 'MethodNotAllowed', message: `${method} ${path}: use ${m}` } });
      return false;
    };
    if (path === '/health') {
      if (allow('GET'))
        sendJson(res, 200, {
          status: 'ok',
          models: registry.names().length,
          loaded: registry.list().filter((m) => m.loaded).length,
          uptimeS: (Date.now() - started) / 1000,
        });
      return;
    }
    if (path === '/models') {
      if (!allow('GET')) return;
      refresh();
      sendJson(res, 200, { models: registry.list() });
      return;
    }
    if (path === '/solve') {
      if (allow('POST')) await handleSolve(req, res);
      return;
    }
    if (path === '/attention') {
      if (allow('POST')) await handleAttention(req, res);
      return;
    }
    if (path === '/events') {
      if (allow('GET')) handleEvents(req, res);
      return;
    }
    if (path === '/progress') {
      if (allow('GET')) sendJson(res, 200, readProgress(runDir));
      return;
    }
    if (path === '/report') {
      if (!allow('GET')) return;
      const file = join(runDir, 'final_comparison', 'report.html');
      if (!existsSync(file)) {
        sendJson(res, 404, {
          error: { name: 'NotFound', message: `no report yet: run \`pe-arena report ${runDir}\`` },
        });
        return;
      }
      const html = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES['html'] as string, 'content-length': html.length });
      res.end(html);
      return;
    }
    const asset = STATIC[path];
    if (asset !== undefined) {
      if (!allow('GET')) return;
      const body = await readFile(join(STATIC_DIR, asset));
      res.writeHead(200, {
        'content-type': TYPES[asset.split('.').pop() as string] ?? 'application/octet-stream',
        'content-length': body.length,
        'cache-control': 'no-store',
      });
      res.end(body);
      return;
    }
    sendJson(res, 404, {
      error: {
        name: 'NotFound',
        message: `no route ${method} ${path}: try GET /health, GET /models, POST /solve, GET /`,
      },
    });
  }

  const server = createServer((req, res) => {
    const t0 = performance.now();
    route(req, res)
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
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    server,
    port: address.port,
    url: `http://${host}:${address.port}`,
    async close() {
      for (const t of timers) clearInterval(t);
      timers.clear();
      for (const s of streams) s.end();
      streams.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
