// SoftHSM2 helpers: a token in a folder of its own, selected through SOFTHSM2_CONF.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { HsmUnavailableError } from '../errors.js';
import { DEFAULT_PKCS11_MODULES, Pkcs11Hsm } from './pkcs11.js';

/** A SoftHSM2 token made in a folder of its own: its config file, module, label and PIN. */
export interface SoftHsmToken {
  /** Path of the generated softhsm2.conf (set SOFTHSM2_CONF to it before loading the module). */
  conf: string;
  module: string;
  tokenLabel: string;
  /** File holding the user PIN (mode 0600). */
  pinFile: string;
}

export function findSoftHsmModule(): string | null {
  const fromEnv = process.env['COFFER_PKCS11_MODULE'];
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : null;
  return DEFAULT_PKCS11_MODULES.find((m) => existsSync(m)) ?? null;
}

/** True when SoftHSM2's PKCS#11 module is installed on this machine. */
export function softHsmInstalled(): boolean {
  if (!findSoftHsmModule()) return false;
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates (or reuses) a SoftHSM2 token in `dir`: writes dir/softhsm2.conf with
 * directories.tokendir = dir/tokens, a random user PIN in dir/user.pin, and initialises the token.
 */
export function initSoftHsmToken(dir: string, tokenLabel = 'coffer-vault'): SoftHsmToken {
  const module = findSoftHsmModule();
  if (!module) throw new HsmUnavailableError('SoftHSM2 is not installed (apt-get install softhsm2, or run scripts/setup.sh)');
  const abs = resolve(dir);
  const tokendir = join(abs, 'tokens');
  mkdirSync(tokendir, { recursive: true, mode: 0o700 });
  const conf = join(abs, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokendir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`, { mode: 0o600 });
  const pinFile = join(abs, 'user.pin');
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  if (!existsSync(pinFile)) {
    const pin = randomBytes(12).toString('hex');
    const soPin = randomBytes(12).toString('hex');
    try {
      execFileSync('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--so-pin', soPin, '--pin', pin], { env, stdio: 'ignore' });
    } catch (cause) {
      throw new HsmUnavailableError(`softhsm2-util could not initialise a token in ${tokendir}`, { cause });
    }
    // The SO PIN is not kept: nobody needs to re-initialise this token's user PIN.
    writeFileSync(pinFile, pin + '\n', { mode: 0o600 });
  }
  return { conf, module, tokenLabel, pinFile };
}

/** Opens a token made by initSoftHsmToken. Sets SOFTHSM2_CONF for this process. */
export function openSoftHsm(token: SoftHsmToken): Pkcs11Hsm {
  process.env['SOFTHSM2_CONF'] = token.conf;
  return Pkcs11Hsm.open({ module: token.module, tokenLabel: token.tokenLabel, pin: readFileSync(token.pinFile, 'utf8').trim() });
}
