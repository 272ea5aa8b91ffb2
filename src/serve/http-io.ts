// Reading requests and writing JSON answers: the body under a size limit, an answer with its length, and an
// error as {error: {name, message}} under the status its ServeError carries (500 for anything else).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ServeError, TooLongError } from './errors.ts';

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
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

export function sendError(res: ServerResponse, error: unknown): void {
  if (error instanceof ServeError) {
    const extra = 'known' in error ? { known: (error as { known: readonly string[] }).known } : {};
    sendJson(res, error.status, { error: { name: error.name, message: error.message, ...extra } });
    return;
  }
  const message = error instanceof Error ? error.message : String(error);
  sendJson(res, 500, { error: { name: error instanceof Error ? error.name : 'Error', message } });
}

/** The request body as text; TooLongError past `limit` bytes (declared or received). */
export async function readBody(req: IncomingMessage, limit: number): Promise<string> {
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
