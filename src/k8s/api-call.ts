// One API server call: bounded in time, traced, and its failure mapped to K8sError. Every module
// of src/k8s that talks to the API server (cluster-api.ts, replication-store.ts, lease-api.ts)
// goes through callApi, so a raw client-node exception never leaves this layer and each HTTP
// answer means the same code everywhere.

import { ApiException, KubeConfig } from '@kubernetes/client-node';
import { trace } from '../common/trace.js';
import { K8sError } from './errors.js';

/** `kubeconfig`: a file; without it the in-cluster service account (or $KUBECONFIG, ~/.kube/config). */
export function loadKubeConfig(kubeconfig?: string | KubeConfig): KubeConfig {
  if (kubeconfig instanceof KubeConfig) return kubeconfig;
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  return kc;
}

/** The Status object the API server answers errors with (the fields we read). */
interface ApiStatus {
  message?: string;
  reason?: string;
}

function parseStatus(body: unknown): { detail: string; reason?: string } {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  try {
    const parsed = (typeof body === 'object' && body !== null ? body : JSON.parse(text)) as ApiStatus;
    return { detail: parsed.message ?? text, reason: parsed.reason };
  } catch {
    // Not JSON: keep the raw body as the detail.
    return { detail: text };
  }
}

/**
 * Maps what a client-node call threw. An answer of 409 whose reason is Conflict (a stale
 * resourceVersion) becomes CONFLICT; 409 AlreadyExists stays EAPI 409, as it means something else
 * (the object is there, nobody raced a write).
 */
export function mapApiError(what: string, err: unknown): K8sError {
  if (err instanceof K8sError) return err;
  if (err instanceof ApiException) {
    const { detail, reason } = parseStatus(err.body);
    const code = err.code === 409 && reason === 'Conflict' ? 'CONFLICT' : 'EAPI';
    return new K8sError(code, `${what}: API server answered ${err.code}: ${detail}`, err.code, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new K8sError('EUNREACHABLE', `${what}: API server not reachable: ${message}`, undefined, { cause: err });
}

/**
 * Runs one call, giving up after timeoutMs: a hung connection must not stall the caller (the
 * reporter's single worker, a lease renewal), whose own retry logic then takes over.
 */
export async function callApi<T>(what: string, timeoutMs: number, run: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new K8sError('EUNREACHABLE', `${what}: no answer from the API server within ${timeoutMs} ms`)), timeoutMs);
  });
  trace('k8s', 'debug', () => what);
  try {
    return await Promise.race([run(), timeout]);
  } catch (err) {
    const mapped = mapApiError(what, err);
    trace('k8s', 'info', () => `${mapped.message} (${mapped.code})`);
    throw mapped;
  } finally {
    clearTimeout(timer);
  }
}

/** True for a K8sError carrying HTTP status `status` (404: gone, 409: exists or conflict). */
export function hasStatus(err: unknown, status: number): err is K8sError {
  return err instanceof K8sError && err.status === status;
}
