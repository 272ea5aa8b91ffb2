// `pe-arena doctor --probe`: the one check that reaches a compute node. It submits a one-task job through the
// profile's scheduler and waits, bounded, for the agent to say hello on a socket bound here. Its job script is the
// one a run submits, so with a container block the probe agent starts inside the container.
import { join, resolve } from 'node:path';
import { raceDeadline, TIMED_OUT } from '../../protocol/deadline.ts';
import { newRunId } from '../../protocol/ids.ts';
import type { Hello } from '../../protocol/messages.ts';
import type { ClusterProfile } from '../cluster-profile.ts';
import type { CheckResult } from './doctor-checks.ts';
import { advertisedAddress, bindAddressFor, hpcLauncherFor } from './hpc.ts';

/** --probe: one task on a compute node connects back to a socket bound here; bounded by timeoutMs. */
export async function probeComputeNode(
  profile: ClusterProfile,
  runsDir: string,
  timeoutMs: number,
): Promise<CheckResult> {
  const { bindServer } = await import('../../protocol/zmq-transport.ts');
  const server = await bindServer({ address: bindAddressFor(profile) });
  const launcher = hpcLauncherFor(profile.scheduler, profile, {});
  const runDir = join(resolve(runsDir), `doctor-${newRunId()}`);
  try {
    const hello = new Promise<Hello>((res) => {
      void (async () => {
        for await (const item of server.inbound())
          if (item.kind === 'message' && item.message.type === 'hello') return res(item.message);
      })();
    });
    const failed = new Promise<string>((res) =>
      launcher.onExit((e) =>
        res(
          `the probe task ${e.launcherId ?? ''} ended (code ${e.code}, ${e.signal ?? 'no signal'}) before connecting; see ${join(runDir, 'launch')}`,
        ),
      ),
    );
    const address = advertisedAddress(server.address, profile);
    await launcher.start({ coordinator: address, count: 1, runDir, agentArgs: ['--death-timeout-ms', '30000'] });
    const answer = await raceDeadline(
      Promise.race([hello.then((h) => ({ hello: h })), failed.then((why) => ({ why }))]),
      timeoutMs,
    );
    const outcome =
      answer === TIMED_OUT
        ? { why: `no hello within ${Math.round(timeoutMs / 1000)} s (still queued? see squeue/qstat)` }
        : answer;
    if ('hello' in outcome) {
      const h = outcome.hello;
      return {
        name: 'compute node probe',
        status: 'pass',
        detail: `${h.launcherId ?? '?'} on ${h.host}${profile.container === undefined ? '' : ` (in ${profile.container.runtime} ${profile.container.image})`} connected to ${address}; backend ${h.backend}; ${h.devices.map((d) => d.name).join(', ')}`,
      };
    }
    return {
      name: 'compute node probe',
      status: 'fail',
      detail: outcome.why,
      fix: 'check the agent log under the run directory, head.address and the firewall between compute nodes and this node',
    };
  } catch (error) {
    return {
      name: 'compute node probe',
      status: 'fail',
      detail: (error as Error).message,
      fix: 'see the error; pe-arena doctor without --probe checks the parts one by one',
    };
  } finally {
    await launcher.stop(5_000);
    await server.close().catch(() => undefined);
  }
}
