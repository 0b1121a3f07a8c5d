// Where the cluster tests find the control plane that scripts/k8s/test-cluster.sh started: its
// admin kubeconfig, the Kubernetes binaries and a scratch dir. Outside that script the cluster
// tests are skipped, so the plain `npm test` pass does not need a control plane.

import { join } from 'node:path';

export interface ClusterEnv {
  /** Admin kubeconfig of the control plane (O=system:masters). */
  kubeconfig: string;
  /** kube-apiserver URL, https://127.0.0.1:<port>. */
  apiServer: string;
  /** Directory holding kubectl, helm and the kubernetes-csi sidecars (build-binaries.sh). */
  bin: string;
  /** The harness's state dir (certificates, logs); tests put their own files under it. */
  stateDir: string;
  /** The repository root (charts/, dist/). */
  repo: string;
  /**
   * The bridge for nodes in network namespaces (control-plane.sh with LLRAID_CLUSTER_BRIDGE=1),
   * or undefined when the control plane was started without it.
   */
  bridge?: ClusterBridge;
}

export interface ClusterBridge {
  /** kube-apiserver as the nodes' namespaces reach it: https://10.214.0.1:<port>. */
  apiServer: string;
  /** The bridge's address in the hub namespace (the nodes' gateway to the API server). */
  address: string;
  /** The hub namespace holding the bridge br0. */
  hub: string;
  /** Node namespaces are named `<prefix>-<node>`; control-plane.sh down removes every one. */
  prefix: string;
}

export const SKIP_REASON = 'needs the control plane that `npm run test:cluster` starts';

/** The environment test-cluster.sh exports, or undefined when run outside it. */
export function clusterEnv(): ClusterEnv | undefined {
  const { KUBECONFIG, API_SERVER, K8S_BIN, LLRAID_CLUSTER_STATE } = process.env;
  if (!LLRAID_CLUSTER_STATE) return undefined;
  // Under test-cluster.sh (it sets LLRAID_CLUSTER_STATE) a missing variable fails every test
  // rather than skipping them all.
  if (!KUBECONFIG || !API_SERVER || !K8S_BIN) {
    throw new Error(`LLRAID_CLUSTER_STATE is set but not KUBECONFIG, API_SERVER and K8S_BIN (from ${LLRAID_CLUSTER_STATE}/env)`);
  }
  const { API_SERVER_BRIDGE, LLRAID_CLUSTER_NETNS, LLRAID_CLUSTER_NETNS_PREFIX } = process.env;
  const bridge = API_SERVER_BRIDGE && LLRAID_CLUSTER_NETNS && LLRAID_CLUSTER_NETNS_PREFIX
    ? { apiServer: API_SERVER_BRIDGE, address: new URL(API_SERVER_BRIDGE).hostname, hub: LLRAID_CLUSTER_NETNS, prefix: LLRAID_CLUSTER_NETNS_PREFIX }
    : undefined;
  return {
    ...(bridge ? { bridge } : {}),
    kubeconfig: KUBECONFIG,
    apiServer: API_SERVER,
    bin: K8S_BIN,
    stateDir: LLRAID_CLUSTER_STATE,
    repo: join(import.meta.dirname, '..', '..'),
  };
}
