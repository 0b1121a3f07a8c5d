// Node calls may only name paths below the plugin's kubelet directory, and NodeUnpublishVolume
// removes only what NodePublishVolume made. Against the real plugin (`llraid csi` from dist/,
// fuse attach, real mounts): every refused call gets INVALID_ARGUMENT naming the path and the
// allowed root, and the files, directories and mounts it named are exactly as they were.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { run } from '../../src/csi/exec.js';
import { mountAt } from '../../src/csi/mounts.js';
import { findProcesses, waitExit } from '../../src/engine/processes.js';
import { blockCap, mountCap, startPlugin, type Plugin } from './plugin-harness.js';

const MiB = 1024 * 1024;
let plugin: Plugin;
/** A mount volume staged at `staging`, and a block volume staged at `blockStaging`. */
let id: string;
let blockId: string;
let staging: string;
let blockStaging: string;
/** A directory beside the kubelet directory: what a request must never reach. */
let outside: string;

before(async () => {
  plugin = await startPlugin();
  outside = path.join(plugin.dir, 'outside');
  mkdirSync(outside);
  const create = async (name: string, cap: object) =>
    ((await plugin.controller.CreateVolume({ name, capacity_range: { required_bytes: 32 * MiB }, volume_capabilities: [cap] })).volume as { volume_id: string }).volume_id;
  id = await create('confined', mountCap());
  blockId = await create('confined-block', blockCap());
  staging = path.join(plugin.kubeletDir, 'staging', id);
  blockStaging = path.join(plugin.kubeletDir, 'staging', blockId);
  await plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: mountCap() });
  await plugin.node.NodeStageVolume({ volume_id: blockId, staging_target_path: blockStaging, volume_capability: blockCap() });
});

after(async () => {
  await plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging }).catch(() => undefined);
  await plugin.node.NodeUnstageVolume({ volume_id: blockId, staging_target_path: blockStaging }).catch(() => undefined);
  await plugin.close();
});

/** Fails unless `p` is rejected with `code`; returns the message for further checks. */
async function rejected(p: Promise<unknown>, code: status): Promise<string> {
  try {
    await p;
  } catch (err) {
    const e = err as { code: number; details: string };
    assert.equal(e.code, code, `expected ${status[code]}, got ${status[e.code]}: ${e.details}`);
    return e.details;
  }
  assert.fail(`expected ${status[code]}, the call succeeded`);
}

/** A file with `content` at `p` (its directory made), returned for the checks. */
function file(p: string, content: string): string {
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, content);
  return p;
}

test('NodeUnpublishVolume refuses a target outside the kubelet directory and the files there survive', async () => {
  const data = file(path.join(outside, 'unpublish', 'data.txt'), 'precious\n');
  const empty = file(path.join(outside, 'unpublish', 'empty'), '');
  for (const target of [data, empty]) {
    const message = await rejected(plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: target }), status.INVALID_ARGUMENT);
    assert.match(message, new RegExp(`target_path ${target} is outside the kubelet directory ${plugin.kubeletDir}`));
  }
  assert.equal(readFileSync(data, 'utf8'), 'precious\n');
  assert.equal(statSync(empty).size, 0, 'even an empty file outside the root stays');
});

test('NodeUnpublishVolume below the kubelet directory leaves what publish did not make', async () => {
  const data = file(path.join(plugin.kubeletDir, 'pods', 'other', 'data.txt'), 'not the plugin\'s\n');
  const full = path.join(plugin.kubeletDir, 'pods', 'other', 'dir');
  file(path.join(full, 'entry'), 'x');
  const link = path.join(plugin.kubeletDir, 'pods', 'other', 'link');
  symlinkSync(data, link);
  for (const target of [data, full]) await plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
  assert.equal(readFileSync(data, 'utf8'), 'not the plugin\'s\n', 'a file with data stays');
  assert.equal(readFileSync(path.join(full, 'entry'), 'utf8'), 'x', 'a directory with entries stays');
  assert.ok(existsSync(link), 'the symlink to the file stays');
});

