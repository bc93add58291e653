// Realm setup on disk: `coffer vault init` writes DIR/realm.json (public data and sealed secrets);
// the HSM holds the keys that seal them. Layout of DIR:
//   realm.json                          realm id, public key, HSM reference, sealed secrets, policy
//   records.sqlite                      the record store (embedded default)
//   softhsm/                            SoftHSM2 token of this vault (softhsm2.conf, tokens/, user.pin)
//   software-hsm-DEVELOPMENT-ONLY.json  the software HSM key file, when SoftHSM2 is not installed

import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as opaque from '@serenity-kit/opaque';
import { protocol } from '@coffer/core/vault';
import { Boundary, DEFAULT_POLICY, realmSecretsAad, unsealRealmSecrets, type AttemptPolicy, type RealmSecrets } from './boundary.js';
import { RealmConfigError, UsageError } from './errors.js';
import { Pkcs11Hsm } from './hsm/pkcs11.js';
import { findSoftHsmModule, initSoftHsmToken, openSoftHsm, softHsmInstalled } from './hsm/softhsm.js';
import { SoftwareHsmDevelopmentOnly } from './hsm/software.js';
import type { Hsm } from './hsm/types.js';
import { configuredTokenKey, ed25519PublicKeyFromPem, type TokenVerifier } from './token.js';
import { noisePublicKeyFor } from './juicebox/keys.js';

/** Which HSM a new realm uses: auto (SoftHSM2 when installed, else the development-only software HSM), softhsm, software or pkcs11. */
export type HsmChoice = 'auto' | 'softhsm' | 'software' | 'pkcs11';

export type HsmRef =
  | { kind: 'softhsm'; dir: string; tokenLabel: string }
  | { kind: 'software-development-only'; keyFile: string }
  | { kind: 'pkcs11'; module: string; tokenLabel: string; pinEnv: string };

/** The realm file (DIR/realm.json): public key, sealed realm secrets, HSM reference and token settings; nothing secret in the clear. */
export interface RealmFile {
  format: 'coffer-vault-realm-v1';
  realmId: string;
  realmPublicKey: string;
  hsm: HsmRef;
  realmKeyLabel: string;
  recordKeyLabel: string;
  sealedSecrets: string;
  token: { alg: 'HS256' } | { alg: 'EdDSA'; publicKeyPem: string };
  policy: AttemptPolicy;
  createdAt: string;
  /** The X25519 key of the Juicebox hardware-realm wire, hex (spec/juicebox.md §9; derived from the sealed secrets). */
  juiceboxPublicKey?: string;
  /** Channel keys in their overlap period after `rotate-channel-key` (informative; the keys are in the sealed secrets). */
  previousRealmPublicKeys?: { realmPublicKey: string; retireAt: string }[];
}

/** The realm file's name in the data folder. */
export const REALM_FILE = 'realm.json';
/** The embedded SQLite record store's name in the data folder. */
export const RECORDS_FILE = 'records.sqlite';
export const PKCS11_PIN_ENV = 'COFFER_VAULT_HSM_PIN';

/** What {@link initRealm} takes: the data folder, the HSM, and the token key of the app's auth server. */
export interface InitOptions {
  dataDir: string;
  hsm?: HsmChoice;
  /** For `hsm: 'pkcs11'`. PIN from env COFFER_VAULT_HSM_PIN. */
  pkcs11Module?: string;
  pkcs11Token?: string;
  /** PEM of the app auth server's Ed25519 public key; without it, HS256 with a secret generated here. */
  tokenPublicKeyPem?: string;
  policy?: AttemptPolicy;
  warn?: (message: string) => void;
  /**
   * Several nodes will share this realm: the realm keys may leave this token, only wrapped for
   * another token, by `coffer vault hsm export-wrapped` (until `hsm lock-export`). PKCS#11 only.
   */
  multiNode?: boolean;
}

/** A realm opened by {@link openRealm}: its file, its HSM session and its boundary. */
export interface OpenedRealm {
  file: RealmFile;
  hsm: Hsm;
  dataDir: string;
}

function writeAtomic(path: string, data: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode: 0o600 });
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, path);
}

