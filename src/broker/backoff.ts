export interface BackoffPolicy {
  baseMs: number
  capMs: number
}

export const defaultBackoff: BackoffPolicy = { baseMs: 1000, capMs: 5 * 60_000 }

/**
 * Delay before retry number `attempt` (1-based): exponential, capped, with "equal jitter" (half fixed,
 * half random) so that replicas that failed together do not retry together, yet never retry at once.
 * A provider's Retry-After is a floor: retrying sooner only earns another 429.
 */
export function backoffDelayMs (attempt: number, retryAfterMs: number | undefined, policy: BackoffPolicy = defaultBackoff, random: () => number = Math.random): number {
  const exponential = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, attempt - 1))
  const jittered = exponential / 2 + random() * exponential / 2
  return Math.max(jittered, retryAfterMs ?? 0)
}
