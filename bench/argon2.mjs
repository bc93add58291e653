#!/usr/bin/env node
// Argon2id for Juicebox PIN hashing (spec/juicebox.md §4): hash-wasm (what @coffer/core uses)
// beside @noble/hashes, in Node and in headless Chromium, in the same run.
//
//   node bench/argon2.mjs [--runs 3] [--smoke]
//
// Standard2019 = 16 MiB, 32 passes, parallelism 1, 64-byte output. --smoke uses 64 KiB and
// 2 passes (the figures then mean nothing; it only checks that the benchmark runs).
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { argon2id as wasmArgon2id } from 'hash-wasm';
import { argon2idAsync as nobleArgon2id } from '@noble/hashes/argon2.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: v } = parseArgs({ options: { runs: { type: 'string', default: '3' }, smoke: { type: 'boolean', default: false } } });
const runs = Number(v.runs);
const P = v.smoke ? { m: 64, t: 2 } : { m: 16 * 1024, t: 32 };

const impls = `
  import { argon2id as wasmArgon2id } from 'hash-wasm';
  import { argon2idAsync as nobleArgon2id } from '@noble/hashes/argon2.js';
  const pin = new TextEncoder().encode('1234');
  const salt = new Uint8Array(24).fill(5);
  const run = {
    'hash-wasm': (P) => wasmArgon2id({ password: pin, salt, parallelism: 1, iterations: P.t, memorySize: P.m, hashLength: 64, outputType: 'binary' }),
    '@noble/hashes': (P) => nobleArgon2id(pin, salt, { p: 1, t: P.t, m: P.m, dkLen: 64 }),
  };
  export async function measure(name, P, runs) {
    const times = [];
    let out;
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      out = await run[name](P);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return { ms: times[Math.floor(times.length / 2)], out: Array.from(out.slice(0, 4)) };
  }
`;

// Node: the same two calls.
const node = {};
for (const [name, f] of [
  ['hash-wasm', () => wasmArgon2id({ password: new TextEncoder().encode('1234'), salt: new Uint8Array(24).fill(5), parallelism: 1, iterations: P.t, memorySize: P.m, hashLength: 64, outputType: 'binary' })],
  ['@noble/hashes', () => nobleArgon2id(new TextEncoder().encode('1234'), new Uint8Array(24).fill(5), { p: 1, t: P.t, m: P.m, dkLen: 64 })],
]) {
  const times = [];
  let out;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    out = await f();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  node[name] = { ms: times[Math.floor(times.length / 2)], out: Array.from(out.slice(0, 4)) };
}

// Chromium: the same two implementations bundled for the page.
const page = (await build({ stdin: { contents: impls + '\nwindow.measure = measure;', resolveDir: root, loader: 'js' }, bundle: true, format: 'esm', platform: 'browser', target: 'chrome110', write: false, logLevel: 'silent' })).outputFiles[0].text;
const browser = await chromium.launch({ executablePath: process.env.COFFER_CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
const tab = await browser.newPage();
await tab.setContent('<!doctype html><title>argon2</title>');
await tab.addScriptTag({ content: page, type: 'module' });
await tab.waitForFunction(() => typeof window.measure === 'function');
const chrome = {};
for (const name of ['hash-wasm', '@noble/hashes']) chrome[name] = await tab.evaluate(([n, p, r]) => window.measure(n, p, r), [name, P, runs]);
const version = browser.version();
await browser.close();

const same = JSON.stringify(node['hash-wasm'].out) === JSON.stringify(node['@noble/hashes'].out) && JSON.stringify(chrome['hash-wasm'].out) === JSON.stringify(node['hash-wasm'].out);
console.log(`Argon2id ${v.smoke ? '(smoke) ' : 'Standard2019 '}m=${P.m} KiB t=${P.t} p=1, median of ${runs}; outputs agree: ${same}`);
console.log(`| implementation | Node ${process.versions.node} | Chromium ${version} |`);
console.log('|---|---|---|');
for (const name of ['hash-wasm', '@noble/hashes']) console.log(`| ${name} | ${(node[name].ms / 1000).toFixed(2)} s | ${(chrome[name].ms / 1000).toFixed(2)} s |`);
console.log(`hash-wasm / @noble/hashes speed: Node ${(node['@noble/hashes'].ms / node['hash-wasm'].ms).toFixed(1)}x, Chromium ${(chrome['@noble/hashes'].ms / chrome['hash-wasm'].ms).toFixed(1)}x`);
console.log(`peak RSS (Node process): ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
if (!same) process.exitCode = 1;
