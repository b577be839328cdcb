import { createHash } from 'node:crypto'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { mayUse } from '../auth/policy.js'
import type { Caller, CredentialConfig } from '../config.js'
import { descriptorOf } from '../providers/catalog.js'
import { fingerprint, grantFingerprint, userFingerprint } from '../broker/grant-identity.js'
import { credentialDocs } from './operations.js'
import { assertPartnerKeyExposed } from '../proxy/policy.js'
import { routeOf } from '../observability/audit.js'
import { expiryText, sendToken, tokenCacheHit } from './token-answer.js'
import { CredentialIdParams, CredentialStatusSchema, MinTtl, TokenSchema, problems, toStatusBody } from './schemas.js'

const TokenQuery = z.object({
  min_ttl: MinTtl,
  scope: z.string().min(1).max(4096).regex(/\S/, 'expected one or more space-separated scopes').optional()
    .describe('a narrower scope set (space-separated), each listed in the credential\'s allowed_scopes; another token than the default one')
})

const UserSessionBody = z.strictObject({
  external_user_id: z.string().min(1).max(256),
  user_email: z.email().max(320),
  external_program_id: z.string().min(1).max(256).optional(),
  brand_identifier: z.string().min(1).max(256).optional()
}).refine(body => (body.external_program_id === undefined) !== (body.brand_identifier === undefined), {
  message: 'expected exactly one of external_program_id or brand_identifier'
})

export const UserSessionSchema = z.object({
  access_token: z.string(),
  token_type: z.string(),
  expires_at: z.iso.datetime(),
  expires_in: z.number().int().min(0).describe('seconds left at the time of the answer')
}).meta({ id: 'UserSession' })

const RejectionBody = z.strictObject({
  access_token: z.string().min(1).max(16_384).describe('the token the provider rejected')
})

const SignatureBody = z.strictObject({
  method: z.string().regex(/^[A-Za-z]{3,10}$/, 'expected an HTTP method'),
  path: z.string().min(1).max(4096).regex(/^\/\S*$/, 'expected the request path with its query string, starting with "/"'),
  body_sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected the hex sha256 of the raw body (e3b0c442… for an empty body)')
})

const WebhookBody = z.strictObject({
  headers: z.record(z.string().max(256), z.union([z.string().max(8192), z.array(z.string().max(8192)).max(16)]))
    .describe('the webhook request headers as received (names in any case)'),
  body: z.string().max(1_000_000).describe('the raw webhook body, exactly as received'),
  body_encoding: z.enum(['utf8', 'base64']).default('utf8')
})

export const WebhookResultSchema = z.object({
  valid: z.boolean(),
  reason: z.enum(['missing_signature', 'missing_timestamp', 'stale_timestamp', 'bad_signature', 'no_webhook_secret']).optional()
}).meta({ id: 'WebhookVerification' })

/**
 * The internal API for services: tokens, rejection reports, request signatures, webhook verification
 * and the caller's own credential list. Authentication, rate limit and the credential's policy are
 * checked by routes/v1.ts before any handler here runs.
 */
