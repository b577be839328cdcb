/**
 * The credential-injection proxy: one caller request becomes one upstream request carrying the
 * credential (a bearer token with at least `proxy.min_ttl` left, or SIR Giving's signature headers made at
 * send time over exactly the method, path with query and body sent), and at most one more when the
 * provider says the token was rejected:
 *
 *   send with the token → rejected (rejection.ts)? → one refresh through broker.reportRejected (the same
 *   deduplicated path as POST token/rejections: concurrent rejections of one token share one refresh, and a
 *   token already replaced is answered at once) → send once more with the new token → that answer, whatever
 *   it is.
 *
 * No retry for signing credentials (a SIR Giving 401 is about keys or clocks, not an expiring token) nor
 * for any other status. When the refresh is refused as too soon after another one (CB_RATE_LIMITED: the
 * token the provider rejects is itself brand new), the provider's own answer goes back. The request body
 * is a Buffer (bounded by the body limit) so that it can be sent twice; the answer's body is streamed.
 */
import { createHash } from 'node:crypto'
import { BrokerError } from '../errors.js'
import type { CredentialConfig } from '../config.js'
import { descriptorOf } from '../providers/catalog.js'
import type { Broker } from '../broker/types.js'
import type { Grant } from '../providers/types.js'
import { grantFingerprint, sameToken } from '../broker/grant-identity.js'
import { discardBody, type UpstreamAnswer, type UpstreamClient } from './forward.js'
import { judgeRejection } from './rejection.js'
import type { UpstreamTarget } from './path.js'

export interface ProxyRequest {
  credential: CredentialConfig
  method: string
  target: UpstreamTarget
  /** The caller's headers that may go upstream (headers.ts). */
  headers: Record<string, string | string[]>
  body: Buffer
  timeoutMs: number
  minTtlSeconds: number
  signal?: AbortSignal | undefined
}

export interface ProxyAnswer extends UpstreamAnswer {
  /** Upstream requests made (1, or 2 after a token rejection). */
  attempts: number
  /** Fingerprint of the token the answered attempt carried (token credentials only). */
  tokenFingerprint?: string | undefined
}

export interface ProxyDeps {
  broker: Pick<Broker, 'getToken' | 'reportRejected' | 'sign'>
  upstream: UpstreamClient
}

export interface Proxy {
  forward: (request: ProxyRequest) => Promise<ProxyAnswer>
}

export function createProxy ({ broker, upstream }: ProxyDeps): Proxy {
  async function send (request: ProxyRequest, credentialHeaders: Record<string, string>): Promise<UpstreamAnswer> {
    return await upstream.send({
      origin: request.target.origin,
      pathWithQuery: request.target.pathWithQuery,
      method: request.method,
      headers: { ...request.headers, ...credentialHeaders },
      body: request.body,
      timeoutMs: request.timeoutMs,
      signal: request.signal
    })
  }

  /** SIR Giving: signed now, over exactly what is sent (docs/providers.md § SIR Giving). */
  async function forwardSigned (request: ProxyRequest): Promise<ProxyAnswer> {
    const signature = await broker.sign(request.credential.id, {
      method: request.method,
      path: request.target.pathWithQuery,
      bodySha256: createHash('sha256').update(request.body).digest('hex')
    })
    return { ...await send(request, signature), attempts: 1 }
  }

  async function forwardWithToken (request: ProxyRequest): Promise<ProxyAnswer> {
    const { credential } = request
    const { grant } = await broker.getToken(credential.id, request.minTtlSeconds)
    // grantFingerprint: hashed once per grant, not once per proxied request (cache hits share the grant).
    const first = await judgeRejection(await send(request, { authorization: `Bearer ${grant.accessToken}` }), descriptorOf(credential.provider))
    const firstAnswer: ProxyAnswer = { ...first.answer, attempts: 1, tokenFingerprint: grantFingerprint(grant) }
    if (!first.rejected) return firstAnswer

    let replacement: Grant
    try {
      replacement = (await broker.reportRejected(credential.id, grant.accessToken)).grant
    } catch (err) {
      if (err instanceof BrokerError && err.code === 'CB_RATE_LIMITED') return firstAnswer
      discardBody(first.answer.body)
      throw err
    }
    if (sameToken(replacement.accessToken, grant.accessToken)) return firstAnswer
    discardBody(first.answer.body)
    const second = await send(request, { authorization: `Bearer ${replacement.accessToken}` })
    return { ...second, attempts: 2, tokenFingerprint: grantFingerprint(replacement) }
  }

  return {
    async forward (request) {
      return descriptorOf(request.credential.provider).mechanism === 'signing'
        ? await forwardSigned(request)
        : await forwardWithToken(request)
    }
  }
}
