// Realm key ceremony for several HSMs (docs/operating.md §1.4). The realm keys are
// created once (`coffer vault init --multi-node`) and copied to each further node's token only
// wrapped, through a transport key that the receiving token makes and never lets out:
//
//   receiving node:  coffer vault hsm transport-key  --data-dir B   > transport-B.json  (public)
//   first node:      coffer vault hsm export-wrapped --data-dir A --to transport-B.json > bundle-B.json
//   receiving node:  coffer vault hsm import-wrapped --data-dir B --in bundle-B.json
//   first node:      coffer vault hsm lock-export    --data-dir A   (after the last node)
//
// The bundle holds wrapped keys, the realm's public data and its already-sealed secrets: nothing
// in it is readable without the receiving token. It is bound to one transport key, which the
// import destroys. What must be checked by people: the transport key's fingerprint, read out on
// the receiving node and compared on the sending node before exporting (an attacker who swaps
// in their own transport key would receive the realm keys).

import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { protocol } from '@coffer/core/vault';
import { RealmConfigError, UnsealFailedError } from './errors.js';
import type { Hsm, KeyTransport } from './hsm/types.js';
import { hsmRefFor, openHsm, readRealmFile, REALM_FILE, writeRealmFile, type HsmRef, type InitOptions, type RealmFile } from './realm.js';

export const TRANSPORT_FILE = 'transport-key.json';

/** Kept on the receiving node between `transport-key` and `import-wrapped` (no secret in it). */
interface TransportFile {
  format: 'coffer-vault-transport-key-v1';
  hsm: HsmRef;
  label: string;
  publicKey: string;
  createdAt: string;
}

/** What the receiving node hands to the sending node. Public. */
export interface TransportPublic {
  format: 'coffer-vault-transport-public-v1';
  publicKey: string;
  fingerprint: string;
}

export interface WrappedBundle {
  format: 'coffer-vault-wrapped-realm-v1';
  /** The realm file without its node-specific HSM reference. */
  realm: Omit<RealmFile, 'hsm'>;
  transportFingerprint: string;
  ephemeralPublicKey: string;
  keys: { label: string; wrapped: string; check: string }[];
}

export function transportFingerprint(publicKey: Uint8Array): string {
  const h = createHash('sha256').update('coffer-vault-v1 transport-key').update(publicKey).digest('hex').slice(0, 32);
  return h.match(/.{4}/g)!.join('-');
}

const CHECK_PLAINTEXT = protocol.utf8('coffer-vault-v1 key-check');
const checkAad = (label: string) => protocol.concat(protocol.utf8(`${protocol.PROTOCOL_LABEL} key-check`), protocol.lp(label));

/** The HSM and its key transport; closes the HSM and refuses if it has none (the software HSM). */
async function withKeyTransport<T>(hsm: Hsm, f: (kt: KeyTransport, hsm: Hsm) => Promise<T>): Promise<T> {
  try {
    if (!hsm.keyTransport) {
      throw new RealmConfigError('the key ceremony needs a PKCS#11 HSM (SoftHSM2 or a real one)', { hint: 'init the realm with --hsm softhsm or --hsm pkcs11 and --multi-node' });
    }
    return await f(hsm.keyTransport, hsm);
  } finally {
    await hsm.close();
  }
}

const warnDefault = (m: string) => process.stderr.write(m + '\n');

