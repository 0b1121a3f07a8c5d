// Plugin configuration: options over environment over file, and clear errors for bad settings.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultsFor, endpointPath, fromEnvironment, fromFile, memberServiceFromLayers, resolveConfig } from '../../src/csi/config.js';

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

test('engine tuning and reporting: md defaults when unset, the chart variables and the file alike, status on only in a cluster', () => {
  const base = { nodeId: 'n', disks: '/a' };
  const plain = resolveConfig(base, defaultsFor({}));
  assert.deepEqual(plain.tuning, { syncSpeedMinKiB: 1000, syncSpeedMaxKiB: 200000, bitmapDaemonSleepSeconds: 30 });
  assert.deepEqual(plain.reporting, { status: false, statusMinIntervalMs: 5000 });
  assert.equal(resolveConfig(base, defaultsFor({ KUBERNETES_SERVICE_HOST: '10.0.0.1' })).reporting.status, true, 'status defaults on inside a cluster');
  const env = fromEnvironment({
    LLRAID_SYNC_SPEED_MIN: '5000', LLRAID_SYNC_SPEED_MAX: '500000', LLRAID_BITMAP_DAEMON_SLEEP: '5',
    LLRAID_STATUS: 'off', LLRAID_STATUS_MIN_INTERVAL: '15', LLRAID_METRICS_ADDRESS: ':9999',
  });
  const c = resolveConfig(base, env, defaultsFor({ KUBERNETES_SERVICE_HOST: 'x' }));
  assert.deepEqual(c.tuning, { syncSpeedMinKiB: 5000, syncSpeedMaxKiB: 500000, bitmapDaemonSleepSeconds: 5 });
  assert.deepEqual(c.reporting, { status: false, statusMinIntervalMs: 15000, metrics: { host: '0.0.0.0', port: 9999 } });
  assert.deepEqual(resolveConfig(base, fromEnvironment({ LLRAID_METRICS_ADDRESS: '[::1]:80' })).reporting.metrics, { host: '::1', port: 80 });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'llraid-cfg-'));
  try {
    writeFileSync(path.join(dir, 'c.yaml'), 'syncSpeedMax: 7000\nstatus: on\n');
    const f = resolveConfig(base, fromFile(path.join(dir, 'c.yaml')), defaultsFor({}));
    assert.equal(f.tuning.syncSpeedMaxKiB, 7000);
    assert.equal(f.reporting.status, true, 'the file wins over the default');
  } finally {
    rmSync(dir, { recursive: true });
  }
});

for (const [env, re] of [
  [{ LLRAID_SYNC_SPEED_MIN: 'fast' }, /syncSpeedMin \(LLRAID_SYNC_SPEED_MIN\): expected a whole number ≥ 1, found "fast"/],
  [{ LLRAID_SYNC_SPEED_MIN: '10', LLRAID_SYNC_SPEED_MAX: '5' }, /syncSpeedMax \(LLRAID_SYNC_SPEED_MAX\): expected at least syncSpeedMin \(10\), found 5/],
  [{ LLRAID_BITMAP_DAEMON_SLEEP: '0' }, /bitmapDaemonSleep \(LLRAID_BITMAP_DAEMON_SLEEP\): expected a whole number ≥ 1, found "0"/],
  [{ LLRAID_STATUS: 'maybe' }, /status \(LLRAID_STATUS\): expected on or off/],
  [{ LLRAID_METRICS_ADDRESS: '9890' }, /metricsAddress \(LLRAID_METRICS_ADDRESS\): expected \[host\]:port/],
  [{ LLRAID_METRICS_ADDRESS: ':70000' }, /LLRAID_METRICS_ADDRESS/],
] as const) {
  test(`a bad engine or reporting setting is refused naming it: ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')}`, () => {
    assert.throws(() => resolveConfig({ nodeId: 'n', disks: '/a' }, fromEnvironment(env)), re);
  });
}

test('the member service: LLRAID_MEMBER_SERVICE_LISTEN with LLRAID_TLS_DIR (the chart Secret\'s ca.crt, tls.crt, tls.key) over the disks', () => {
  const env = fromEnvironment({ LLRAID_MEMBER_SERVICE_LISTEN: '10.214.0.3:10809', LLRAID_TLS_DIR: '/etc/llraid/tls/' });
  const c = resolveConfig({ nodeId: 'n', disks: '/d1,/d2' }, env);
  assert.deepEqual(c.tls, { dir: '/etc/llraid/tls', ca: '/etc/llraid/tls/ca.crt', cert: '/etc/llraid/tls/tls.crt', key: '/etc/llraid/tls/tls.key' });
  assert.deepEqual(c.memberService, { host: '10.214.0.3', port: 10809, tls: c.tls, disks: ['/d1', '/d2'] });
  assert.equal(resolveConfig({ nodeId: 'n', disks: '/d', memberServiceListen: '[fd00::3]:10809', tlsDir: '/t' }).memberService?.host, 'fd00::3');
  const none = resolveConfig({ nodeId: 'n', disks: '/d' });
  assert.equal(none.memberService, undefined, 'none unless an address is set');
  assert.equal(none.tls, undefined);
  // The engine host reads the same variables, with no CSI settings of its own.
  assert.deepEqual(memberServiceFromLayers(fromEnvironment({ LLRAID_MEMBER_SERVICE_LISTEN: '10.0.0.1:7', LLRAID_TLS_DIR: '/t', LLRAID_DISKS: '/a' }))?.disks, ['/a']);
  assert.equal(memberServiceFromLayers(fromEnvironment({ LLRAID_DISKS: '/a' })), undefined);
});

