// The RaidVolume CRD as deploy/ ships it (rendered from the chart by scripts/gen-deploy.sh): a
// schema the API server takes. A comma in an unquoted description of a YAML flow mapping
// silently adds a key with no value, which server-side apply rejects ("field not declared in
// schema") only once a real API server sees it: caught here, and the fields the status writer
// sets are declared (a structural schema prunes the others without a word).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

const crd = parseAllDocuments(readFileSync(new URL('../../deploy/01-crds.yaml', import.meta.url), 'utf8'))
  .map((d) => d.toJS() as { kind?: string; spec?: { versions: { schema: { openAPIV3Schema: Schema } }[] } })
  .find((d) => d?.kind === 'CustomResourceDefinition');

interface Schema { properties?: Record<string, Schema>; items?: Schema; [key: string]: unknown }

test('no key of the RaidVolume schema is left without a value', () => {
  assert.ok(crd, 'deploy/01-crds.yaml holds the CRD');
  const empty: string[] = [];
  const walk = (o: unknown, at: string): void => {
    if (Array.isArray(o)) o.forEach((v, i) => walk(v, `${at}[${i}]`));
    else if (o !== null && typeof o === 'object') {
      for (const [k, v] of Object.entries(o)) {
        if (v === null) empty.push(`${at}.${k}`);
        walk(v, `${at}.${k}`);
      }
    }
  };
  walk(crd, '');
  assert.deepEqual(empty, []);
});

test('the status fields the reporter writes for a running sync are declared', () => {
  const schema = crd!.spec!.versions[0]!.schema.openAPIV3Schema;
  const sync = schema.properties?.status?.properties?.sync?.properties ?? {};
  for (const field of ['action', 'reason', 'doneBytes', 'targetBytes', 'syncedBytes', 'totalBytes', 'progress', 'summary', 'speed', 'speedBytesPerSecond', 'startedAt', 'estimatedFinish']) {
    assert.ok(field in sync, `status.sync.${field} is declared`);
  }
});
