// Plugin configuration: options over environment over file, and clear errors for bad settings.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { endpointPath, fromEnvironment, fromFile, resolveConfig } from '../../src/csi/config.js';

test('command-line settings win over the environment, which wins over the file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'llraid-cfg-'));
  try {
    const file = path.join(dir, 'c.yaml');
    writeFileSync(file, 'nodeId: from-file\ndisks: [/d1, /d2]\nattach: kernel\nmaxVolumes: 7\n');
    const env = fromEnvironment({ LLRAID_NODE_ID: 'from-env', LLRAID_ATTACH: 'fuse' });
    const c = resolveConfig({ nodeId: 'from-cli' }, env, fromFile(file));
    assert.equal(c.nodeId, 'from-cli');
    assert.equal(c.attach, 'fuse');
    assert.deepEqual(c.disks, ['/d1', '/d2']);
    assert.equal(c.maxVolumes, 7);
    assert.equal(c.endpoint, 'unix:///csi/csi.sock');
    assert.equal(c.defaultCapacity, 1024 ** 3);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('missing or bad settings are errors naming the setting', () => {
  assert.throws(() => resolveConfig({ disks: '/a' }), /node id is not set/);
  assert.throws(() => resolveConfig({ nodeId: 'n' }), /disks are not set/);
  assert.throws(() => resolveConfig({ nodeId: 'n', disks: '/a,/a' }), /distinct/);
  assert.throws(() => resolveConfig({ nodeId: 'n', disks: '/a', attach: 'iscsi' }), /attach: expected kernel, fuse or auto/);
  assert.throws(() => resolveConfig({ nodeId: 'n', disks: '/a', maxVolumes: '-1' }), /maxVolumes/);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'llraid-cfg-'));
  try {
    writeFileSync(path.join(dir, 'bad.yaml'), 'nodeID: x\n');
    assert.throws(() => fromFile(path.join(dir, 'bad.yaml')), /unknown key "nodeID"/);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('endpoints are unix sockets', () => {
  assert.equal(endpointPath('unix:///csi/csi.sock'), '/csi/csi.sock');
  assert.equal(endpointPath('/tmp/x.sock'), '/tmp/x.sock');
  assert.throws(() => endpointPath('tcp://0.0.0.0:1'), /expected unix/);
});

test('the kubelet directory defaults to /var/lib/kubelet and is set like every other setting', () => {
  assert.equal(resolveConfig({ nodeId: 'n', disks: '/a' }).kubeletDir, '/var/lib/kubelet');
  const env = fromEnvironment({ LLRAID_KUBELET_DIR: '/var/lib/k0s/kubelet' });
  assert.equal(resolveConfig({ nodeId: 'n', disks: '/a' }, env).kubeletDir, '/var/lib/k0s/kubelet');
  assert.equal(resolveConfig({ nodeId: 'n', disks: '/a', kubeletDir: '/data/kubelet/' }, env).kubeletDir, '/data/kubelet');
});

test('a relative kubelet directory, or /, is an error naming the setting', () => {
  assert.throws(() => resolveConfig({ nodeId: 'n', disks: '/a', kubeletDir: 'var/lib/kubelet' }), /kubeletDir: expected an absolute directory/);
  assert.throws(() => resolveConfig({ nodeId: 'n', disks: '/a', kubeletDir: '/' }), /kubeletDir: expected a directory below \/, found \//);
});
