// Where the real-node tests find what scripts/k8s/test-node.sh started: the control plane's admin
// kubeconfig, the Kubernetes binaries, the node (name, its dir holding the kubelet's root dir and
// the chart's run dir). Outside that script the tests are skipped, as the cluster tests are, so
// the plain `npm test` pass needs no node; under it a missing variable fails every test.

import { join } from 'node:path';
import type { ClusterEnv } from '../cluster/cluster-env.js';

export interface NodeEnv extends ClusterEnv {
  /** The Node's name (kubelet --hostname-override). */
  nodeName: string;
  /** The node's dir: `kubelet/` (the kubelet's --root-dir) and `run/` (the chart's runDir). */
  nodeDir: string;
}

export const SKIP_REASON = 'needs the node that `npm run test:node` starts';

export function nodeEnv(): NodeEnv | undefined {
  const { KUBECONFIG, API_SERVER, K8S_BIN, LLRAID_NODE_STATE, NODE_NAME, NODE_DIR } = process.env;
  if (!LLRAID_NODE_STATE) return undefined;
  if (!KUBECONFIG || !API_SERVER || !K8S_BIN || !NODE_NAME || !NODE_DIR) {
    throw new Error(`LLRAID_NODE_STATE is set but not KUBECONFIG, API_SERVER, K8S_BIN, NODE_NAME and NODE_DIR (from ${LLRAID_NODE_STATE}/env)`);
  }
  return {
    kubeconfig: KUBECONFIG,
    apiServer: API_SERVER,
    bin: K8S_BIN,
    stateDir: LLRAID_NODE_STATE,
    repo: join(import.meta.dirname, '..', '..'),
    nodeName: NODE_NAME,
    nodeDir: NODE_DIR,
  };
}