export function openHsm(ref: HsmRef, dataDir: string, warn: (m: string) => void, create: boolean): Hsm {
  switch (ref.kind) {
    case 'softhsm': {
      const dir = resolve(dataDir, ref.dir);
      const token = create ? initSoftHsmToken(dir, ref.tokenLabel) : { conf: join(dir, 'softhsm2.conf'), module: initModule(), tokenLabel: ref.tokenLabel, pinFile: join(dir, 'user.pin') };
      return openSoftHsm(token);
    }
    case 'software-development-only':
      return SoftwareHsmDevelopmentOnly.open(resolve(dataDir, ref.keyFile), warn);
    case 'pkcs11': {
      const pin = process.env[ref.pinEnv];
      if (!pin) {
        throw new RealmConfigError(`${ref.pinEnv} is not set: it must hold the user PIN of PKCS#11 token "${ref.tokenLabel}"`, {
          hint: `export ${ref.pinEnv}=<user PIN> in the environment of every \`coffer vault\` command of this node (never on the command line); with SoftHSM2 also set SOFTHSM2_CONF`,
        });
      }
      return Pkcs11Hsm.open({ module: ref.module, tokenLabel: ref.tokenLabel, pin });
    }
  }
}

function initModule(): string {
  const found = findSoftHsmModule();
  if (!found) throw new RealmConfigError('this realm uses SoftHSM2 but it is not installed (apt-get install softhsm2, or run scripts/setup.sh)');
  return found;
}

/** Creates a realm in `dataDir`. Refuses to overwrite an existing one. */
export async function initRealm(o: InitOptions): Promise<{ file: RealmFile; hsmDescription: string }> {
  const warn = o.warn ?? ((m: string) => process.stderr.write(m + '\n'));
  const dataDir = resolve(o.dataDir);
  const realmPath = join(dataDir, REALM_FILE);
  if (existsSync(realmPath)) throw new RealmConfigError(`a realm already exists in ${dataDir}; refusing to overwrite it (its records would become unreadable)`, {
      hint: 'use `coffer vault serve` with this directory, or choose another --data-dir',
    });
  const ref = hsmRefFor(o);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (o.multiNode && ref.kind === 'software-development-only') {
    throw new RealmConfigError('--multi-node needs a PKCS#11 HSM (SoftHSM2 or a real one): the key ceremony wraps keys inside the token', { hint: 'install SoftHSM2 (scripts/setup.sh) or use --hsm pkcs11' });
  }
  const hsm = openHsm(ref, dataDir, warn, true);
  try {
    const realmId = new Uint8Array(randomBytes(16));
    const tag = randomBytes(4).toString('hex');
    const realmKeyLabel = `coffer-realm-${tag}`;
    const recordKeyLabel = `coffer-records-${tag}`;
    if (o.multiNode) {
      if (!hsm.keyTransport) throw new RealmConfigError('--multi-node needs an HSM that can copy keys wrapped (PKCS#11)');
      await hsm.keyTransport.generateExportableKey(realmKeyLabel);
      await hsm.keyTransport.generateExportableKey(recordKeyLabel);
    } else {
      await hsm.generateKey(realmKeyLabel);
      await hsm.generateKey(recordKeyLabel);
    }
    await opaque.ready;
    const suite = protocol.hpkeSuite();
    const kp = await suite.kem.generateKeyPair();
    const pk = new Uint8Array(await suite.kem.serializePublicKey(kp.publicKey));
    const sk = new Uint8Array(await suite.kem.serializePrivateKey(kp.privateKey));
    const secrets: RealmSecrets = {
      opaqueServerSetup: opaque.server.createSetup(),
      hpkePrivateKey: protocol.b64u(sk),
      ticketKey: protocol.b64u(randomBytes(32)),
    };
    sk.fill(0);
    let token: RealmFile['token'];
    if (o.tokenPublicKeyPem) {
      ed25519PublicKeyFromPem(o.tokenPublicKeyPem);
      token = { alg: 'EdDSA', publicKeyPem: o.tokenPublicKeyPem };
    } else {
      secrets.tokenSecret = protocol.b64u(randomBytes(32));
      token = { alg: 'HS256' };
    }
    const sealed = await hsm.seal(realmKeyLabel, protocol.utf8(JSON.stringify(secrets)), realmSecretsAad(realmId));
    const file: RealmFile = {
      format: 'coffer-vault-realm-v1',
      realmId: protocol.b64u(realmId),
      realmPublicKey: protocol.formatRealmPublicKey(realmId, pk),
      hsm: ref,
      realmKeyLabel,
      recordKeyLabel,
      sealedSecrets: protocol.b64u(sealed),
      token,
      policy: o.policy ?? DEFAULT_POLICY,
      createdAt: new Date().toISOString(),
      juiceboxPublicKey: noisePublicKeyFor(secrets),
    };
    writeAtomic(realmPath, JSON.stringify(file, null, 2) + '\n');
    return { file, hsmDescription: hsm.description };
  } finally {
    await hsm.close();
  }
}