test('NodeUnpublishVolume removes the directory and the empty file that publish made', async () => {
  const mountTarget = path.join(plugin.kubeletDir, 'pods', 'p1', 'volumes', 'mount');
  const blockTarget = path.join(plugin.kubeletDir, 'pods', 'p1', 'volumeDevices', 'dev');
  await plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: mountTarget, volume_capability: mountCap() });
  await plugin.node.NodePublishVolume({ volume_id: blockId, staging_target_path: blockStaging, target_path: blockTarget, volume_capability: blockCap() });
  assert.ok(statSync(mountTarget).isDirectory() && statSync(blockTarget).isBlockDevice(), 'both published');
  await plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: mountTarget });
  await plugin.node.NodeUnpublishVolume({ volume_id: blockId, target_path: blockTarget });
  assert.deepEqual([existsSync(mountTarget), existsSync(blockTarget)], [false, false], 'both targets removed');
  assert.ok(existsSync(path.join(plugin.kubeletDir, 'pods', 'p1', 'volumes')), 'their parents (the kubelet\'s) stay');
});

test('NodeUnpublishVolume leaves a mount at the target that is not the volume\'s', async () => {
  const foreign = path.join(plugin.kubeletDir, 'pods', 'p2', 'volumes', 'other-driver');
  mkdirSync(foreign, { recursive: true });
  await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', foreign]);
  try {
    writeFileSync(path.join(foreign, 'data'), 'another pod\'s\n');
    const message = await rejected(plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: foreign }), status.FAILED_PRECONDITION);
    assert.match(message, /found tmpfs \(tmpfs\): left mounted/);
    assert.equal((await mountAt(foreign))?.fsType, 'tmpfs', 'still mounted');
    assert.equal(readFileSync(path.join(foreign, 'data'), 'utf8'), 'another pod\'s\n');
  } finally {
    await run('umount', [foreign], { okCodes: [0, 32] });
  }
});

test('NodeGetVolumeStats refuses a volume_path outside the kubelet directory', async () => {
  const message = await rejected(plugin.node.NodeGetVolumeStats({ volume_id: id, volume_path: outside }), status.INVALID_ARGUMENT);
  assert.match(message, new RegExp(`volume_path ${outside} is outside the kubelet directory ${plugin.kubeletDir}: expected a path below it`));
});

test('NodePublishVolume refuses a target outside the kubelet directory and makes nothing there', async () => {
  const mountTarget = path.join(outside, 'publish', 'mount');
  const blockTarget = path.join(outside, 'publish', 'dev');
  await rejected(
    plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: mountTarget, volume_capability: mountCap() }),
    status.INVALID_ARGUMENT,
  );
  await rejected(
    plugin.node.NodePublishVolume({ volume_id: blockId, staging_target_path: blockStaging, target_path: blockTarget, volume_capability: blockCap() }),
    status.INVALID_ARGUMENT,
  );
  assert.equal(existsSync(path.join(outside, 'publish')), false, 'no directory, file or mount was made outside');
});

test('NodePublishVolume refuses a staging path outside the kubelet directory', async () => {
  const message = await rejected(
    plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: outside, target_path: path.join(plugin.kubeletDir, 'pods', 'p3', 'mount'), volume_capability: mountCap() }),
    status.INVALID_ARGUMENT,
  );
  assert.match(message, /staging_target_path .* is outside the kubelet directory/);
  assert.equal(existsSync(path.join(plugin.kubeletDir, 'pods', 'p3')), false);
});

test('a symlink below the kubelet directory that leads outside is refused, and what it leads to survives', async () => {
  const victim = path.join(outside, 'symlinked');
  const empty = file(path.join(victim, 'empty'), '');
  const escape = path.join(plugin.kubeletDir, 'pods', 'p4', 'escape');
  mkdirSync(path.dirname(escape), { recursive: true });
  symlinkSync(victim, escape);
  const lastLink = path.join(plugin.kubeletDir, 'pods', 'p4', 'last');
  symlinkSync(empty, lastLink);
  for (const target of [path.join(escape, 'empty'), lastLink]) {
    const message = await rejected(plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: target }), status.INVALID_ARGUMENT);
    assert.match(message, new RegExp(`resolves to ${empty} and is outside the kubelet directory ${plugin.kubeletDir}`));
  }
  await rejected(
    plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: path.join(escape, 'mount'), volume_capability: mountCap() }),
    status.INVALID_ARGUMENT,
  );
  await rejected(plugin.node.NodeGetVolumeStats({ volume_id: id, volume_path: escape }), status.INVALID_ARGUMENT);
  assert.equal(statSync(empty).size, 0, 'the file the symlinks lead to survives');
  assert.equal(existsSync(path.join(victim, 'mount')), false, 'nothing was made through the symlink');
});

