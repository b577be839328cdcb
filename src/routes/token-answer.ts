import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import { mayUse } from '../auth/policy.js'
import type { CredentialConfig } from '../config.js'
import type { IssuedToken } from '../broker/types.js'
import { routeOf, type AuditedRequest, type AuditTrail } from '../observability/audit.js'

const expiryTexts = new WeakMap<IssuedToken['grant'], string>()

/** The ISO 8601 expiry of a grant, formatted once per grant (it is in every token answer and audit line). */
export function expiryText (grant: IssuedToken['grant']): string {
  let text = expiryTexts.get(grant)
  if (text === undefined) {
    text = new Date(grant.expiresAt).toISOString()
    expiryTexts.set(grant, text)
  }
  return text
}

/** A token answer's JSON and its length in bytes. */
export interface TokenBody { expiresIn: number, json: string, bytes: string }

const bodies = new WeakMap<IssuedToken['grant'], TokenBody>()

/**
 * The token answer's JSON, serialised once per grant and second (expires_in is the only part that moves):
 * the same bytes from the route handler and from the fast lane (token-fast-lane.ts).
 */
export function tokenBody ({ grant, expiresIn }: IssuedToken): TokenBody {
  const last = bodies.get(grant)
  if (last !== undefined && last.expiresIn === expiresIn) return last
  const json = JSON.stringify({ access_token: grant.accessToken, token_type: grant.tokenType, expires_at: expiryText(grant), expires_in: expiresIn, scope: grant.scope })
  const body = { expiresIn, json, bytes: String(Buffer.byteLength(json)) }
  bodies.set(grant, body)
  return body
}

/** The answer's content type, as Fastify sets it for a JSON body. */
export const jsonContentType = 'application/json; charset=utf-8'

/** One audit line per token handed out: who, which, a fingerprint (never the token), until when. */
export function auditIssued (audit: AuditTrail, request: AuditedRequest, callerId: string, credentialId: string, issued: IssuedToken, route: string): void {
  audit.tokenIssued(request, { caller: callerId, credentialId, grant: issued.grant, source: issued.source, route })
}

/**
 * Audits and answers one token handed out: the same line and the same answer (headers, body) from the
 * cache-hit pass and from the route handler.
 */
export function sendToken (app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, credentialId: string, issued: IssuedToken, route: string = routeOf(request)): FastifyReply {
  auditIssued(app.audit, { id: request.id, ip: request.ip, callerRequestId: request.headers['x-request-id'] }, request.caller?.id ?? 'anonymous', credentialId, issued, route)
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').header('content-type', jsonContentType).send(tokenBody(issued).json)
}

/**
 * min_ttl as MinTtl (routes/schemas.ts) accepts it. (The path's id needs no check of its own: an id of a
 * configured credential is one the schema accepts, credentials-file.ts holds them to the same shape.)
 */
const minTtlShape = /^\d{1,9}$/
const maxMinTtlSeconds = 86_400
/** Not decided here: the schema validator answers it (so its error answers stay what they are). */
export const bySchema = Symbol('by schema')

/** min_ttl as the schema reads it when the schema would accept it: absent, or 0 to 86400 in digits. */
export function acceptedMinTtl (value: unknown): number | undefined | typeof bySchema {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !minTtlShape.test(value)) return bySchema
  const seconds = Number(value)
  return seconds <= maxMinTtlSeconds ? seconds : bySchema
}

/** The token route, as audit lines name it. */
export const tokenRoute = 'GET /v1/credentials/:id/token'

/**
 * GET /v1/credentials/:id/token answered in one synchronous pass when the grant is in memory (issue 12):
 * a route-level onRequest hook that runs right after authentication and the rate limit (routes/v1.ts), and
 * answers before validation, the preHandler and the handler. It checks what they would — the id and min_ttl
 * as the schema accepts them, the credential and the caller's policy — and takes only requests that would
 * end in a local-cache hit. Anything else (a scope, a value the schema must judge, an unknown credential, a
 * refused caller, a miss or a grant too short) goes on to the ordinary path, which answers it as before.
 */
export function tokenCacheHit (app: FastifyInstance, credentialsById: ReadonlyMap<string, CredentialConfig>): onRequestHookHandler {
  return function answerFromCache (request, reply, done) {
    const caller = request.caller
    const id = (request.params as { id?: unknown }).id
    const query = request.query as { min_ttl?: unknown, scope?: unknown }
    if (caller === null || typeof id !== 'string' || query.scope !== undefined) {
      done()
      return
    }
    const minTtl = acceptedMinTtl(query.min_ttl)
    const credential = credentialsById.get(id)
    const issued = minTtl === bySchema || credential === undefined || !mayUse(caller, credential) ? undefined : app.broker.peekToken(id, minTtl)
    if (issued === undefined) {
      done()
      return
    }
    request.credential = credential as CredentialConfig
    sendToken(app, request, reply, id, issued, tokenRoute)
  }
}
