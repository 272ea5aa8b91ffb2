// CURVE keys: a cluster key pair as two files (mode 0600), Z85 text as ZeroMQ expects, one key per file.
// The coordinator serves with the pair, and by default accepts only clients that also hold it.
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { curveKeyPair } from 'zeromq';
import { KeyError } from './errors.ts';

export interface KeyPair {
  publicKey: string;
  secretKey: string;
}

export interface KeyFiles {
  dir: string;
  /** The cluster public key; agents need it to reach the coordinator (it says who the server is). */
  serverPublicFile: string;
  /** The cluster secret key; whoever holds it may join the cluster. */
  serverSecretFile: string;
  publicKey: string;
}

const Z85 = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const Z85_INDEX = new Map([...Z85].map((c, i) => [c, i]));

export function z85Encode(data: Uint8Array): string {
  if (data.length % 4 !== 0) throw new KeyError(`z85: input length ${data.length} is not a multiple of 4`);
  let out = '';
  for (let i = 0; i < data.length; i += 4) {
    let value = ((data[i]! << 24) | (data[i + 1]! << 16) | (data[i + 2]! << 8) | data[i + 3]!) >>> 0;
    const chunk: string[] = [];
    for (let j = 0; j < 5; j++) {
      chunk.unshift(Z85[value % 85]!);
      value = Math.floor(value / 85);
    }
    out += chunk.join('');
  }
  return out;
}

export function z85Decode(text: string): Uint8Array {
  if (text.length % 5 !== 0) throw new KeyError(`z85: text length ${text.length} is not a multiple of 5`);
  const out = new Uint8Array((text.length / 5) * 4);
  for (let i = 0, o = 0; i < text.length; i += 5, o += 4) {
    let value = 0;
    for (let j = 0; j < 5; j++) {
      const digit = Z85_INDEX.get(text[i + j]!);
      if (digit === undefined)
        throw new KeyError(`z85: ${JSON.stringify(text[i + j])} at ${i + j} is not a Z85 character`);
      value = value * 85 + digit;
    }
    if (value > 0xffffffff) throw new KeyError(`z85: group at ${i} is out of range`);
    out[o] = value >>> 24;
    out[o + 1] = (value >>> 16) & 0xff;
    out[o + 2] = (value >>> 8) & 0xff;
    out[o + 3] = value & 0xff;
  }
  return out;
}

/** Throws KeyError unless the text is a 40-character Z85 CURVE key. */
export function checkKey(key: string, what: string): string {
  if (typeof key !== 'string' || key.length !== 40)
    throw new KeyError(
      `${what}: expected a 40-character Z85 CURVE key, got ${typeof key === 'string' ? `${key.length} characters` : typeof key}`,
    );
  z85Decode(key);
  return key;
}

export function generateKeyPair(): KeyPair {
  return curveKeyPair();
}

const PUBLIC_FILE = 'cluster.key.pub';
const SECRET_FILE = 'cluster.key';

/** Writes a fresh cluster key pair under dir (created 0700 if missing); refuses to overwrite unless force. */
export async function initKeys(dir: string, options: { force?: boolean } = {}): Promise<KeyFiles> {
  const root = resolve(dir);
  await mkdir(root, { recursive: true, mode: 0o700 });
  const pair = generateKeyPair();
  const serverPublicFile = join(root, PUBLIC_FILE);
  const serverSecretFile = join(root, SECRET_FILE);
  const flag = options.force === true ? 'w' : 'wx';
  try {
    // The file holding the secret is created 0600 from the start, so there is no window where others can read it.
    await writeFile(serverSecretFile, `${pair.secretKey}\n${pair.publicKey}\n`, { mode: 0o600, flag });
    await writeFile(serverPublicFile, `${pair.publicKey}\n`, { mode: 0o600, flag });
  } catch (error) {
    if ((error as { code?: unknown }).code === 'EEXIST') {
      throw new KeyError(
        `keys already exist in ${root}; pass --force to replace them (every node then needs the new ones)`,
        { cause: error },
      );
    }
    throw new KeyError(`could not write keys to ${root}: ${(error as Error).message}`, { cause: error });
  }
  // writeFile's mode only applies on create; make sure a forced overwrite ends at 0600 too.
  await chmod(serverSecretFile, 0o600);
  await chmod(serverPublicFile, 0o600);
  return { dir: root, serverPublicFile, serverSecretFile, publicKey: pair.publicKey };
}

/** The cluster key pair from a directory written by initKeys (as `pe-arena keys init --dir` wrote it). */
export function loadClusterKeys(dir: string): Promise<KeyPair> {
  return loadKeyPair(join(resolve(dir), SECRET_FILE));
}

/** CURVE options for bindServer from the cluster pair: serve with it, admit clients that hold it. */
export function serverCurve(pair: KeyPair): { publicKey: string; secretKey: string; allowedClientKeys: string[] } {
  return { publicKey: pair.publicKey, secretKey: pair.secretKey, allowedClientKeys: [pair.publicKey] };
}

/** CURVE options for connectClient from the cluster pair. */
export function clientCurve(pair: KeyPair): { serverPublicKey: string; publicKey: string; secretKey: string } {
  return { serverPublicKey: pair.publicKey, publicKey: pair.publicKey, secretKey: pair.secretKey };
}

/** Reads the public key from a .pub file (first line). */
export async function loadPublicKey(file: string): Promise<string> {
  const lines = await readLines(file);
  return checkKey(lines[0] ?? '', `${file} line 1`);
}

/** Reads a key pair from the secret file written by initKeys: secret key, then public key. */
export async function loadKeyPair(file: string): Promise<KeyPair> {
  const lines = await readLines(file);
  const secretKey = checkKey(lines[0] ?? '', `${file} line 1 (secret key)`);
  const publicKey = checkKey(lines[1] ?? '', `${file} line 2 (public key)`);
  return { publicKey, secretKey };
}

async function readLines(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new KeyError(`could not read key file ${file}: ${(error as Error).message}`, { cause: error });
  }
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith('#'));
}
