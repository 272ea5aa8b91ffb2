// Routing: one handler per path, each for one method (GET also answers HEAD). A wrong method answers 405 with
// an `allow` header, an unknown path 404 naming the main routes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from './http-io.ts';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface Route {
  method: 'GET' | 'POST';
  handle: Handler;
}

export type Routes = ReadonlyMap<string, Route>;

export async function route(routes: Routes, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  const method = req.method ?? 'GET';
  const target = routes.get(path);
  if (target === undefined) {
    sendJson(res, 404, {
      error: {
        name: 'NotFound',
        message: `no route ${method} ${path}: try GET /health, GET /models, POST /solve, GET /`,
      },
    });
    return;
  }
  if (method !== target.method && !(target.method === 'GET' && method === 'HEAD')) {
    res.setHeader('allow', target.method);
    sendJson(res, 405, { error: { name: 'MethodNotAllowed', message: `${method} ${path}: use ${target.method}` } });
    return;
  }
  await target.handle(req, res);
}