test('member service settings that cannot work are errors naming the setting', () => {
  const base = { nodeId: 'n', disks: '/d', tlsDir: '/t' };
  for (const bad of ['10809', ':10809', '10.0.0.1:0', '10.0.0.1:65536', 'fd00::1:10809', '10.0.0.1']) {
    assert.throws(() => resolveConfig({ ...base, memberServiceListen: bad }), /memberServiceListen \(LLRAID_MEMBER_SERVICE_LISTEN\): expected HOST:PORT/, bad);
  }
  assert.throws(() => resolveConfig({ nodeId: 'n', disks: '/d', memberServiceListen: '10.0.0.1:10809' }), /LLRAID_MEMBER_SERVICE_LISTEN\) is set but tlsDir \(LLRAID_TLS_DIR\) is not: the member service serves TCP with TLS only/);
  assert.throws(() => resolveConfig({ nodeId: 'n', disks: '/d', tlsDir: 'relative/tls' }), /tlsDir \(LLRAID_TLS_DIR\): expected an absolute directory holding ca.crt, tls.crt and tls.key/);
  assert.throws(() => memberServiceFromLayers({ memberServiceListen: '10.0.0.1:10809', tlsDir: '/t' }), /disks are not set/);
});

test('replication is on with the member service and the namespace, and then needs a reachable address and a sound lease timing', () => {
  const base = { nodeId: 'n', disks: '/a' };
  assert.equal(resolveConfig(base).replication, undefined);
  const env = fromEnvironment({
    LLRAID_TLS_DIR: '/etc/llraid/member-tls', LLRAID_NAMESPACE: 'llraid', LLRAID_MEMBER_SERVICE_LISTEN: '10.0.0.5:10809',
    LLRAID_NODE_LEASE_DURATION_SECONDS: '10',
  });
  const r = resolveConfig(base, env).replication;
  assert.deepEqual({ ...r, tls: r?.tls.dir }, {
    namespace: 'llraid', memberService: '10.0.0.5:10809', tls: '/etc/llraid/member-tls', leaseDurationSeconds: 10, leaseRenewSeconds: 5,
  });
  const ms = { tlsDir: '/t', memberServiceListen: '10.0.0.5:1' };
  assert.equal(resolveConfig(base, ms).replication, undefined, 'a member service alone (no namespace for Leases) does not replicate');
  assert.throws(() => resolveConfig(base, { ...ms, namespace: 'x', memberServiceListen: '0.0.0.0:10809' }), /an address other nodes reach/);
  assert.throws(
    () => resolveConfig(base, { ...ms, namespace: 'x', nodeLeaseDuration: '8', nodeLeaseRenew: '6' }),
    /nodeLeaseRenew \(LLRAID_NODE_LEASE_RENEW_SECONDS\): expected less than 6 s/,
  );
  assert.equal(resolveConfig(base, { ...ms, namespace: 'x', memberServiceListen: '[fd00::5]:10809' }).replication?.memberService, '[fd00::5]:10809');
});

test('the snapshot metadata peer endpoint: LLRAID_SNAPSHOT_METADATA_PEER_PORT on the member service host with its TLS files', () => {
  const base = { nodeId: 'n', disks: '/d', tlsDir: '/t', memberServiceListen: '10.0.0.5:10809' };
  assert.equal(resolveConfig(base).snapshotMetadataPeer, undefined, 'unset: no peer endpoint');
  const peer = resolveConfig(fromEnvironment({ LLRAID_SNAPSHOT_METADATA_PEER_PORT: '10810' }), base).snapshotMetadataPeer;
  assert.deepEqual(peer && { host: peer.host, port: peer.port, ca: peer.tls.ca }, { host: '10.0.0.5', port: 10810, ca: '/t/ca.crt' });
  assert.equal(resolveConfig({ ...base, memberServiceListen: '[fd00::3]:10809', snapshotMetadataPeerPort: 10810 }).snapshotMetadataPeer?.host, 'fd00::3');
  for (const bad of ['0', '65536', 'x', '-1']) {
    assert.throws(() => resolveConfig({ ...base, snapshotMetadataPeerPort: bad }), /snapshotMetadataPeerPort \(LLRAID_SNAPSHOT_METADATA_PEER_PORT\)/, bad);
  }
  assert.throws(() => resolveConfig({ ...base, snapshotMetadataPeerPort: '10809' }), /expected another port than the member service's \(10809\)/);
  assert.throws(() => resolveConfig({ nodeId: 'n', disks: '/d', snapshotMetadataPeerPort: '10810' }), /is set but memberServiceListen \(LLRAID_MEMBER_SERVICE_LISTEN\) is not/);
});
