// Property tests: whatever bytes arrive, a decoder returns a typed message or throws MalformedMessageError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BULK_MIN_BYTES,
  decodeAgentBulk,
  decodeAgentFrame,
  decodeCoordinatorBulk,
  decodeAgentMessage,
  decodeCoordinatorFrame,
  decodeCoordinatorMessage,
  decodePeerMessage,
  encode,
  encodeParts,
} from '../../protocol/codec.ts';
import { MalformedMessageError } from '../../protocol/errors.ts';
import { agentSamples, coordinatorSamples, peerSamples } from './fixtures/samples.ts';

type Decode = (bytes: Uint8Array) => { type: string };
const decoderList: Decode[] = [decodeAgentMessage, decodeCoordinatorMessage, decodePeerMessage];
const sampleList: { type: string }[][] = [agentSamples, coordinatorSamples, peerSamples];
const decoders = (which: number): Decode => decoderList[which]!;
const samplesOf = (which: number): { type: string }[] => sampleList[which]!;

function checkOutcome(decode: (bytes: Uint8Array) => { type: string }, bytes: Uint8Array): void {
  let message: { type: string };
  try {
    message = decode(bytes);
  } catch (error) {
    assert.ok(
      error instanceof MalformedMessageError,
      `decoder threw ${String(error)} instead of MalformedMessageError`,
    );
    assert.ok(error.message.length > 0);
    return;
  }
  assert.equal(typeof message.type, 'string');
  // A message that passes once passes again after a re-encode: validation is a property of the value.
  decode(encode(message as never));
}

void test('random bytes never crash a decoder', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 }), fc.uint8Array({ maxLength: 256 }), (which, bytes) => {
      checkOutcome(decoders(which), bytes);
    }),
    { numRuns: 500 },
  );
});

void test('byte-level mutations of valid frames: flips, truncation, splices', () => {
  const frame = fc
    .integer({ min: 0, max: 2 })
    .chain((which) =>
      fc.tuple(fc.constant(which), fc.constantFrom(...samplesOf(which).map((m) => encode(m as never)))),
    );
  fc.assert(
    fc.property(
      frame,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.nat(),
      ([which, bytes], flips, cut) => {
        const mutated = Uint8Array.from(bytes);
        for (const [at, value] of flips) mutated[at % mutated.length] = value;
        checkOutcome(decoders(which), mutated);
        checkOutcome(decoders(which), bytes.subarray(0, cut % bytes.length));
      },
    ),
    { numRuns: 500 },
  );
});

/** Every path to a value inside a message (objects and arrays), so a mutation can target any field. */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return [prefix];
  const keys: (string | number)[] = Array.isArray(value) ? value.map((_, i) => i) : Object.keys(value);
  return [prefix, ...keys.flatMap((k) => paths((value as Record<string | number, unknown>)[k], [...prefix, k]))];
}

function mutate(message: unknown, path: (string | number)[], op: 'set' | 'delete', replacement: unknown): unknown {
  const copy = structuredClone(message) as Record<string | number, unknown>;
  if (path.length === 0) return op === 'set' ? replacement : copy;
  let node: Record<string | number, unknown> = copy;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (op === 'delete' && !Array.isArray(node)) delete node[last];
  else node[last] = replacement;
  return copy;
}

void test('field-level mutations of valid messages: typed message or MalformedMessageError naming a field', () => {
  const target = fc
    .integer({ min: 0, max: 2 })
    .chain((which) =>
      fc
        .constantFrom(...samplesOf(which))
        .chain((message) => fc.tuple(fc.constant(which), fc.constant(message), fc.constantFrom(...paths(message)))),
    );
  fc.assert(
    fc.property(
      target,
      fc.constantFrom('set' as const, 'delete' as const),
      fc.anything({ maxDepth: 2, withTypedArray: true, withNullPrototype: true }),
      ([which, message, path], op, replacement) => {
        checkOutcome(decoders(which), encode(mutate(message, path, op, replacement) as never));
      },
    ),
    { numRuns: 800 },
  );
});

void test('deleting a required field is caught and the field is named', () => {
  // These fields are required in every message that has them.
  const required = new Set(['type', 'jobId', 'epoch', 'agentId', 'version', 'checkpointId', 'data', 'source', 'tag']);
  for (const [which, list] of sampleList.entries()) {
    for (const message of list) {
      for (const key of Object.keys(message)) {
        if (!required.has(key) || (message.type === 'heartbeat' && (key === 'jobId' || key === 'epoch'))) continue;
        const broken = mutate(message, [key], 'delete', undefined);
        assert.throws(
          () => decoders(which)(encode(broken as never)),
          (error: unknown) => error instanceof MalformedMessageError && error.field === key,
          `${message.type} without ${key}`,
        );
      }
    }
  }
});

void test('frames of several messages: mutated concatenations never throw, keep order, and refuse at most once', () => {
  const frameDecoders = [decodeAgentFrame, decodeCoordinatorFrame] as const;
  fc.assert(
    fc.property(
      fc
        .integer({ min: 0, max: 1 })
        .chain((which) =>
          fc.tuple(fc.constant(which), fc.array(fc.constantFrom(...samplesOf(which)), { minLength: 1, maxLength: 6 })),
        ),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
      fc.nat(),
      ([which, messages], flips, cut) => {
        const parts = messages.map((m) => encode(m as never));
        const bytes = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
        let at = 0;
        for (const p of parts) {
          bytes.set(p, at);
          at += p.byteLength;
        }
        const intact = frameDecoders[which]!(bytes);
        assert.deepEqual(
          intact.map((item) => (item.ok ? item.message : item.error.message)),
          messages,
        );
        for (const f of flips) bytes[f[0] % bytes.length] = f[1];
        const mutated = frameDecoders[which]!(flips.length > 0 ? bytes : bytes.subarray(0, cut % bytes.length));
        assert.ok(mutated.length >= 1);
        // Only the last item may be a refusal; everything before it is a valid message.
        mutated.slice(0, -1).forEach((item) => assert.ok(item.ok));
        const last = mutated.at(-1)!;
        if (!last.ok) assert.ok(last.error instanceof MalformedMessageError && last.error.message.length > 0);
      },
    ),
    { numRuns: 500 },
  );
});

void test('a message with a bulk frame: mutated heads and bulk lengths are refused with one clear error, never a crash', () => {
  const chunk = { ...agentSamples[4]!, data: new Uint8Array(BULK_MIN_BYTES).fill(7) } as never;
  const { head, bulk } = encodeParts(chunk) as { head: Uint8Array; bulk: Uint8Array };
  const decoders = [decodeAgentBulk, decodeCoordinatorBulk];
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 1 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
      fc.nat(),
      fc.option(fc.uint8Array({ maxLength: 64 })),
      (which, flips, cut, garbage) => {
        const mutated = garbage ?? Uint8Array.from(head);
        if (garbage === null) for (const f of flips) mutated[f[0] % mutated.length] = f[1];
        const items = decoders[which]!(mutated, bulk.subarray(0, bulk.byteLength - (cut % 3)));
        assert.equal(items.length, 1);
        const item = items[0]!;
        if (item.ok) assert.equal((item.message as { data: Uint8Array }).data.byteLength, BULK_MIN_BYTES);
        else assert.ok(item.error instanceof MalformedMessageError && item.error.message.length > 0);
      },
    ),
    { numRuns: 500 },
  );
});