export const credentialRoutes: FastifyPluginAsync = async (app) => {
  const api = app.withTypeProvider<ZodTypeProvider>()
  const credentialsById = new Map(app.config.credentials.map(credential => [credential.id, credential]))
  /** The credential routes/v1.ts resolved and authorized for this request's `:id`. */
  const credentialOf = (request: FastifyRequest): CredentialConfig => request.credential as CredentialConfig

  api.get('/credentials/:id/token', {
    // A HEAD would fetch (maybe mint) and audit a token that is never delivered.
    exposeHeadRoute: false,
    // A local-cache hit is answered by this hook, in one synchronous pass; the handler answers the rest.
    onRequest: tokenCacheHit(app, credentialsById),
    schema: {
      ...credentialDocs.getToken,
      params: CredentialIdParams,
      querystring: TokenQuery,
      response: { 200: TokenSchema, ...problems(400, 401, 403, 404, 409, 422, 429, 502, 503) }
    }
  }, async (request, reply) => {
    const credential = credentialOf(request)
    const issued = await app.broker.getToken(credential.id, request.query.min_ttl, { scope: request.query.scope })
    return sendToken(app, request, reply, credential.id, issued)
  })

  api.post('/credentials/:id/user-sessions', {
    schema: {
      ...credentialDocs.createUserSession,
      params: CredentialIdParams,
      querystring: z.object({ min_ttl: MinTtl }),
      body: UserSessionBody,
      response: { 200: UserSessionSchema, ...problems(400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503) }
    }
  }, async (request, reply) => {
    const credential = credentialOf(request)
    const { external_user_id: externalUserId } = request.body
    const issued = await app.broker.userSession(credential.id, request.body, request.query.min_ttl)
    // The user id only as a hash; the email and the refresh token never.
    app.audit.record(request, { credentialId: credential.id, outcome: 'issued', route: routeOf(request), user: userFingerprint(externalUserId), fingerprint: grantFingerprint(issued.grant), expiresAt: expiryText(issued.grant), source: issued.source }, 'user session issued')
    return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send({
      access_token: issued.grant.accessToken,
      token_type: 'Bearer',
      expires_at: expiryText(issued.grant),
      expires_in: issued.expiresIn
    })
  })

  api.post('/credentials/:id/token/rejections', {
    schema: {
      ...credentialDocs.reportTokenRejection,
      params: CredentialIdParams,
      body: RejectionBody,
      response: { 200: TokenSchema, ...problems(400, 401, 403, 404, 409, 413, 415, 429, 502, 503) }
    }
  }, async (request, reply) => {
    const credential = credentialOf(request)
    app.audit.record(request, { credentialId: credential.id, outcome: 'reported', route: routeOf(request), fingerprint: fingerprint(request.body.access_token) }, 'token rejection reported')
    const issued = await app.broker.reportRejected(credential.id, request.body.access_token)
    return sendToken(app, request, reply, credential.id, issued)
  })

  api.post('/credentials/:id/signatures', {
    schema: {
      ...credentialDocs.signRequest,
      params: CredentialIdParams,
      body: SignatureBody,
      response: { 200: z.object({ headers: z.record(z.string(), z.string()) }), ...problems(400, 401, 403, 404, 409, 413, 415, 429, 502, 503) }
    }
  }, async (request, reply) => {
    const credential = credentialOf(request)
    assertPartnerKeyExposed(credential)
    const headers = await app.broker.sign(credential.id, {
      method: request.body.method.toUpperCase(),
      path: request.body.path,
      bodySha256: request.body.body_sha256.toLowerCase()
    })
    app.audit.record(request, { credentialId: credential.id, outcome: 'signed', route: routeOf(request), method: request.body.method.toUpperCase() }, 'request signed')
    return await reply.header('cache-control', 'no-store').send({ headers })
  })

  api.post('/credentials/:id/webhook-verifications', {
    schema: {
      ...credentialDocs.verifyWebhook,
      params: CredentialIdParams,
      body: WebhookBody,
      response: { 200: WebhookResultSchema, ...problems(400, 401, 403, 404, 409, 413, 415, 429, 503) }
    }
  }, async (request) => {
    const credential = credentialOf(request)
    const headers: Record<string, string | string[]> = {}
    for (const [name, value] of Object.entries(request.body.headers)) headers[name.toLowerCase()] = value
    const rawBody = Buffer.from(request.body.body, request.body.body_encoding === 'base64' ? 'base64' : 'utf8')
    const result = await app.broker.verifyWebhook(credential.id, { headers, rawBody })
    app.audit.record(request, { credentialId: credential.id, outcome: result.valid ? 'valid' : 'invalid', route: routeOf(request), valid: result.valid, reason: result.valid ? undefined : result.reason, bodySha256: createHash('sha256').update(rawBody).digest('hex').slice(0, 16) }, 'webhook verified')
    return result.valid ? { valid: true } : { valid: false, reason: result.reason }
  })

  api.get('/credentials', {
    schema: {
      ...credentialDocs.listCredentials,
      response: { 200: z.object({ credentials: z.array(CredentialStatusSchema) }), ...problems(401, 429, 503) }
    }
  }, async (request) => {
    const caller = request.caller as Caller
    const statuses = app.broker.statuses()
    return {
      credentials: statuses.flatMap(status => {
        const credential = credentialsById.get(status.id)
        return credential !== undefined && mayUse(caller, credential) ? [toStatusBody(status, descriptorOf(credential.provider).mechanism)] : []
      })
    }
  })
}
