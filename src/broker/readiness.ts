/**
 * The readiness rule: whether a replica should receive traffic. Pure, so every combination is tested in
 * one table (test/broker/readiness.test.ts); status.ts gathers the facts.
 *
 * `degraded` still answers 200: a replica that holds a grant, or a secret to mint or sign with, serves
 * callers even while Redis or Vault is away, and taking it out of the Service would turn a dependency
 * blip into an outage. `not_ready` (503) is kept for a replica that can serve nothing at all.
 */

export type ReadinessState = 'ready' | 'degraded' | 'not_ready'

export interface ReadinessFacts {
  /** The broker has loaded the stored grants and tried to read every secret (broker.start()). */
  started: boolean
  /** Shutdown has begun. */
  closing: boolean
  /** Credentials configured; with none there is nothing to serve and nothing missing. */
  credentials: number
  store: { state: 'up' | 'down', detail?: string | undefined }
  secrets: { state: 'ok' | 'degraded' | 'down', detail?: string | undefined }
  /** A client secret of some credential has been read and is held (it can mint or sign with it). */
  secretHeld: boolean
  /** An unexpired grant is held in memory (default, scoped or user session). */
  grantHeld: boolean
  /**
   * An unexpired grant is in the store (another replica minted it); undefined when not looked for, which
   * status.ts does only when nothing else can serve (see needsStoreLook).
   */
  grantStored?: boolean | undefined
}

export interface Readiness {
  state: ReadinessState
  /** Why the state is not `ready`, for operators (no secret, no address beyond the dependency's detail). */
  reason?: string | undefined
}

/** The secret source cannot be read now: Vault unreachable, sealed or refusing us, or the file unreadable. */
function secretsUnavailable (facts: ReadinessFacts): boolean {
  return facts.secrets.state !== 'ok'
}

/**
 * Nothing this replica holds in memory could serve a caller, and it cannot read a secret to mint one:
 * only a grant in the store is left. The store is then worth one look (status.ts).
 */
export function needsStoreLook (facts: ReadinessFacts): boolean {
  return facts.credentials > 0 && secretsUnavailable(facts) && !facts.secretHeld && !facts.grantHeld
}

const withDetail = (text: string, detail: string | undefined): string => detail === undefined ? text : `${text} (${detail})`

/** The replica's readiness from its facts. */
export function decideReadiness (facts: ReadinessFacts): Readiness {
  if (facts.closing) return { state: 'not_ready', reason: 'shutting down' }
  if (!facts.started) return { state: 'not_ready', reason: 'starting: loading stored grants and reading secrets' }
  if (needsStoreLook(facts) && facts.grantStored !== true) {
    return {
      state: 'not_ready',
      reason: `cannot serve any credential: ${withDetail('the secret source is unavailable', facts.secrets.detail)}, no client secret has been read, and no grant is held${facts.store.state === 'up' ? ' or stored' : ` (${withDetail('the store is down', facts.store.detail)})`}`
    }
  }
  const problems: string[] = []
  if (facts.store.state === 'down') problems.push(withDetail('the store is down', facts.store.detail))
  if (secretsUnavailable(facts)) problems.push(withDetail(`the secret source is ${facts.secrets.state}`, facts.secrets.detail))
  if (problems.length === 0) return { state: 'ready' }
  return { state: 'degraded', reason: `${problems.join('; ')}: serving what is held` }
}
