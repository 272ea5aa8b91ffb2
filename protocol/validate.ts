// Turns a decoded msgpack value (unknown) into a typed message, or throws a MalformedMessageError that names
// the offending field as "<type>.<path>" (e.g. "assign.job.training.steps: expected a positive integer, got -1").
// Schemas are built once from small combinators; unknown extra fields are ignored so that an additive change
// within one protocol version does not break older peers.
import { MalformedMessageError } from './errors.ts';
import { ENCODINGS, METRIC_COLUMNS } from './messages.ts';
import type { AgentToCoordinator, CoordinatorToAgent, PeerMessage } from './messages.ts';

/** Checks a value at a path; throws Invalid on the first problem. */
type Check = (value: unknown, path: string) => void;

/** Thrown inside a schema; turned into a MalformedMessageError with the message type at the top. */
class Invalid extends Error {
  constructor(
    readonly path: string,
    readonly expected: string,
    readonly got: unknown,
  ) {
    super(`${path}: expected ${expected}, got ${describe(got)}`);
  }
}

/** A short, safe description of a bad value for error messages (never dumps a whole payload). */
export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') {
    const shown = value.length > 40 ? `${value.slice(0, 40)}...` : value;
    return `${JSON.stringify(shown)} (a string)`;
  }
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : String(value);
  if (typeof value === 'bigint') return `${value}n (a bigint)`;
  if (typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of ${value.byteLength} bytes`;
  if (value instanceof Map) return 'a map with non-string keys';
  if (typeof value === 'object') return 'an object';
  return typeof value;
}

/**
 * The path validation passes down when no path is wanted: messages are checked first without building a path string
 * for every field (validateWith), and only a message that fails is checked again with paths, to name the field.
 */
const UNTRACKED = '\u0000';

const join = (path: string, key: string | number): string =>
  path === UNTRACKED ? UNTRACKED : typeof key === 'number' ? `${path}[${key}]` : `${path}.${key}`;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    !ArrayBuffer.isView(value) &&
    !(value instanceof Map)
  );
}

const MAX_STRING = 1 << 20;

// --- primitives --------------------------------------------------------------------------------

const str =
  (maxLength = MAX_STRING): Check =>
  (v, p) => {
    if (typeof v !== 'string' || v.length > maxLength)
      throw new Invalid(p, maxLength === MAX_STRING ? 'a string' : `a string of at most ${maxLength} characters`, v);
  };

const nonEmpty =
  (maxLength = 256): Check =>
  (v, p) => {
    if (typeof v !== 'string' || v.length === 0 || v.length > maxLength)
      throw new Invalid(p, `a non-empty string of at most ${maxLength} characters`, v);
  };

/** Any number, NaN and infinities included: a diverged loss must still reach the coordinator to fail the job. */
const num: Check = (v, p) => {
  if (typeof v !== 'number') throw new Invalid(p, 'a number', v);
};

const finite: Check = (v, p) => {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Invalid(p, 'a finite number', v);
};

const nonNegative: Check = (v, p) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Invalid(p, 'a finite number >= 0', v);
};

const positive: Check = (v, p) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new Invalid(p, 'a finite number > 0', v);
};

const int: Check = (v, p) => {
  if (!Number.isSafeInteger(v)) throw new Invalid(p, 'an integer', v);
};

const nonNegInt: Check = (v, p) => {
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw new Invalid(p, 'a non-negative integer', v);
};

const posInt: Check = (v, p) => {
  if (!Number.isSafeInteger(v) || (v as number) < 1) throw new Invalid(p, 'a positive integer', v);
};

const bool: Check = (v, p) => {
  if (typeof v !== 'boolean') throw new Invalid(p, 'a boolean', v);
};

const bytes: Check = (v, p) => {
  if (!(v instanceof Uint8Array)) throw new Invalid(p, 'bytes (a Uint8Array)', v);
};

/** Any msgpack value, but present: a peer_data without data is a bug on the sender's side. */
const present: Check = (v, p) => {
  if (v === undefined) throw new Invalid(p, 'a value', v);
};

function oneOf<T extends string>(values: readonly T[]): Check {
  const set = new Set<unknown>(values);
  const expected = `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`;
  return (v, p) => {
    if (!set.has(v)) throw new Invalid(p, expected, v);
  };
}

const nullable =
  (inner: Check): Check =>
  (v, p) => {
    if (v !== null) inner(v, p);
  };

function arrayOf(item: Check, maxLength = 1 << 24): Check {
  return (v, p) => {
    if (!Array.isArray(v)) throw new Invalid(p, 'an array', v);
    if (v.length > maxLength) throw new Invalid(p, `an array of at most ${maxLength} items`, v);
    for (let i = 0; i < v.length; i++) item(v[i], join(p, i));
  };
}

function recordOf(value: Check): Check {
  return (v, p) => {
    if (!isPlainObject(v)) throw new Invalid(p, 'an object', v);
    for (const key of Object.keys(v)) value(v[key], join(p, key));
  };
}

interface Shape {
  [key: string]: Check | { optional: Check };
}
const optional = (check: Check): { optional: Check } => ({ optional: check });

function object(shape: Shape): Check {
  const entries = Object.entries(shape).map(([key, spec]) =>
    typeof spec === 'function' ? { key, check: spec, optional: false } : { key, check: spec.optional, optional: true },
  );
  return (v, p) => {
    if (!isPlainObject(v)) throw new Invalid(p, 'an object', v);
    for (const { key, check, optional: isOptional } of entries) {
      const field = v[key];
      // exactOptionalPropertyTypes: an absent optional field may arrive as undefined (msgpack has no "absent").
      if (field === undefined && isOptional) continue;
      check(field, join(p, key));
    }
  };
}

// --- shared pieces -----------------------------------------------------------------------------

const id = nonEmpty(256);
const scalar: Check = (v, p) => {
  if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
    throw new Invalid(p, 'a string, number or boolean', v);
};

const wireError = object({ name: str(1024), message: str(), stack: optional(str()), retryable: bool });
const deviceInfo = object({
  kind: oneOf(['gpu', 'cpu'] as const),
  name: str(1024),
  memoryBytes: optional(nonNegative),
});
const taskSpec = object({ name: nonEmpty(256), params: recordOf(scalar) });
const probability: Check = (v, p) => {
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new Invalid(p, 'a number in [0, 1]', v);
};
const modelSpec = object({
  layers: posInt,
  dModel: posInt,
  heads: posInt,
  ffnDim: posInt,
  dropout: probability,
  maxLen: posInt,
  attentionLogitCap: optional(nonNegative),
  sinusoidalStride: optional(positive),
  mapeMaxOffset: optional(nonNegInt),
  mapeOffset: optional(bool),
  mapeRoles: optional(bool),
  mapeRelative: optional(bool),
});
/** One problem with a training.dataParallel value: the field under it ('' for the whole value), what it must be, and what it is. */
export interface DataParallelProblem {
  field: '' | 'ranks' | 'minRanks' | 'maxRanks';
  expected: string;
  got: unknown;
}

/**
 * Every problem with a training.dataParallel value; empty when usable. Shared by the wire validator, the experiment
 * loader and the trainer's job check, so the three agree on one rule.
 */
export function dataParallelProblems(value: unknown, batchSize: number): DataParallelProblem[] {
  if (!isPlainObject(value)) return [{ field: '', expected: 'an object like {"ranks": 2}', got: value }];
  const problems: DataParallelProblem[] = [];
  const bound = (field: 'ranks' | 'minRanks' | 'maxRanks'): number | undefined => {
    const v = value[field];
    if (v === undefined && field !== 'ranks') return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
      problems.push({ field, expected: 'a positive integer', got: v });
      return undefined;
    }
    return v;
  };
  const ranks = bound('ranks');
  const minRanks = bound('minRanks');
  const maxRanks = bound('maxRanks');
  if (ranks !== undefined && minRanks !== undefined && minRanks > ranks)
    problems.push({ field: 'minRanks', expected: `at most ranks (${ranks})`, got: minRanks });
  if (ranks !== undefined && maxRanks !== undefined && maxRanks < ranks)
    problems.push({ field: 'maxRanks', expected: `at least ranks (${ranks})`, got: maxRanks });
  // Every rank needs at least one row of the global batch.
  const most = Math.max(ranks ?? 0, maxRanks ?? 0);
  if (most > batchSize)
    problems.push({
      field: maxRanks !== undefined && maxRanks >= (ranks ?? 0) ? 'maxRanks' : 'ranks',
      expected: `at most training.batchSize (${batchSize}), one row per rank at least`,
      got: most,
    });
  return problems;
}

const trainingFields = object({
  steps: posInt,
  batchSize: posInt,
  learningRate: nonNegative,
  warmupSteps: nonNegative,
  weightDecay: nonNegative,
  clipNorm: nonNegative,
});
const lengthRange: Check = (v, p) => {
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => Number.isSafeInteger(x) && (x as number) >= 1))
    throw new Invalid(p, 'two positive integers [from, to]', v);
  if ((v[0] as number) > (v[1] as number)) throw new Invalid(p, 'from <= to', v);
};
const trainingSpec: Check = (v, p) => {
  trainingFields(v, p);
  const t = v as { batchSize: number; dataParallel?: unknown };
  if (t.dataParallel === undefined) return;
  const first = dataParallelProblems(t.dataParallel, t.batchSize)[0];
  if (first !== undefined) {
    const at = join(p, 'dataParallel');
    throw new Invalid(first.field === '' ? at : join(at, first.field), first.expected, first.got);
  }
};
const evaluationSpec = object({
  samples: nonNegInt,
  lengthTask: optional(taskSpec),
  lengthSamples: optional(nonNegInt),
  lengthRange: optional(lengthRange),
  perLength: optional(posInt),
});
const jobSpec = object({
  jobId: id,
  runId: id,
  encoding: oneOf(ENCODINGS),
  task: taskSpec,
  seed: int,
  preset: str(256),
  model: modelSpec,
  training: trainingSpec,
  evaluation: evaluationSpec,
  // 0 = no periodic checkpoints (src/train/job.ts accepts it).
  checkpointEvery: nonNegInt,
  needs: optional(object({ backend: optional(str(256)), gpu: optional(bool) })),
});
const METRIC_WIDTH = METRIC_COLUMNS.length;
/** A whole number of points, steps non-negative integers; the other columns take any number (a NaN loss too). */
const metricColumns: Check = (v, p) => {
  if (!(v instanceof Float64Array) || v.length % METRIC_WIDTH !== 0)
    throw new Invalid(p, `a Float64Array of ${METRIC_WIDTH} columns (${METRIC_COLUMNS.join(', ')}) of equal length`, v);
  const n = v.length / METRIC_WIDTH;
  for (let i = 0; i < n; i++) {
    const step = v[i]!;
    if (!Number.isSafeInteger(step) || step < 0) throw new Invalid(`${p}.step[${i}]`, 'a non-negative integer', step);
  }
};
const evaluation = object({
  jobId: id,
  encoding: oneOf(ENCODINGS),
  task: str(256),
  seed: int,
  backend: str(256),
  steps: nonNegInt,
  wallTimeS: num,
  parameters: nonNegInt,
  tokensPerSecond: num,
  exactMatch: num,
  symbolicAccuracy: num,
  stepAccuracy: nullable(num),
  perLength: recordOf(object({ n: nonNegInt, exactMatch: num, digitAccuracy: optional(num) })),
  digitAccuracy: optional(num),
  longestLength90: optional(nullable(nonNegInt)),
  attentionEntropy: arrayOf(arrayOf(num)),
  errorTaxonomy: recordOf(num),
  problems: arrayOf(
    object({
      id: str(1024),
      split: str(256),
      length: nonNegInt,
      correct: bool,
      symbolic: bool,
      prediction: str(),
      target: str(),
    }),
  ),
});
const sha256: Check = (v, p) => {
  if (typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v))
    throw new Invalid(p, 'a sha256 as 64 lowercase hex digits', v);
};
const version = nonNegInt;

// --- messages ----------------------------------------------------------------------------------

const checkpointChunk = object({
  jobId: id,
  epoch: nonNegInt,
  checkpointId: id,
  kind: oneOf(['checkpoint', 'final'] as const),
  step: nonNegInt,
  index: nonNegInt,
  count: posInt,
  totalBytes: nonNegInt,
  sha256,
  data: bytes,
});
const chunkIndexInRange: Check = (v, p) => {
  const m = v as { index: number; count: number };
  if (m.index >= m.count) throw new Invalid(join(p, 'index'), `an integer below count (${m.count})`, m.index);
};
const errorMessage = object({ error: wireError, context: optional(str(1024)) });

const agentMessages: Record<AgentToCoordinator['type'], Check[]> = {
  status_request: [object({ version })],
  hello: [
    object({
      version,
      agentId: id,
      host: str(1024),
      pid: nonNegInt,
      backend: str(256),
      devices: arrayOf(deviceInfo, 1024),
      launcherId: optional(str(256)),
    }),
  ],
  heartbeat: [
    object({
      agentId: id,
      seq: nonNegInt,
      time: finite,
      state: oneOf(['idle', 'busy', 'draining'] as const),
      jobId: optional(id),
      epoch: optional(nonNegInt),
      step: optional(nonNegInt),
    }),
  ],
  metrics: [object({ jobId: id, epoch: nonNegInt, columns: metricColumns })],
  checkpoint_chunk: [checkpointChunk, chunkIndexInRange],
  checkpoint_request: [object({ jobId: id, epoch: nonNegInt, checkpointId: id })],
  job_result: [object({ jobId: id, epoch: nonNegInt, evaluation })],
  job_failed: [object({ jobId: id, epoch: nonNegInt, error: wireError })],
  gang_address: [object({ jobId: id, epoch: nonNegInt, generation: nonNegInt, address: nonEmpty(1024) })],
  gang_ready: [object({ jobId: id, epoch: nonNegInt, generation: nonNegInt, step: nonNegInt, reason: str(4096) })],
  gang_done: [object({ jobId: id, epoch: nonNegInt, generation: nonNegInt, step: nonNegInt })],
  error: [errorMessage],
  bye: [object({ agentId: id, reason: str(4096) })],
};

const jobState = oneOf(['pending', 'assigned', 'running', 'evaluating', 'done', 'failed'] as const);
const agentState = oneOf(['idle', 'busy', 'suspect', 'dead', 'draining', 'gone'] as const);

const coordinatorMessages: Record<CoordinatorToAgent['type'], Check[]> = {
  status: [
    object({
      runId: id,
      experiment: str(4096),
      jobs: arrayOf(
        object({
          jobId: id,
          encoding: oneOf(ENCODINGS),
          task: str(256),
          seed: int,
          state: jobState,
          attempt: nonNegInt,
          epoch: nonNegInt,
          step: nonNegInt,
          totalSteps: nonNegInt,
          agentId: optional(id),
          loss: optional(num),
          accuracy: optional(num),
          tokensPerSecond: optional(num),
          gang: optional(object({ generation: nonNegInt, members: arrayOf(id, 1 << 16) })),
        }),
      ),
      agents: arrayOf(
        object({
          agentId: id,
          host: str(1024),
          pid: nonNegInt,
          backend: str(256),
          state: agentState,
          lastHeartbeatAgoMs: num,
          jobId: optional(id),
          launcherId: optional(str(256)),
        }),
      ),
      schedulerTasks: optional(
        arrayOf(
          object({
            launcherId: str(256),
            kind: str(64),
            state: str(64),
            schedulerState: str(64),
            host: optional(str(1024)),
          }),
        ),
      ),
    }),
  ],
  welcome: [object({ version, agentId: id, runId: id, heartbeatIntervalMs: posInt })],
  reject: [object({ reason: str(4096), version })],
  assign: [
    object({
      job: jobSpec,
      attempt: nonNegInt,
      epoch: nonNegInt,
      resumeFrom: optional(object({ checkpointId: id, step: nonNegInt, totalBytes: nonNegInt, sha256 })),
      gang: optional(object({ generation: nonNegInt })),
    }),
  ],
  gang_start: [
    object({
      jobId: id,
      epoch: nonNegInt,
      generation: nonNegInt,
      rank: nonNegInt,
      ranks: posInt,
      rootAddress: optional(nonEmpty(1024)),
      metricsFrom: nonNegInt,
      collectiveTimeoutMs: posInt,
    }),
    (v, p) => {
      const m = v as { rank: number; ranks: number; rootAddress?: string };
      if (m.rank >= m.ranks) throw new Invalid(join(p, 'rank'), `an integer below ranks (${m.ranks})`, m.rank);
      if (m.rank > 0 && m.rootAddress === undefined)
        throw new Invalid(join(p, 'rootAddress'), 'the address of rank 0 (every rank but 0 joins it)', undefined);
    },
  ],
  gang_reform: [object({ jobId: id, epoch: nonNegInt, generation: nonNegInt, reason: str(4096) })],
  cancel: [object({ jobId: id, epoch: nonNegInt, reason: str(4096) })],
  checkpoint_chunk: [checkpointChunk, chunkIndexInRange],
  checkpoint_ack: [object({ jobId: id, epoch: nonNegInt, checkpointId: id, ok: bool, reason: optional(str(4096)) })],
  heartbeat_ack: [object({ seq: nonNegInt, time: finite })],
  error: [errorMessage],
  shutdown: [object({ reason: str(4096) })],
};

const rank = nonNegInt;
const peerMessages: Record<PeerMessage['type'], Check[]> = {
  peer_hello: [object({ version, rank, size: posInt, address: nonEmpty(1024), session: optional(str(1024)) })],
  peer_table: [object({ version, addresses: arrayOf(nonEmpty(1024), 1 << 16) })],
  peer_data: [
    object({
      source: rank,
      channel: oneOf(['p2p', 'coll'] as const),
      tag: int,
      data: present,
      bulk: optional(oneOf(['f32'] as const)),
    }),
  ],
  peer_abort: [object({ source: rank, reason: str(4096) })],
  peer_bye: [object({ source: rank, ack: bool })],
};

function validateWith<M>(table: Record<string, Check[]>, direction: string, value: unknown): M {
  if (!isPlainObject(value)) {
    throw new MalformedMessageError(
      `${direction} message: expected an object with a "type", got ${describe(value)}`,
      '',
    );
  }
  const type = value['type'];
  if (typeof type !== 'string') {
    throw new MalformedMessageError(`${direction} message: expected a string "type", got ${describe(type)}`, 'type');
  }
  const checks = Object.hasOwn(table, type) ? table[type] : undefined;
  if (checks === undefined) {
    throw new MalformedMessageError(
      `${direction} message: unknown type ${describe(type)}; known: ${Object.keys(table).join(', ')}`,
      'type',
      { messageType: type },
    );
  }
  try {
    for (const check of checks) check(value, UNTRACKED);
  } catch (error) {
    if (!(error instanceof Invalid)) throw error;
    // Checked again, with paths, to say which field was wrong (checks are pure, so the same one fails).
    try {
      for (const check of checks) check(value, type);
    } catch (tracked) {
      if (tracked instanceof Invalid) {
        const field = tracked.path.slice(type.length + 1);
        throw new MalformedMessageError(`${tracked.message} (message type "${type}")`, field, { messageType: type });
      }
      throw tracked;
    }
    throw new MalformedMessageError(`${error.message.slice(UNTRACKED.length + 2)} (message type "${type}")`, '', {
      messageType: type,
    });
  }
  return value as M;
}

export function validateAgentMessage(value: unknown): AgentToCoordinator {
  return validateWith<AgentToCoordinator>(agentMessages, 'agent->coordinator', value);
}

export function validateCoordinatorMessage(value: unknown): CoordinatorToAgent {
  return validateWith<CoordinatorToAgent>(coordinatorMessages, 'coordinator->agent', value);
}

export function validatePeerMessage(value: unknown): PeerMessage {
  return validateWith<PeerMessage>(peerMessages, 'peer', value);
}
