// The protocol version is agreed once, when an agent says hello; there is no per-message version check.
import { PROTOCOL_VERSION } from './messages.ts';
import type { Hello, Reject } from './messages.ts';

export type Negotiation = { ok: true } | { ok: false; reject: Reject; logLine: string };

export function negotiate(
  hello: Pick<Hello, 'version' | 'agentId' | 'host' | 'pid'>,
  ours: number = PROTOCOL_VERSION,
): Negotiation {
  if (hello.version === ours) return { ok: true };
  const reason = `protocol version mismatch: the coordinator speaks version ${ours}, agent ${hello.agentId} speaks version ${hello.version}; run the same pe-arena release on every node`;
  return {
    ok: false,
    reject: { type: 'reject', reason, version: ours },
    logLine: `rejected agent ${hello.agentId} (${hello.host} pid ${hello.pid}): protocol version ${hello.version}, ours is ${ours}`,
  };
}
