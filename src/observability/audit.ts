import type { IncomingHttpHeaders } from 'node:http'
import { hostname } from 'node:os'
import type { FastifyRequest } from 'fastify'
import { pino, type DestinationStream, type Logger } from 'pino'
import { grantFingerprint } from '../broker/grant-identity.js'
import type { Grant } from '../providers/types.js'

/**
 * The audit trail (DESIGN.md "Audit trail"): who got which token, signature, webhook verification, user
 * session, proxied request or admin action, and every denial (401/403/429 with its code).
 *
 * Its own pino instance at a fixed level: LOG_LEVEL never switches it off (it is not a child of the main
 * logger). It writes into the same stream as the main log (stdout in production, one buffered writer so
 * lines of the two never interleave), which batches writes (logger.ts: flushed at least every 100 ms, and
 * on shutdown). Lines carry fixed, safe fields only — ids, a token fingerprint, times, the client address —
 * never a token, secret, email or refresh token; so no redaction pass, which at one line per token would
 * cost more than the rest of the request.
 *
 * Every line: `audit: true`, `caller` (or `anonymous`), `credentialId`, `outcome`, `route`, `reqId` (our
 * request id), `client` (the client address) and, when the caller sent one, `caller_request_id`.
 */
export interface AuditTrail {
  /** One line for `request` with `fields` (caller, credentialId, outcome, route…); the entry point for any route. */
  record: (request: FastifyRequest | undefined, fields: AuditFields, message: string) => void
  /** The token route's line, from a prefix built once per (grant, caller, credential, route): the hot path. */
  tokenIssued: (request: AuditedRequest, issued: IssuedTokenLine) => void
  /** A 401, 403 or 429 answer, with its code. */
  denied: (request: FastifyRequest, code: string, status: number) => void
}

export interface AuditFields {
  caller?: string | undefined
  credentialId?: string | undefined
  outcome: string
  route?: string | undefined
  fingerprint?: string | undefined
  [field: string]: string | number | boolean | undefined
}

/** What the token line says of the request (the route's FastifyRequest, or what the fast lane read of one). */
export interface AuditedRequest {
  /** Our request id: a UUID (app.ts genReqId, or the fast lane's), so it needs no JSON escaping. */
  id: string
  /** The client address. */
  ip: string | undefined
  /** The caller's x-request-id header, if any. */
  callerRequestId: IncomingHttpHeaders['x-request-id']
}

/** What the token line says of the token: its fingerprint and expiry come from the grant (the prefix). */
export interface IssuedTokenLine {
  caller: string
  credentialId: string
  grant: Grant
  source: string
  route: string
}

/** The route a request matched, as its pattern (`GET /v1/credentials/:id/token`); the URL's path when none matched. */
export function routeOf (request: FastifyRequest): string {
  return `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0] ?? ''}`
}

/** What every line says about the request itself. */
function requestFields (request: FastifyRequest | undefined): Record<string, string> {
  if (request === undefined) return {}
  const fields: Record<string, string> = { reqId: request.id, client: request.ip }
  const callerRequestId = request.headers['x-request-id']
  // The caller's own id is kept beside ours, never instead of it (it is whatever the caller sent).
  if (typeof callerRequestId === 'string' && callerRequestId !== '') fields.caller_request_id = callerRequestId.slice(0, 200)
  return fields
}

/** The stream a pino logger writes into (pino.symbols.streamSym is pino's documented handle on it). */
export function streamOf (logger: Logger): DestinationStream {
  return (logger as unknown as Record<symbol, DestinationStream>)[pino.symbols.streamSym] as DestinationStream
}

/** Audit lines' time field, as pino's isoTime writes it; formatted once per millisecond (a Date per line was 2 µs). */
let lastMs = 0
let lastTime = ''
function timestamp (): string {
  const now = Date.now()
  if (now !== lastMs) {
    lastMs = now
    lastTime = `,"time":"${new Date(now).toISOString()}"`
  }
  return lastTime
}
const infoLevel = 30

/** `,"name":<value as JSON>`, serialised again only when the value differs from the last one (a client address, a source). */
function jsonFieldMemo (name: string): (value: string) => string {
  let lastValue: string | undefined
  let lastField = ''
  return value => {
    if (value !== lastValue) {
      lastValue = value
      lastField = `,${JSON.stringify(name)}:${JSON.stringify(value)}`
    }
    return lastField
  }
}

/** The audit trail writing into `destination` (the main log's stream: see logger.ts). */
export function createAuditTrail (destination: DestinationStream): AuditTrail {
  const base = { pid: process.pid, hostname: hostname(), audit: true }
  const logger = pino({ level: 'info', base, timestamp }, destination)
  /*
   * The token line is the one written per cache hit, so it is assembled here from a prefix serialised once
   * per (grant, caller, credential, route) — the same bytes pino writes for a child with these bindings —
   * plus the request's own fields, and handed to the same stream. pino's per-line pass over the object (key
   * loop, escaping check per value) was about a twentieth of a cache hit.
   */
  const prefixes = new WeakMap<Grant, Map<string, string>>()
  // The last prefix again without a lookup: a hot caller asks for the same grant over and over.
  let last: { issued: IssuedTokenLine, prefix: string } | undefined

  function prefixFor (issued: IssuedTokenLine): string {
    if (last !== undefined && last.issued.grant === issued.grant && last.issued.caller === issued.caller && last.issued.credentialId === issued.credentialId && last.issued.route === issued.route) return last.prefix
    let byLine = prefixes.get(issued.grant)
    if (byLine === undefined) {
      byLine = new Map()
      prefixes.set(issued.grant, byLine)
    }
    const key = `${issued.caller}\n${issued.credentialId}\n${issued.route}`
    let prefix = byLine.get(key)
    if (prefix === undefined) {
      const { grant } = issued
      const fields = { ...base, caller: issued.caller, credentialId: issued.credentialId, outcome: 'issued', route: issued.route, fingerprint: grantFingerprint(grant), expiresAt: new Date(grant.expiresAt).toISOString() }
      prefix = `,${JSON.stringify(fields).slice(1, -1)}`
      byLine.set(key, prefix)
    }
    last = { issued, prefix }
    return prefix
  }
  const clientField = jsonFieldMemo('client')
  const sourceField = jsonFieldMemo('source')

  return {
    record (request, fields, message) {
      logger.info({ caller: fields.caller ?? request?.caller?.id ?? 'anonymous', ...fields, ...requestFields(request) }, message)
    },
    tokenIssued (request, issued) {
      const { callerRequestId } = request
      const supplied = typeof callerRequestId === 'string' && callerRequestId !== '' ? `,"caller_request_id":${JSON.stringify(callerRequestId.slice(0, 200))}` : ''
      destination.write(`{"level":${infoLevel}${timestamp()}${prefixFor(issued)},"reqId":"${request.id}"${request.ip === undefined ? '' : clientField(request.ip)}${sourceField(issued.source)}${supplied},"msg":"token issued"}\n`)
    },
    denied (request, code, status) {
      const credentialId = (request.params as { id?: unknown } | undefined)?.id
      logger.info({ caller: request.caller?.id ?? 'anonymous', credentialId: typeof credentialId === 'string' ? credentialId.slice(0, 64) : undefined, outcome: 'denied', code, status, route: routeOf(request), ...requestFields(request) }, 'request denied')
    }
  }
}