/** The HSM reference `init` would use for a choice (also used by the key ceremony's receiving side). */
export function hsmRefFor(o: Pick<InitOptions, 'hsm' | 'pkcs11Module' | 'pkcs11Token'>): HsmRef {
  const choice = o.hsm ?? 'auto';
  if (choice === 'pkcs11') {
    if (!o.pkcs11Module || !o.pkcs11Token) throw new UsageError('--hsm pkcs11 needs --pkcs11-module PATH and --pkcs11-token LABEL', 'the user PIN goes in $COFFER_VAULT_HSM_PIN');
    return { kind: 'pkcs11', module: o.pkcs11Module, tokenLabel: o.pkcs11Token, pinEnv: PKCS11_PIN_ENV };
  }
  if (o.pkcs11Module) {
    throw new UsageError('--pkcs11-module is only for --hsm pkcs11', 'with --hsm softhsm the vault finds SoftHSM2 itself (or set COFFER_PKCS11_MODULE); to use a token of your own, give --hsm pkcs11');
  }
  if (choice === 'softhsm' || (choice === 'auto' && softHsmInstalled())) {
    // The token this vault makes in DATA/softhsm/; --pkcs11-token names it (default coffer-vault).
    const tokenLabel = o.pkcs11Token ?? 'coffer-vault';
    if (!/^[\x20-\x7e]{1,32}$/.test(tokenLabel)) throw new UsageError('--pkcs11-token must be 1-32 printable ASCII characters (a PKCS#11 token label)');
    return { kind: 'softhsm', dir: 'softhsm', tokenLabel };
  }
  if (o.pkcs11Token) throw new UsageError('--pkcs11-token names a PKCS#11 token, and the software HSM has none', 'use --hsm softhsm or --hsm pkcs11');
  return { kind: 'software-development-only', keyFile: 'software-hsm-DEVELOPMENT-ONLY.json' };
}

export function writeRealmFile(dataDir: string, file: RealmFile): void {
  writeAtomic(join(resolve(dataDir), REALM_FILE), JSON.stringify(file, null, 2) + '\n');
}

/** Reads and checks DIR/realm.json; throws RealmConfigError with a hint when there is no realm. */
export function readRealmFile(dataDir: string): RealmFile {
  const p = join(resolve(dataDir), REALM_FILE);
  if (!existsSync(resolve(dataDir))) throw new RealmConfigError(`no realm in ${resolve(dataDir)}: the directory does not exist`);
  if (!existsSync(p)) throw new RealmConfigError(`no realm in ${resolve(dataDir)} (missing ${REALM_FILE})`);
  let f: RealmFile;
  try {
    f = JSON.parse(readFileSync(p, 'utf8')) as RealmFile;
  } catch (cause) {
    throw new RealmConfigError(`${p} is not valid JSON`, { cause });
  }
  if (f.format !== 'coffer-vault-realm-v1') throw new RealmConfigError(`${p} is not a Coffer vault realm file (format ${String(f.format)})`);
  return f;
}

/** Opens the realm's HSM and unseals its boundary. */
export async function openRealm(
  dataDir: string,
  o: { warn?: (m: string) => void; now?: () => number; policy?: Partial<AttemptPolicy> } = {},
): Promise<{ file: RealmFile; hsm: Hsm; boundary: Boundary }> {
  const warn = o.warn ?? ((m: string) => process.stderr.write(m + '\n'));
  const file = readRealmFile(dataDir);
  const hsm = openHsm(file.hsm, resolve(dataDir), warn, false);
  try {
    const tokenVerifier = configuredTokenKey(file.token);
    const policy = { ...file.policy, ...o.policy };
    if (!(policy.minMaxAttempts >= 1 && policy.minMaxAttempts <= policy.defaultMaxAttempts && policy.defaultMaxAttempts <= policy.maxMaxAttempts)) {
      throw new RealmConfigError('attempt policy must satisfy 1 <= min <= default <= max');
    }
    const boundary = await Boundary.start({
      realmIdText: file.realmId,
      realmPublicKey: file.realmPublicKey,
      hsm,
      realmKeyLabel: file.realmKeyLabel,
      recordKeyLabel: file.recordKeyLabel,
      sealedSecrets: protocol.fromB64u(file.sealedSecrets),
      policy,
      ...(tokenVerifier ? { tokenVerifier } : {}),
      ...(o.now ? { now: o.now } : {}),
    });
    return { file, hsm, boundary };
  } catch (e) {
    await hsm.close();
    throw e;
  }
}

/**
 * Channel key rotation with an overlap period (docs/operating.md §4): a new HPKE key pair becomes
 * the realm public key; the previous one stays in the sealed secrets and keeps opening requests
 * until `overlapMs` from now. Run on one node; copy the result to the others with `realm-update`.
 */
