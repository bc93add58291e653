// The official Juicebox SDK (npm juicebox-sdk 0.3.7, WASM) as a client, in its own process:
//   node --experimental-wasm-modules dist/test/juicebox-sdk-harness.js < script.json
// The script is { configuration, tokens: { <realm id hex>: <jwt> }, ops: [...] }; each op's result
// is printed as one JSON line. Nothing of Coffer's is imported here: this is the SDK alone.
import { Client, Configuration, DeleteError, RecoverErrorReason, RegisterError } from 'juicebox-sdk';

interface Op {
  op: 'register' | 'recover' | 'delete';
  pin: string;
  info: string;
  /** hex */
  secret?: string;
  guesses?: number;
}

const input = JSON.parse(await new Promise<string>((resolve) => {
  let s = '';
  process.stdin.setEncoding('utf8').on('data', (d: string) => (s += d)).on('end', () => resolve(s));
})) as { configuration: unknown; tokens: Record<string, string>; ops: Op[]; concurrent?: boolean };

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
(globalThis as Record<string, unknown>)['JuiceboxGetAuthToken'] = async (realmId: Uint8Array) => input.tokens[hex(realmId)];
const client = new Client(new Configuration(input.configuration), []);
const enc = new TextEncoder();

async function run(o: Op): Promise<Record<string, unknown>> {
  try {
    if (o.op === 'register') {
      await client.register(enc.encode(o.pin), Buffer.from(o.secret ?? '', 'hex'), enc.encode(o.info), o.guesses ?? 10);
      return { op: o.op, ok: true };
    }
    if (o.op === 'recover') return { op: o.op, ok: true, secret: hex(await client.recover(enc.encode(o.pin), enc.encode(o.info))) };
    await client.delete();
    return { op: o.op, ok: true };
  } catch (e) {
    const err = e as { reason?: number; guesses_remaining?: number };
    if (o.op === 'recover') return { op: o.op, ok: false, reason: RecoverErrorReason[err.reason ?? -1], guessesRemaining: err.guesses_remaining ?? null };
    const names = o.op === 'register' ? RegisterError : DeleteError;
    return { op: o.op, ok: false, reason: typeof e === 'number' ? names[e] : String(e) };
  }
}

if (input.concurrent) {
  for (const r of await Promise.all(input.ops.map(run))) process.stdout.write(JSON.stringify(r) + '\n');
} else {
  for (const o of input.ops) process.stdout.write(JSON.stringify(await run(o)) + '\n');
}
