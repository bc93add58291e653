// Prometheus metrics of one vault node (prom-client). Labels are low-cardinality and carry no
// account id, token, address or secret: route, HTTP code, operation, status, error code.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * What one answered operation did, for the counters, in any protocol. Aggregate only: never the
 * account.
 */
export interface Outcome {
  /** The operation (OPAQUE: `login-start`...; Juicebox: `juicebox-recover2`...). */
  op: string;
  status: string;
  /** A password guess was paid (committed before the answer). */
  attempt: boolean;
  /** This step turned a record into a tombstone (attempt limit reached). */
  destroyed: boolean;
  /** Answered "no guesses left" (OPAQUE `destroyed`, Juicebox `NoGuesses`). */
  lockout: boolean;
}

export interface VaultMetrics {
  registry: Registry;
  httpRequests: Counter<'route' | 'code'>;
  httpDuration: Histogram<'route'>;
  operations: Counter<'op' | 'status'>;
  attempts: Counter;
  lockouts: Counter;
  destroyed: Counter;
  rejected: Counter<'code'>;
  conflicts: Counter;
  backendErrors: Counter<'backend'>;
  ready: Gauge;
  observe(o: Outcome): void;
}

export function createMetrics(): VaultMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'coffer_vault_' });
  const m = {
    registry,
    httpRequests: new Counter({ name: 'coffer_vault_http_requests_total', help: 'HTTP requests by route and status code', labelNames: ['route', 'code'] as const, registers: [registry] }),
    httpDuration: new Histogram({
      name: 'coffer_vault_http_request_duration_seconds',
      help: 'HTTP request latency by route',
      labelNames: ['route'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    operations: new Counter({ name: 'coffer_vault_operations_total', help: 'Vault operations answered, by operation and response status', labelNames: ['op', 'status'] as const, registers: [registry] }),
    attempts: new Counter({ name: 'coffer_vault_login_attempts_total', help: 'Password guesses paid (OPAQUE login-start or Juicebox Recover2 on a live record, committed)', registers: [registry] }),
    lockouts: new Counter({ name: 'coffer_vault_lockouts_total', help: 'Requests answered "destroyed" or NoGuesses (attempt limit reached)', registers: [registry] }),
    destroyed: new Counter({ name: 'coffer_vault_records_destroyed_total', help: 'Records turned into tombstones by this node', registers: [registry] }),
    rejected: new Counter({ name: 'coffer_vault_rejected_total', help: 'Requests refused before the channel (by error code, including rate limits)', labelNames: ['code'] as const, registers: [registry] }),
    conflicts: new Counter({ name: 'coffer_vault_store_conflicts_total', help: 'Compare-and-set conflicts retried', registers: [registry] }),
    backendErrors: new Counter({ name: 'coffer_vault_backend_errors_total', help: 'Requests refused because the database or HSM was unavailable', labelNames: ['backend'] as const, registers: [registry] }),
    ready: new Gauge({ name: 'coffer_vault_ready', help: '1 when the last readiness check passed', registers: [registry] }),
  };
  return {
    ...m,
    observe(o: Outcome) {
      m.operations.inc({ op: o.op, status: o.status });
      if (o.attempt) m.attempts.inc();
      if (o.lockout) m.lockouts.inc();
      if (o.destroyed) m.destroyed.inc();
    },
  };
}