/** Receiving side, step 1: makes the token (if needed) and a transport key pair on it. */
export async function createTransportKey(o: Pick<InitOptions, 'hsm' | 'pkcs11Module' | 'pkcs11Token' | 'warn'> & { dataDir: string }): Promise<TransportPublic> {
  const dataDir = resolve(o.dataDir);
  if (existsSync(join(dataDir, REALM_FILE))) throw new RealmConfigError(`${dataDir} already holds a realm; a transport key is made on a node that has none yet`, { hint: 'choose an empty --data-dir for the new node' });
  if (existsSync(join(dataDir, TRANSPORT_FILE))) throw new RealmConfigError(`${dataDir} already has a transport key waiting for import`, { hint: `finish with \`coffer vault hsm import-wrapped\`, or delete ${TRANSPORT_FILE} to start over` });
  const ref = hsmRefFor({ hsm: o.hsm ?? 'softhsm', ...(o.pkcs11Module ? { pkcs11Module: o.pkcs11Module } : {}), ...(o.pkcs11Token ? { pkcs11Token: o.pkcs11Token } : {}) });
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  return withKeyTransport(openHsm(ref, dataDir, o.warn ?? warnDefault, true), async (kt) => {
    const label = `coffer-transport-${randomBytes(4).toString('hex')}`;
    const point = await kt.createTransportKey(label);
    const file: TransportFile = { format: 'coffer-vault-transport-key-v1', hsm: ref, label, publicKey: protocol.b64u(point), createdAt: new Date().toISOString() };
    writeFileSync(join(dataDir, TRANSPORT_FILE), JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
    return { format: 'coffer-vault-transport-public-v1', publicKey: file.publicKey, fingerprint: transportFingerprint(point) };
  });
}

function parseTransport(x: unknown): { point: Uint8Array; fingerprint: string } {
  const t = x as Partial<TransportPublic>;
  if (t?.format !== 'coffer-vault-transport-public-v1' || typeof t.publicKey !== 'string') throw new RealmConfigError('not a transport public key (made by `coffer vault hsm transport-key`)');
  const point = protocol.fromB64u(t.publicKey);
  const fingerprint = transportFingerprint(point);
  if (t.fingerprint !== fingerprint) throw new RealmConfigError('the transport key file is inconsistent (fingerprint does not match the key)');
  return { point, fingerprint };
}

/** Sending side: wraps the realm keys for one receiving token. */
export async function exportWrapped(o: { dataDir: string; transport: unknown; expectFingerprint: string; lock?: boolean; warn?: (m: string) => void }): Promise<WrappedBundle> {
  const dataDir = resolve(o.dataDir);
  const file = readRealmFile(dataDir);
  const { point, fingerprint } = parseTransport(o.transport);
  // Required: the fingerprint, heard from the receiving node's operator, is the only thing that
  // tells this node that the transport key is theirs and not an attacker's.
  if (typeof o.expectFingerprint !== 'string' || o.expectFingerprint.trim().toLowerCase() !== fingerprint) {
    throw new RealmConfigError(`the transport key's fingerprint is ${fingerprint}, not the one you were given`, { hint: 'do not export: the transport key may have been swapped; make a new one on the receiving node' });
  }
  return withKeyTransport(openHsm(file.hsm, dataDir, o.warn ?? warnDefault, false), async (kt, hsm) => {
    const labels = [file.realmKeyLabel, file.recordKeyLabel];
    const w = await kt.wrapForTransport(labels, point);
    const keys = [];
    for (const k of w.wrapped) keys.push({ label: k.label, wrapped: protocol.b64u(k.wrapped), check: protocol.b64u(await hsm.seal(k.label, CHECK_PLAINTEXT, checkAad(k.label))) });
    if (o.lock) for (const l of labels) await kt.lockExport(l);
    const { hsm: _node, ...realm } = file;
    return { format: 'coffer-vault-wrapped-realm-v1', realm, transportFingerprint: fingerprint, ephemeralPublicKey: protocol.b64u(w.ephemeralPoint), keys };
  });
}

/** Receiving side, step 2: unwraps into non-extractable keys, checks them, writes realm.json. */
export async function importWrapped(o: { dataDir: string; bundle: unknown; warn?: (m: string) => void }): Promise<RealmFile> {
  const dataDir = resolve(o.dataDir);
  const tpath = join(dataDir, TRANSPORT_FILE);
  if (existsSync(join(dataDir, REALM_FILE))) throw new RealmConfigError(`${dataDir} already holds a realm; refusing to overwrite it`);
  if (!existsSync(tpath)) throw new RealmConfigError(`no transport key in ${dataDir}`, { hint: 'run `coffer vault hsm transport-key` here first' });
  const t = JSON.parse(readFileSync(tpath, 'utf8')) as TransportFile;
  const b = o.bundle as Partial<WrappedBundle>;
  if (b?.format !== 'coffer-vault-wrapped-realm-v1' || !b.realm || !Array.isArray(b.keys) || typeof b.ephemeralPublicKey !== 'string') {
    throw new RealmConfigError('not a wrapped realm bundle (made by `coffer vault hsm export-wrapped`)');
  }
  if (b.transportFingerprint !== transportFingerprint(protocol.fromB64u(t.publicKey))) {
    throw new RealmConfigError('this bundle was wrapped for another transport key', { hint: 'export again with this node\'s current transport key' });
  }
  const { realm, keys, ephemeralPublicKey } = b;
  const labels = [realm.realmKeyLabel, realm.recordKeyLabel];
  if (keys.length !== 2 || !keys.every((k, i) => k.label === labels[i])) throw new RealmConfigError('the bundle does not hold exactly the realm key and the record key');
  await withKeyTransport(openHsm(t.hsm, dataDir, o.warn ?? warnDefault, false), async (kt, hsm) => {
    await kt.unwrapFromTransport(
      t.label,
      protocol.fromB64u(ephemeralPublicKey),
      keys.map((k) => ({ label: k.label, wrapped: protocol.fromB64u(k.wrapped) })),
    );
    for (const k of keys) {
      const pt = await hsm.unseal(k.label, protocol.fromB64u(k.check), checkAad(k.label)).catch((cause: unknown) => {
        throw new UnsealFailedError(`key check of "${k.label}" (the imported key differs from the exported one)`, { cause });
      });
      if (Buffer.compare(Buffer.from(pt), Buffer.from(CHECK_PLAINTEXT)) !== 0) throw new UnsealFailedError(`key check of "${k.label}"`);
    }
    await kt.destroyTransportKey(t.label);
  });
  const file: RealmFile = { ...(realm as Omit<RealmFile, 'hsm'>), hsm: t.hsm };
  writeRealmFile(dataDir, file);
  rmSync(tpath, { force: true });
  return file;
}

/** After the last node: the realm keys on this token can no longer be exported (one-way). */
export async function lockExport(o: { dataDir: string; warn?: (m: string) => void }): Promise<void> {
  const dataDir = resolve(o.dataDir);
  const file = readRealmFile(dataDir);
  await withKeyTransport(openHsm(file.hsm, dataDir, o.warn ?? warnDefault, false), async (kt) => {
    await kt.lockExport(file.realmKeyLabel);
    await kt.lockExport(file.recordKeyLabel);
  });
}

/** Whether the realm keys on this node's token can still be exported (for `hsm status`). */
export async function keyStatus(o: { dataDir: string; warn?: (m: string) => void }): Promise<{ label: string; extractable: boolean; sensitive: boolean }[]> {
  const dataDir = resolve(o.dataDir);
  const file = readRealmFile(dataDir);
  return withKeyTransport(openHsm(file.hsm, dataDir, o.warn ?? warnDefault, false), async (kt) => {
    const out = [];
    for (const label of [file.realmKeyLabel, file.recordKeyLabel]) {
      const a = await kt.keyAttributes(label);
      out.push({ label, extractable: a.extractable, sensitive: a.sensitive });
    }
    return out;
  });
}
