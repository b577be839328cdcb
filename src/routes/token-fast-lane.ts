import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { mayUse } from '../auth/policy.js'
import type { RateLimitHeaders } from '../auth/rate-limit.js'
import type { CredentialConfig } from '../config.js'
import { readHeaders } from './raw-headers.js'
import { acceptedMinTtl, auditIssued, bySchema, jsonContentType, tokenBody, tokenRoute } from './token-answer.js'

/** Answers a request and says true, or says false and leaves it, untouched, to Fastify. */
export type FastLane = (request: IncomingMessage, response: ServerResponse) => boolean

const pathStart = '/v1/credentials/'
const pathEnd = '/token'
const minTtlQuery = '?min_ttl='

/** The id and min_ttl of `GET /v1/credentials/{id}/token[?min_ttl=N]` in the one spelling the lane takes. */
function tokenRequestOf (url: string): { id: string, minTtl: number | undefined } | undefined {
  if (!url.startsWith(pathStart)) return undefined
  const idEnd = url.indexOf('/', pathStart.length)
  if (idEnd < 0 || !url.startsWith(pathEnd, idEnd)) return undefined
  // Whether the id names a credential is the caller's to check (a configured id is one the schema accepts).
  const id = url.slice(pathStart.length, idEnd)
  const rest = idEnd + pathEnd.length
  if (rest === url.length) return { id, minTtl: undefined }
  if (!url.startsWith(minTtlQuery, rest)) return undefined
  const minTtl = acceptedMinTtl(url.slice(rest + minTtlQuery.length))
  return minTtl === bySchema ? undefined : { id, minTtl }
}

/**
 * Tells Node there is nothing left of this request to read. It has no body (the lane takes none), but once
 * the answer is written Node's server "dumps" any request the handler never read: it resumes the stream and
 * reads it to its end over three more ticks — about 3 µs of a 50 µs cache hit here (perf), for no bytes.
 * `_dumped` is the flag `IncomingMessage._dump()` sets to do that once (Node 20, 22 and 24); a Node without
 * it just dumps as before. The request stream is then never ended: nothing listens to it, and the parser
 * lets go of it at the connection's next request.
 */
function markConsumed (request: IncomingMessage): void {
  (request as IncomingMessage & { _dumped?: boolean })._dumped = true
}

/**
 * The token route's fast lane (issue 12): `GET /v1/credentials/{id}/token` answered by the HTTP server's
 * request listener, ahead of Fastify, when it is a local-cache hit — the one answer that hundreds of
 * requests a second get. Everything else goes to Fastify untouched: whatever the lane cannot vouch for is
 * not answered here, so every error, every other route and every spelling of this one (a scope, a
 * percent-encoded id, a repeated or out-of-range min_ttl, a body, HEAD) keeps Fastify's answer.
 *
 * Why ahead of Fastify: the route's cache-hit hook (token-answer.ts) already answers in one synchronous
 * pass, but routing, Fastify's request and reply objects, the hook runners and the reply's header work
 * cost about as much as everything the broker does for a hit (perf of the compiled broker under
 * `npm run bench -- throughput`). The lane does what the route would, in the route's order, and writes the
 * bytes it would write (test/api/fast-lane.test.ts compares the two):
 * authentication (an API key or a JWT verified before; a JWT not seen yet → Fastify), the credential and
 * the caller's policy, the grant in memory with min_ttl left, the caller's rate limit (counted only when
 * the answer is certain: a count that needs Redis first, or a caller at the limit → Fastify), the audit
 * line, the metrics, the answer with the same headers in the same order.
 *
 * Not taken when requests are logged (LOG_LEVEL debug or trace: Fastify's per-request lines) or once
 * shutdown has begun (the server's listener answers with Connection: close through Fastify).
 */
export function tokenFastLane (app: FastifyInstance, credentialsById: ReadonlyMap<string, CredentialConfig>): FastLane {
  const { authenticator, broker, audit } = app
  let caller: ReturnType<typeof authenticator.identify>
  let admitted: RateLimitHeaders | undefined
  // Asked by peekToken once the grant is known to serve: the rate limit is counted only for an answer.
  const admit = (): boolean => {
    admitted = app.callerAdmittedNow(caller as NonNullable<typeof caller>)
    return admitted !== undefined
  }

  return function answerTokenHit (request, response) {
    const url = request.url
    if (request.method !== 'GET' || url === undefined) return false
    const wanted = tokenRequestOf(url)
    if (wanted === undefined) return false
    const headers = readHeaders(request.rawHeaders)
    // No Host: the server's listener answers 400; a body, none or several Authorization headers: Fastify's.
    if (!headers.host || headers.body || headers.authorizations !== 1) return false
    try {
      caller = authenticator.identify(headers.authorization)
    } catch {
      return false
    }
    const credential = credentialsById.get(wanted.id)
    if (caller === undefined || credential === undefined || !mayUse(caller, credential)) return false
    admitted = undefined
    const issued = broker.peekToken(wanted.id, wanted.minTtl, admit)
    const limits = admitted as RateLimitHeaders | undefined
    if (issued === undefined || limits === undefined) return false

    const id = randomUUID()
    auditIssued(audit, { id, ip: request.socket.remoteAddress, callerRequestId: headers.callerRequestId }, caller.id, wanted.id, issued, tokenRoute)
    const body = tokenBody(issued)
    // The route's headers in its order: the rate limit (onRequest), the answer's, then Fastify's.
    response.writeHead(200, [
      'x-ratelimit-limit', String(limits.limit),
      'x-ratelimit-remaining', String(limits.remaining),
      'x-ratelimit-reset', String(limits.resetSeconds),
      'cache-control', 'no-store',
      'pragma', 'no-cache',
      'content-type', jsonContentType,
      'x-request-id', id,
      'content-length', body.bytes
    ])
    response.end(body.json)
    markConsumed(request)
    return true
  }
}
