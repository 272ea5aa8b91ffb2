// The JSON endpoints: GET /health, GET /models, POST /solve and POST /attention, over the run's models.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { BadRequestError, ServeError, TooLongError } from './errors.ts';
import { readBody, sendJson } from './http-io.ts';
import type { AttentionView, LoadedModel, SolveResult } from './inference.ts';
import type { ModelRegistry } from './registry.ts';

export type SolveFn = (m: LoadedModel, problem: string) => SolveResult;
export type AttentionFn = (m: LoadedModel, problem: string) => AttentionView;

export interface ApiContext {
  registry: ModelRegistry;
  runDir: string;
  maxProblemChars: number;
  maxBodyBytes: number;
  /** When the server started (ms since the epoch), for /health's uptime. */
  startedAt: number;
  solve: SolveFn;
  attention: AttentionFn;
  /** Looks for new models on disk (throttled: see throttledRefresh). */
  refreshModels(): void;
}

/** A run in progress gains models as jobs finish: look again now and then, never more than every minGapMs. */
export function throttledRefresh(registry: ModelRegistry, log: (line: string) => void, minGapMs = 2000): () => void {
  let lastRefresh = Date.now();
  return () => {
    if (Date.now() - lastRefresh < minGapMs) return;
    lastRefresh = Date.now();
    try {
      registry.refresh();
    } catch (error) {
      log(`model scan failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
}

interface SolveRequest {
  problem: string;
  model: string;
}

export function parseSolveRequest(text: string, maxChars: number): SolveRequest {
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

export function handleHealth(ctx: ApiContext, res: ServerResponse): void {
  sendJson(res, 200, {
    status: 'ok',
    models: ctx.registry.names().length,
    loaded: ctx.registry.list().filter((m) => m.loaded).length,
    uptimeS: (Date.now() - ctx.startedAt) / 1000,
  });
}

export function handleModels(ctx: ApiContext, res: ServerResponse): void {
  ctx.refreshModels();
  sendJson(res, 200, { models: ctx.registry.list() });
}

/** The names a solve request asks for; 404 before any model work when there are none or the name is unknown. */
async function modelsToAsk(ctx: ApiContext, model: string): Promise<string[]> {
  const { registry } = ctx;
  if (model === 'all' || !registry.has(model)) ctx.refreshModels();
  const names = model === 'all' ? registry.names() : [model];
  if (names.length === 0)
    throw new ServeError(`no trained models in ${ctx.runDir} yet (no job has a final_model/ or checkpoint)`, {
      status: 404,
    });
  // Unknown names answer 404 before any model work (get() throws UnknownModelError).
  if (model !== 'all') await registry.get(model);
  return names;
}

interface ModelFailure {
  model: string;
  error: { name: string; message: string; status: number };
}

/** Each model's answer; with `all`, a model that fails is reported beside the others instead of failing them. */
async function solveEach(
  ctx: ApiContext,
  names: readonly string[],
  problem: string,
  all: boolean,
): Promise<{ results: SolveResult[]; errors: ModelFailure[] }> {
  const results: SolveResult[] = [];
  const errors: ModelFailure[] = [];
  for (const name of names) {
    // Decoding is synchronous: yield between models so other requests (and /health) get a turn.
    await yieldToEventLoop();
    try {
      results.push(ctx.solve(await ctx.registry.get(name), problem));
    } catch (error) {
      if (!all) throw error;
      const e =
        error instanceof ServeError ? error : new ServeError(error instanceof Error ? error.message : String(error));
      errors.push({ model: name, error: { name: e.name, message: e.message, status: e.status } });
    }
  }
  return { results, errors };
}

export async function handleSolve(ctx: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { problem, model } = parseSolveRequest(await readBody(req, ctx.maxBodyBytes), ctx.maxProblemChars);
  const names = await modelsToAsk(ctx, model);
  const t0 = performance.now();
  const { results, errors } = await solveEach(ctx, names, problem, model === 'all');
  // For "all", no answer because the problem is too long is the client's error, not a partial success.
  const tooLong = errors.find((e) => e.error.status === 413);
  if (results.length === 0 && tooLong !== undefined) throw new TooLongError(tooLong.error.message);
  sendJson(res, 200, { problem, model_type: model, results, errors, totalLatencyMs: performance.now() - t0 });
}

export async function handleAttention(ctx: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { problem, model } = parseSolveRequest(await readBody(req, ctx.maxBodyBytes), ctx.maxProblemChars);
  const name = model === 'all' ? ctx.registry.names()[0] : model;
  if (name === undefined) throw new ServeError('this run has no models', { status: 404 });
  sendJson(res, 200, ctx.attention(await ctx.registry.get(name), problem));
}