test('.. that climbs out of the kubelet directory is refused', async () => {
  const empty = file(path.join(outside, 'climb', 'empty'), '');
  mkdirSync(path.join(plugin.kubeletDir, 'pods'), { recursive: true });
  // Written out: path.join would fold the .. before the request carries it.
  const raw = `${plugin.kubeletDir}/pods/../../outside/climb/empty`;
  const message = await rejected(plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: raw }), status.INVALID_ARGUMENT);
  assert.match(message, /is outside the kubelet directory/);
  const missing = `${plugin.kubeletDir}/no-such-dir/../../outside/climb/empty`;
  assert.match(await rejected(plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: missing }), status.INVALID_ARGUMENT), /\.\. below .*no-such-dir, which does not exist/);
  assert.equal(statSync(empty).size, 0, 'the file survives');
});

test('NodeStageVolume and NodeUnstageVolume refuse a staging path outside the kubelet directory', async () => {
  const stageOut = path.join(outside, 'stage');
  await rejected(plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: stageOut, volume_capability: mountCap() }), status.INVALID_ARGUMENT);
  assert.equal(existsSync(stageOut), false, 'no staging directory made outside');
  await rejected(plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: outside }), status.INVALID_ARGUMENT);
  assert.equal((await mountAt(staging))?.mountPoint, staging, 'the volume is still staged where it was');
});

test('NodeExpandVolume refuses a volume_path or staging path outside the kubelet directory', async () => {
  await rejected(plugin.node.NodeExpandVolume({ volume_id: id, volume_path: outside }), status.INVALID_ARGUMENT);
  await rejected(plugin.node.NodeExpandVolume({ volume_id: id, volume_path: staging, staging_target_path: outside }), status.INVALID_ARGUMENT);
});

test('a relative volume_path is NOT_FOUND (as csi-sanity expects), never resolved against the plugin\'s directory', async () => {
  // The plugin runs in the repository (the test's cwd), where "src" is a directory.
  assert.ok(statSync('src').isDirectory());
  for (const volumePath of ['src', 'some/path']) {
    const message = await rejected(plugin.node.NodeGetVolumeStats({ volume_id: id, volume_path: volumePath }), status.NOT_FOUND);
    assert.match(message, new RegExp(`volume_path "${volumePath}": the volume is not there, expected an absolute path below the kubelet directory ${plugin.kubeletDir}`));
    await rejected(plugin.node.NodeExpandVolume({ volume_id: id, volume_path: volumePath }), status.NOT_FOUND);
  }
});

test('a crash\'s recovery clears the block publish of the dead device, so NodeUnpublish later succeeds', async () => {
  // NodeUnpublish unmounts only the volume's own mounts. A bind of a dead attachment's device
  // node is not the next attachment's (its loop number may differ): the restarted plugin must
  // clear it with the dead attachment, as it does the filesystem mounts, or the kubelet's
  // NodeUnpublish would be refused for good.
  const crashId = ((await plugin.controller.CreateVolume({ name: 'confined-crash', capacity_range: { required_bytes: 32 * MiB }, volume_capabilities: [blockCap()] })).volume as { volume_id: string }).volume_id;
  const crashStaging = path.join(plugin.kubeletDir, 'staging', crashId);
  const target = path.join(plugin.kubeletDir, 'pods', 'p5', 'volumeDevices', 'dev');
  await plugin.node.NodeStageVolume({ volume_id: crashId, staging_target_path: crashStaging, volume_capability: blockCap() });
  await plugin.node.NodePublishVolume({ volume_id: crashId, staging_target_path: crashStaging, target_path: target, volume_capability: blockCap() });
  assert.equal((await mountAt(target))?.fsType, 'devtmpfs', 'published: the device node bound on the file');
  const engine = (await findProcesses(path.join(plugin.runDir, crashId, 'engine.sock'))).find((p) => p.argv.includes('serve'));
  assert.ok(engine, 'the engine runs while staged');
  process.kill(engine.pid, 'SIGKILL');
  await plugin.kill();
  await waitExit(engine.pid, 10_000);
  await plugin.start();
  for (let i = 0; i < 600 && (await mountAt(target)); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await mountAt(target), undefined, 'recovery unmounted the dead device\'s bind');
  await plugin.node.NodeStageVolume({ volume_id: crashId, staging_target_path: crashStaging, volume_capability: blockCap() });
  await plugin.node.NodeUnpublishVolume({ volume_id: crashId, target_path: target });
  assert.equal(existsSync(target), false, 'the empty file publish made is removed');
  await plugin.node.NodeUnstageVolume({ volume_id: crashId, staging_target_path: crashStaging });
});
