// The one entry point `pe-arena run --launcher pbs|slurm` needs: load the site profile, build the launcher, and
// work out the address agents on compute nodes dial (a loopback or wildcard bind means nothing to them).
import os from 'node:os';
import { loadClusterProfile } from '../cluster-profile.ts';
import type { ClusterProfile } from '../cluster-profile.ts';
import { ClusterProfileError } from './errors.ts';
import { createPbsLauncher } from './pbs.ts';
import { createSlurmLauncher } from './slurm.ts';
import type { SchedulerLauncher, SchedulerLauncherOptions } from './scheduler-launcher.ts';

export type HpcLauncherName = 'pbs' | 'slurm';

export interface HpcLauncherOptions extends Omit<SchedulerLauncherOptions, 'profile'> {
  /** configs/clusters/<site>.json */
  clusterFile: string;
}

/** Build the pbs or slurm launcher from a profile file; throws ClusterProfileError naming the field. */
export async function createHpcLauncher(
  name: HpcLauncherName,
  options: HpcLauncherOptions,
): Promise<{ launcher: SchedulerLauncher; profile: ClusterProfile }> {
  const profile = await loadClusterProfile(options.clusterFile);
  return { launcher: hpcLauncherFor(name, profile, options), profile };
}

export function hpcLauncherFor(
  name: HpcLauncherName,
  profile: ClusterProfile,
  options: Omit<SchedulerLauncherOptions, 'profile'> = {},
): SchedulerLauncher {
  if (profile.scheduler !== name) {
    throw new ClusterProfileError(
      profile.file,
      'scheduler',
      `is "${profile.scheduler}" but --launcher ${name} was asked for; use --launcher ${profile.scheduler} or a ${name} profile`,
    );
  }
  const rest: Omit<SchedulerLauncherOptions, 'profile'> = { ...options };
  delete (rest as { clusterFile?: string }).clusterFile;
  return name === 'slurm' ? createSlurmLauncher(profile, rest) : createPbsLauncher(profile, rest);
}

/**
 * The address agents dial: the bound one with its host replaced by the profile's head.address (or this host's
 * name) when it is a wildcard or loopback bind, e.g. tcp://0.0.0.0:5555 -> tcp://login01:5555.
 */
export function advertisedAddress(bound: string, profile: ClusterProfile): string {
  const m = /^tcp:\/\/([^:/]+|\[[^\]]+\]):(\d+)$/.exec(bound);
  if (m === null) return bound;
  const host = m[1]!;
  if (profile.headAddress !== undefined && (host === '0.0.0.0' || host === '*' || host === '[::]'))
    return `tcp://${profile.headAddress}:${m[2]}`;
  if (host === '0.0.0.0' || host === '*' || host === '[::]') return `tcp://${os.hostname()}:${m[2]}`;
  return bound;
}

/** The bind address for the coordinator: the first port of the profile's range on all interfaces, else a free port. */
export function bindAddressFor(profile: ClusterProfile): string {
  return profile.portRange === undefined ? 'tcp://0.0.0.0:0' : `tcp://0.0.0.0:${profile.portRange[0]}`;
}
