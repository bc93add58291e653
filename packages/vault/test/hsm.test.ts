import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { hsmConformance } from '../src/hsm/conformance.js';
import { SoftwareHsmDevelopmentOnly, SOFTWARE_HSM_WARNING } from '../src/hsm/software.js';
import { initSoftHsmToken, openSoftHsm, softHsmInstalled } from '../src/hsm/softhsm.js';
import type { Pkcs11Hsm } from '../src/hsm/pkcs11.js';
import { HsmUnavailableError } from '../src/errors.js';

hsmConformance('software (development only)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-swhsm-'));
  const path = join(dir, 'keys.json');
  const quiet = () => {};
  let hsm = SoftwareHsmDevelopmentOnly.open(path, quiet);
  return {
    hsm,
    async reopen() {
      await hsm.close();
      hsm = SoftwareHsmDevelopmentOnly.open(path, quiet);
      return hsm;
    },
    async cleanup() {
      await hsm.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('software HSM', () => {
  it('warns loudly that it is for development only', () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-swhsm-'));
    const seen: string[] = [];
    SoftwareHsmDevelopmentOnly.open(join(dir, 'k.json'), (m) => seen.push(m));
    assert.deepEqual(seen, [SOFTWARE_HSM_WARNING]);
    assert.match(SOFTWARE_HSM_WARNING, /development only/i);
    rmSync(dir, { recursive: true, force: true });
  });
});

// SoftHSM2 is a hard requirement of the test suite (scripts/setup.sh installs it): no silent skip.
const tokenDir = mkdtempSync(join(tmpdir(), 'coffer-softhsm-'));
assert.ok(softHsmInstalled(), 'SoftHSM2 must be installed to run these tests: run scripts/setup.sh');
const token = initSoftHsmToken(tokenDir);
after(() => rmSync(tokenDir, { recursive: true, force: true }));

hsmConformance('PKCS#11 via SoftHSM2', async () => {
  let hsm = openSoftHsm(token);
  return {
    hsm,
    async reopen() {
      await hsm.close();
      hsm = openSoftHsm(token);
      return hsm;
    },
    async cleanup() {
      await hsm.close();
    },
  };
});

describe('PKCS#11 specifics', () => {
  it('generates keys that are sensitive and not extractable, and will not reveal their value', async () => {
    const hsm = openSoftHsm(token) as Pkcs11Hsm;
    try {
      await hsm.generateKey('attr-check');
      assert.deepEqual(await hsm.keyAttributes('attr-check'), { extractable: false, sensitive: true, neverExtractable: true });
      assert.equal(await hsm.tryReadKeyValue('attr-check'), false);
    } finally {
      await hsm.close();
    }
  });

  it('says clearly when the PIN is wrong, without printing it', async () => {
    const { Pkcs11Hsm: P } = await import('../src/hsm/pkcs11.js');
    process.env['SOFTHSM2_CONF'] = token.conf;
    const err = await (async () => P.open({ module: token.module, tokenLabel: token.tokenLabel, pin: 'wrong-pin-1234' }))().catch((e: unknown) => e);
    assert.ok(err instanceof HsmUnavailableError);
    assert.match(err.message, /login .* failed/);
    assert.equal(err.message.includes('wrong-pin-1234'), false);
  });
});
