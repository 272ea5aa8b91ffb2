// `pe-arena doctor`: everything that breaks a cluster run before training starts, checked on the head node before
// the queue wait, in an order where each check can use what the earlier ones found (the profile first).
import os from 'node:os';
import { join } from 'node:path';
import { expandUserPath } from '../cluster-profile.ts';
import type { ClusterProfile } from '../cluster-profile.ts';
import {
  checkBackends,
  checkContainer,
  checkDisk,
  checkGpus,
  checkKeys,
  checkNode,
  checkProfile,
  checkReachability,
  checkScheduler,
  checkZeromq,
} from './doctor-checks.ts';
import type { CheckResult } from './doctor-checks.ts';
import { probeComputeNode } from './doctor-probe.ts';

export interface DoctorOptions {
  /** configs/clusters/<site>.json */
  clusterFile?: string;
  /** Submit a one-task job and wait for it to connect back. */
  probe?: boolean;
  probeTimeoutMs?: number;
  runsDir?: string;
  /** Where keys are looked for without a profile (default ~/.pe-arena/keys). */
  keysDir?: string;
  /** Each result as it is known (the command prints them). */
  onResult?: (result: CheckResult) => void;
}

/** Run every check; resolves with the results (exit code 1 when any is 'fail'). */
export async function runDoctor(options: DoctorOptions = {}): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const add = (r: CheckResult | CheckResult[]): void => {
    for (const x of Array.isArray(r) ? r : [r]) {
      results.push(x);
      options.onResult?.(x);
    }
  };
  add(checkNode());
  add(await checkZeromq());
  let profile: ClusterProfile | undefined;
  if (options.clusterFile !== undefined) {
    const p = await checkProfile(options.clusterFile);
    add(p.result);
    profile = p.profile;
  }
  add(await checkScheduler(profile?.scheduler, profile));
  if (profile?.container !== undefined) add(checkContainer(profile.container, { commandsDir: profile.commandsDir }));
  add(await checkReachability(profile));
  add(checkDisk(options.runsDir ?? 'runs'));
  const keysDir = expandUserPath(profile?.keysDir ?? options.keysDir ?? join(os.homedir(), '.pe-arena', 'keys'));
  add(checkKeys(keysDir, profile?.keysDir !== undefined));
  add(await checkGpus(profile?.gpus ?? 0));
  add(await checkBackends());
  if (options.probe === true) {
    if (profile === undefined)
      add({
        name: 'compute node probe',
        status: 'fail',
        detail: '--probe needs --cluster <profile>',
        fix: 'pe-arena doctor --cluster configs/clusters/<site>.json --probe',
      });
    else if (results.some((r) => r.status === 'fail'))
      add({ name: 'compute node probe', status: 'fail', detail: 'skipped: fix the failures above first' });
    else add(await probeComputeNode(profile, options.runsDir ?? 'runs', options.probeTimeoutMs ?? 600_000));
  }
  return results;
}

export function formatCheck(r: CheckResult): string {
  const tag = r.status === 'pass' ? 'PASS' : r.status === 'warn' ? 'WARN' : 'FAIL';
  return `  ${tag}  ${r.name.padEnd(24)} ${r.detail}${r.fix !== undefined && r.status !== 'pass' ? `\n        fix: ${r.fix}` : ''}`;
}
