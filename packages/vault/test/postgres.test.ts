// The RecordStore conformance suite and migrations on a real PostgreSQL server (throwaway cluster).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { RecordStoreError } from '../src/errors.js';
import { recordStoreConformance } from '../src/store/conformance.js';
import { DatabaseSchemaError, migratePostgres, PostgresRecordStore, redactDatabaseUrl, SCHEMA_VERSION } from '../src/store/postgres.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, runVault, serveInProcess, tempDir } from './helpers.js';
import { startPostgres, type PostgresServer } from './postgres-server.js';

let server: PostgresServer;
let n = 0;
async function freshDatabase(): Promise<string> {
  const name = `coffer_test_${process.pid}_${n++}`;
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  return server.url.replace(/\/postgres$/, `/${name}`);
}

before(async () => {
  server = await startPostgres();
});
after(() => server?.destroy());

recordStoreConformance('PostgreSQL', async () => {
  const url = await freshDatabase();
  await migratePostgres({ url });
  return {
    open: () => PostgresRecordStore.open({ url }),
    async cleanup() {},
  };
});

describe('PostgreSQL record store', () => {
  it('refuses a database that was not migrated, then `coffer vault migrate` makes it usable, once', async () => {
    const url = await freshDatabase();
    await assert.rejects(PostgresRecordStore.open({ url }), (e: unknown) => e instanceof DatabaseSchemaError && /version 0/.test(e.message) && /migrate/.test(e.hint));
    const r1 = await runVault(['migrate', '--database', url, '--json']);
    assert.equal(r1.code, 0, r1.stderr);
    assert.deepEqual(JSON.parse(r1.stdout), { event: 'migrated', applied: [1, 2], schemaVersion: SCHEMA_VERSION });
    const r2 = await runVault(['migrate', '--database', url, '--json']);
    assert.deepEqual(JSON.parse(r2.stdout).applied, [], 'a second migrate applies nothing');
    const s = await PostgresRecordStore.open({ url });
    await s.ping();
    await s.close();
  });

  it('runs concurrent migrations once (advisory lock)', async () => {
    const url = await freshDatabase();
    const rs = await Promise.all([migratePostgres({ url }), migratePostgres({ url }), migratePostgres({ url })]);
    assert.deepEqual(rs.map((r) => r.applied.length).sort(), [0, 0, 2]);
  });

  it('refuses a schema newer than the code', async () => {
    const url = await freshDatabase();
    await migratePostgres({ url });
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query("INSERT INTO vault_schema_migrations (version, name) VALUES (99, 'future')");
    await c.end();
    await assert.rejects(PostgresRecordStore.open({ url }), /newer than this vault/);
    await assert.rejects(migratePostgres({ url }), /newer than this vault/);
  });

  it('`serve --database` never makes a realm of its own, and takes only postgres:// URLs', async () => {
    const url = await freshDatabase();
    await migratePostgres({ url });
    const dir = tempDir('coffer-pg-serve-');
    try {
      const r = await runVault(['serve', '--data-dir', dir, '--database', url]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no realm in/);
      assert.equal(existsSync(join(dir, 'realm.json')), false);
      const bad = await runVault(['serve', '--data-dir', dir, '--database', 'mysql://x@y/z']);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /postgres:\/\//);
    } finally {
      cleanup(dir);
    }
  });

  it('a database belongs to the first realm served on it: another realm refuses to start', async () => {
    const url = await freshDatabase();
    await migratePostgres({ url });
    const dir = tempDir('coffer-pg-realms-');
    try {
      for (const r of ['a', 'b']) assert.equal((await runVault(['init', '--data-dir', join(dir, r), '--hsm', 'software'])).code, 0);
      const a = await serveInProcess(['--data-dir', join(dir, 'a'), '--database', url]);
      assert.ok(a.url, a.stderr);
      const b = await serveInProcess(['--data-dir', join(dir, 'b'), '--database', url]);
      await a.stop();
      assert.equal(b.code, 2, 'a database of another realm is a configuration mistake (bad usage)');
      assert.match(b.stderr, /this database belongs to realm .*, not to this node's realm/);
      const again = await serveInProcess(['--data-dir', join(dir, 'a'), '--database', url]);
      assert.ok(again.url, 'the realm it belongs to starts again');
      await again.stop();
    } finally {
      cleanup(dir);
    }
  });

  it('says which part of the URL is wrong: password, database, server; migrate reads COFFER_VAULT_DATABASE', async () => {
    const c = new pg.Client({ connectionString: server.url });
    await c.connect();
    await c.query("CREATE ROLE coffer_pw LOGIN PASSWORD 'right-password'");
    await c.query('CREATE DATABASE coffer_pw OWNER coffer_pw');
    await c.end();
    const url = (pw: string, db = 'coffer_pw') => `postgres://coffer_pw:${pw}@127.0.0.1:${server.port}/${db}`;
    const wrong = await runVault(['migrate', '--database', url('wrong-password')]);
    assert.equal(wrong.code, 5, 'a record store that refuses us exits 5, as a store does for coffer');
    assert.match(wrong.stderr, /PostgreSQL refused the password of role "coffer_pw"\nhint: check the password in the URL/);
    assert.equal(wrong.stderr.includes('wrong-password'), false, 'the password is never printed');
    assert.doesNotMatch(wrong.stderr, /disk/);
    const noDb = await runVault(['migrate', '--database', url('right-password', 'nope')]);
    assert.match(noDb.stderr, /database "nope" does not exist/);
    const saved = process.env['COFFER_VAULT_DATABASE'];
    process.env['COFFER_VAULT_DATABASE'] = url('right-password');
    try {
      const r = await runVault(['migrate', '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout).applied, [1, 2]);
    } finally {
      if (saved === undefined) delete process.env['COFFER_VAULT_DATABASE'];
      else process.env['COFFER_VAULT_DATABASE'] = saved;
    }
    await assert.rejects(PostgresRecordStore.open({ url: url('wrong-password') }), (e: unknown) => e instanceof RecordStoreError && /refused the password/.test(e.message));
  });

  it('reports an unreachable server as RecordStoreError, never as success, and hides the password', async () => {
    const url = `postgres://u:hunter2secret@127.0.0.1:1/none`;
    await assert.rejects(PostgresRecordStore.open({ url, timeoutMs: 1000 }), (e: unknown) => e instanceof RecordStoreError && !e.message.includes('hunter2secret') && /no PostgreSQL server answers/.test(e.message));
    assert.equal(redactDatabaseUrl(url).includes('hunter2secret'), false);
  });
});
