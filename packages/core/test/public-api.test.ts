/**
 * The public surface of every package (issue 10): each entry point that a package.json `exports`
 * names is a list of named exports (no `export *` of a module's internals), and every export it
 * makes carries TSDoc. Read from the sources with the TypeScript compiler, so an undocumented or
 * wholesale export fails here, not in a review.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

let root = dirname(fileURLToPath(import.meta.url));
while (!existsSync(join(root, 'packages', 'core', 'package.json'))) root = dirname(root);

const PACKAGES = ['packages/core', 'packages/node', 'packages/http', 'packages/vault', 'packages/cli', 'packages/sample'];

interface Entry {
  name: string;
  source: string;
}

function entries(): Entry[] {
  const out: Entry[] = [];
  for (const dir of PACKAGES) {
    const pkg = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as { name: string; exports: Record<string, string | { types: string; default: string }> };
    for (const [sub, target] of Object.entries(pkg.exports)) {
      if (typeof target === 'string') continue; // ./package.json
      assert.match(target.default, /^\.\/dist\/src\/.*\.js$/, `${pkg.name}${sub.slice(1)}: built code under dist/src`);
      assert.equal(target.types, target.default.replace(/\.js$/, '.d.ts'), `${pkg.name}${sub.slice(1)}: types beside the code`);
      out.push({ name: pkg.name + sub.slice(1), source: join(root, dir, target.default.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts')) });
    }
  }
  return out;
}

test('every package names its entry points in exports, each with a source file', () => {
  const all = entries();
  for (const e of all) assert.ok(existsSync(e.source), `${e.name}: ${e.source} exists`);
  const names = all.map((e) => e.name);
  for (const n of ['@coffer/core', '@coffer/core/vault', '@coffer/core/juicebox', '@coffer/core/testing', '@coffer/core/adapters', '@coffer/node', '@coffer/http', '@coffer/http/server', '@coffer/vault', '@coffer/vault/cli', '@coffer/vault/testing', '@coffer/cli', '@coffer/sample']) {
    assert.ok(names.includes(n), `${n} is an entry point`);
  }
});

test('no entry point re-exports a whole module unnamed (export * from)', () => {
  for (const e of entries()) {
    const sf = ts.createSourceFile(e.source, readFileSync(e.source, 'utf8'), ts.ScriptTarget.Latest, true);
    for (const s of sf.statements) {
      if (ts.isExportDeclaration(s) && s.moduleSpecifier && !s.exportClause) assert.fail(`${e.name}: ${s.getText(sf)}`);
    }
  }
});

test('every export of every entry point has TSDoc; namespaces are documented where they are exported', () => {
  const all = entries();
  const program = ts.createProgram(
    all.map((e) => e.source),
    { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noEmit: true, skipLibCheck: true, types: [] },
  );
  const checker = program.getTypeChecker();
  const documented = (s: ts.Symbol): boolean => {
    const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
    if (target.getDocumentationComment(checker).length > 0) return true;
    return (target.declarations ?? []).some((d) => ts.getJSDocCommentsAndTags(d).length > 0);
  };
  const missing: string[] = [];
  let count = 0;
  for (const e of all) {
    const sf = program.getSourceFile(e.source);
    assert.ok(sf, e.source);
    const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(sf)!);
    assert.ok(exports.length > 0, `${e.name} exports something`);
    for (const s of exports) {
      count++;
      const ns = s.declarations?.find(ts.isNamespaceExport);
      if (ns) {
        // `export * as wire from ...`: a versioned wire format shared with the server, documented as a whole.
        if (ts.getJSDocCommentsAndTags(ns.parent).length === 0) missing.push(`${e.name}: namespace ${s.name}`);
        continue;
      }
      if (!documented(s)) missing.push(`${e.name}: ${s.name}`);
    }
  }
  assert.ok(count > 150, `the check saw the exports (${count})`);
  assert.deepEqual(missing, [], 'exports without TSDoc');
});