export async function rotateChannelKey(o: { dataDir: string; overlapMs: number; now?: () => number; warn?: (m: string) => void }): Promise<RealmFile> {
  const warn = o.warn ?? ((m: string) => process.stderr.write(m + '\n'));
  if (!(o.overlapMs >= 0)) throw new RealmConfigError('the overlap period must be zero or more');
  const dataDir = resolve(o.dataDir);
  const file = readRealmFile(dataDir);
  const now = (o.now ?? Date.now)();
  const hsm = openHsm(file.hsm, dataDir, warn, false);
  try {
    const realmId = protocol.fromB64u(file.realmId);
    const secrets = await unsealRealmSecrets(hsm, file.realmKeyLabel, protocol.fromB64u(file.sealedSecrets), realmId);
    const suite = protocol.hpkeSuite();
    const kp = await suite.kem.generateKeyPair();
    const pk = new Uint8Array(await suite.kem.serializePublicKey(kp.publicKey));
    const sk = new Uint8Array(await suite.kem.serializePrivateKey(kp.privateKey));
    const retireAt = now + o.overlapMs;
    const previous = [
      { privateKey: secrets.hpkePrivateKey, realmPublicKey: file.realmPublicKey, retireAt },
      ...(secrets.previousHpkeKeys ?? []).filter((p) => p.retireAt > now),
    ];
    secrets.hpkePrivateKey = protocol.b64u(sk);
    sk.fill(0);
    secrets.previousHpkeKeys = previous;
    const sealed = await hsm.seal(file.realmKeyLabel, protocol.utf8(JSON.stringify(secrets)), realmSecretsAad(realmId));
    const next: RealmFile = {
      ...file,
      realmPublicKey: protocol.formatRealmPublicKey(realmId, pk),
      sealedSecrets: protocol.b64u(sealed),
      previousRealmPublicKeys: previous.map((p) => ({ realmPublicKey: p.realmPublicKey, retireAt: new Date(p.retireAt).toISOString() })),
    };
    // Self-test before anything is written: the new secrets open and match the new public key.
    await Boundary.start({ realmIdText: next.realmId, realmPublicKey: next.realmPublicKey, hsm, realmKeyLabel: next.realmKeyLabel, recordKeyLabel: next.recordKeyLabel, sealedSecrets: sealed, policy: next.policy, ...tokenKeyOption(next) });
    writeRealmFile(dataDir, next);
    return next;
  } finally {
    await hsm.close();
  }
}

function tokenKeyOption(file: RealmFile): { tokenVerifier?: TokenVerifier } {
  const k = configuredTokenKey(file.token);
  return k ? { tokenVerifier: k } : {};
}

/** Public part of a realm file, for `realm-update` on the other nodes (no HSM reference). */
export function realmForOtherNodes(file: RealmFile): Omit<RealmFile, 'hsm'> {
  const { hsm: _local, ...rest } = file;
  return rest;
}

/**
 * Takes another node's newer realm file (after `rotate-channel-key`) for this node: same realm,
 * this node's HSM reference; checked against this node's token before it is written.
 */
export async function updateRealm(o: { dataDir: string; from: unknown; warn?: (m: string) => void }): Promise<RealmFile> {
  const warn = o.warn ?? ((m: string) => process.stderr.write(m + '\n'));
  const dataDir = resolve(o.dataDir);
  const mine = readRealmFile(dataDir);
  const other = o.from as Partial<RealmFile>;
  if (other?.format !== 'coffer-vault-realm-v1' || typeof other.sealedSecrets !== 'string' || typeof other.realmPublicKey !== 'string') {
    throw new RealmConfigError('not a realm file (made by `coffer vault rotate-channel-key --out`)');
  }
  if (other.realmId !== mine.realmId || other.realmKeyLabel !== mine.realmKeyLabel || other.recordKeyLabel !== mine.recordKeyLabel) {
    throw new RealmConfigError('that realm file belongs to another realm', { hint: 'copy it from a node of this realm' });
  }
  const next: RealmFile = { ...(other as RealmFile), hsm: mine.hsm };
  const hsm = openHsm(mine.hsm, dataDir, warn, false);
  try {
    await Boundary.start({ realmIdText: next.realmId, realmPublicKey: next.realmPublicKey, hsm, realmKeyLabel: next.realmKeyLabel, recordKeyLabel: next.recordKeyLabel, sealedSecrets: protocol.fromB64u(next.sealedSecrets), policy: next.policy, ...tokenKeyOption(next) });
  } finally {
    await hsm.close();
  }
  writeRealmFile(dataDir, next);
  return next;
}
